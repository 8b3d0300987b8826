"""Where every stage reads and writes: the one owner of the project's paths and run folder names.

Defaults are relative to the project root (where ``dvc.yaml`` is); every stage takes its folders as
arguments, so tests and other layouts pass their own. ``dvc.yaml`` spells the same paths (it cannot
import them); ``tests/test_layout.py`` checks that the two agree.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
DATA_DIR = Path("datasets/mdir")  # the synthesized MDIR set (manifest.csv, images)
TRAIN_DIR = Path("results/train")  # <run>/model.pt, <run>/train.json
CKPT_DIR = Path("checkpoints")  # <run>/last.pt: resume state, never cached
EVAL_DIR = Path("results/eval")  # <run>/per_image.csv, metrics.json, samples/
PROFILE_JSON = Path("results/profile.json")
LATENCY_JSON = Path("benchmarks/results/latency_cpu.json")  # Table 8 latency, measured by bench_latency.py
REPORT_DIR = Path("reports")  # index.html, tables/, figures/

# The "no restoration" rows: the degraded inputs scored against their targets, in EVAL_DIR/INPUT_RUN/, and
# reported as the pseudo-model of this name.
INPUT_RUN = "input"

MODEL_FILE = "model.pt"
SNAPSHOTS = "snapshots"  # <run>/snapshots/model_<budget>.pt: the shorter training budgets (train.budgets)
TRAJECTORY = "trajectory.csv"  # <eval run>/: per-image MDIR scores of every budget
TRAIN_SUMMARY = "train.json"  # DVC metrics: numbers only
TRAIN_CURVE = "curve.csv"  # DVC plots: step, loss, lr
PER_IMAGE = "per_image.csv"
EVAL_METRICS = "metrics.json"  # DVC metrics: numbers only
BY_COMBINATION = "by_combination.csv"  # DVC plots: MDIR metrics per degradation combination
SAMPLES = "samples"


def run_name(model: str, seed: int) -> str:
    """Folder name of a (model, seed) run under ``results/`` and ``checkpoints/``."""
    return f"{model}-s{seed}"


def model_file(train_dir: str | Path, model: str, seed: int) -> Path:
    """The final checkpoint of a (model, seed) run."""
    return Path(train_dir) / run_name(model, seed) / MODEL_FILE


def eval_run_dir(eval_dir: str | Path, model: str, seed: int) -> Path:
    """The evaluate stage's folder of a (model, seed) run."""
    return Path(eval_dir) / run_name(model, seed)
