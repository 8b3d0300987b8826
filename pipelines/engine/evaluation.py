"""Evaluation: score a trained model on the MDIR test set and the SDIR sets (the ``evaluate`` stage's library).

For every test pair: pad to the model's stride (reflect), forward, crop, clamp, quantise
to uint8, then PSNR/SSIM on RGB and on Y (:mod:`pipelines.engine.metrics`). Writes a per-image
CSV (image, set, combination, levels, metrics, runtime), an aggregate ``metrics.json``
(DVC metrics) and a few restored images for the report's visual comparisons.

Bad input (an unreadable or corrupt image, a pair whose sizes differ, a checkpoint of
another model or a tampered one, an output folder that cannot be written) stops the stage
with a one-line error naming the file before anything is written: every output is built
in memory and written atomically at the end. Metrics go into the MLflow run of the
training that produced the checkpoint (one run per model, profile and seed).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.common.config import EvaluateConfig, Params
from pipelines.common.env import UserError
from pipelines.common.files import atomic_dir, ensure_writable_dir, write_text
from pipelines.common.paths import BY_COMBINATION, EVAL_METRICS, PER_IMAGE, SAMPLES, SNAPSHOTS, TRAJECTORY
from pipelines.data import sdir
from pipelines.data.imageio import read_image, to_uint8, write_image
from pipelines.data.manifest import SDIR_DIR, Pair, data_version, read_manifest
from pipelines.engine import checkpoint as ckpt_io
from pipelines.engine.inference import restore_tensor
from pipelines.engine.metrics import METRIC_KEYS, SSIM_WIN, Scorer

# ``unit``: the independent unit the image belongs to (its source photo group on MDIR, its clean image on
# SDIR sets): the report's intervals resample units, not images. Timings go to MLflow, not to this file.
CSV_COLUMNS = ("image", "set", "combination", "unit", "haze", "rain", "noise", *METRIC_KEYS)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def evaluate_pairs(
    model: torch.nn.Module,
    pairs: list[Pair],
    set_name: str,
    stride: int,
    tile: int = 0,
    overlap: int = 32,
    scorer: Scorer | None = None,
    keep: int = 0,
    samples: dict[str, np.ndarray] | None = None,
    batch: int = 1,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Per-image rows for ``pairs``, in their order; the restorations picked by :func:`sample_indices` go
    into ``samples``.

    The pairs are cut into chunks of ``batch`` consecutive pairs. A chunk is one task: read its PNGs,
    restore its same-size images in one forward pass (every model here is batch-independent in eval
    mode, tested, so the numbers are those of batch 1 to float rounding), score them one by one.
    ``runtime_s`` is the forward time of the image's pass divided by its size.
    With ``workers`` > 1, that many threads take chunks as they come (PIL, OpenCV, NumPy and torch
    release the GIL in their loops), so every core reads, restores and scores; a fixed split (the
    forward pass on one thread, reading and scoring on another) would leave a core idle whenever the
    two sides are unequal (docs/engine.md §4 and §7 for the figures). At most ``2 * workers`` chunks
    are queued and only running chunks hold images, so memory stays bounded. The chunks do not depend on ``workers``:
    the rows are the same for any number of workers.
    """
    from tqdm.auto import tqdm

    scorer = scorer or Scorer()
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device  # no parameters: the identity, on the CPU
    chosen = sample_indices(pairs, keep)
    step = max(1, batch)
    chunks = [range(s, min(s + step, len(pairs))) for s in range(0, len(pairs), step)]

    def run_chunk(indices: range) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        loaded = [(i, pairs[i], *_load_pair(pairs[i])) for i in indices]
        scored, kept = [], {}
        for _, same_size in itertools.groupby(loaded, key=lambda item: item[2].shape):
            group = list(same_size)
            x = torch.from_numpy(np.stack([x_np for _, _, x_np, _ in group])).permute(0, 3, 1, 2).to(device)
            t0 = time.perf_counter()
            try:
                out = restore_tensor(model, x, stride=stride, tile=tile, overlap=overlap)
            except (RuntimeError, ValueError, IndexError) as exc:  # a checkpoint that does not run, or no memory
                raise UserError(f"{group[0][1].input}: the model failed on this image "
                                f"({ckpt_io.first_line(exc)})") from None
            if not torch.isfinite(out).all():
                raise UserError(f"{group[0][1].input}: the model produced NaN or inf values (broken weights?)")
            if device.type == "cuda":
                torch.cuda.synchronize()
            runtime = (time.perf_counter() - t0) / len(group)
            out = out.float().cpu()
            for j, (i, pair, _, y_np) in enumerate(group):
                # One image at a time: the SSIM buffers of a whole batch would fall out of the CPU caches.
                scores = scorer(out[j : j + 1], _to_tensor(y_np))
                scored.append({
                    "image": pair.name, "set": set_name, "combination": pair.combination, "unit": pair.unit,
                    "haze": pair.haze, "rain": pair.rain, "noise": pair.noise,
                    **{k: float(v[0]) for k, v in scores.items()}, "runtime_s": runtime,
                })
                if i in chosen:
                    kept[f"{set_name}_{i:03d}.png"] = to_uint8(out[j].permute(1, 2, 0).numpy())
        return scored, kept

    rows: list[dict[str, Any]] = []

    def take(result: tuple[list[dict[str, Any]], dict[str, np.ndarray]]) -> None:
        scored, kept = result
        rows.extend(scored)
        if samples is not None:
            samples.update(kept)
        bar.update(len(scored))

    # The context manager clears the bar on an error too, so the error stays one clean line.
    with tqdm(total=len(pairs), desc=f"eval {set_name}", dynamic_ncols=True, leave=False) as bar:
        if workers <= 1:
            for chunk in chunks:
                take(run_chunk(chunk))
            return rows
        # OpenMP's thread count is per thread: a new thread would start at all cores for the kernels
        # that do not go through ATen's parallel_for (oneDNN's convolutions), so set it in each worker.
        with ThreadPoolExecutor(workers, thread_name_prefix="eval-worker", initializer=torch.set_num_threads,
                                initargs=(torch.get_num_threads(),)) as pool:
            queued: deque[Future] = deque()
            try:
                for chunk in chunks:
                    queued.append(pool.submit(run_chunk, chunk))
                    while len(queued) > 2 * workers:
                        take(queued.popleft().result())  # in order; re-raises a chunk's error here
                while queued:
                    take(queued.popleft().result())
            finally:
                for fut in queued:  # after an error: drop the chunks not started (the pool waits for the rest)
                    fut.cancel()
    return rows


def eval_batch(card: Any, configured: int) -> int:
    """Images per forward pass: ``evaluate.batch`` when positive, else the card's measured choice;
    always 1 for a model that is not batch-independent (its numbers would depend on the batch)."""
    if not card.batch_independent:
        return 1
    return configured if configured > 0 else max(1, card.eval_batch)


def _load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair, checked: their manifest sha256 (MDIR pairs), same size, at least the SSIM window."""
    x_np, y_np = read_image(pair.input, pair.sha256 or None), read_image(pair.target, pair.target_sha256 or None)
    if x_np.shape != y_np.shape:
        raise UserError(f"{pair.input}: size {x_np.shape[:2]} does not match its target {pair.target}")
    if min(x_np.shape[:2]) < SSIM_WIN:
        raise UserError(f"{pair.input}: image {x_np.shape[:2]} is smaller than the SSIM window ({SSIM_WIN} px)")
    return x_np, y_np


def sample_indices(pairs: list[Pair], keep: int) -> set[int]:
    """Which restorations to save for the report: the first of each degradation combination (so
    the visual grid covers all seven), or the first ``keep`` for sets without combinations."""
    if keep <= 0:
        return set()
    first: dict[str, int] = {}
    for i, p in enumerate(pairs):
        if p.combination:
            first.setdefault(p.combination, i)
    return set(first.values()) if first else set(range(min(keep, len(pairs))))


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means per set, per combination within a set, and the median per-image runtime of each set."""
    out: dict[str, Any] = {}
    for set_name in sorted({r["set"] for r in rows}):
        sel = [r for r in rows if r["set"] == set_name]
        entry: dict[str, Any] = {"n": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in METRIC_KEYS}}
        combos = sorted({r["combination"] for r in sel if r["combination"]})
        if combos:
            entry["by_combination"] = {
                c: {k: float(np.mean([r[k] for r in sel if r["combination"] == c])) for k in METRIC_KEYS}
                for c in combos
            }
        entry["runtime_s"] = float(np.median([r["runtime_s"] for r in sel]))
        out[set_name] = entry
    return out


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = CSV_COLUMNS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def evaluate_run(model_name: str, seed: int, params: Params, ckpt_path: Path, data_dir: Path, out_dir: Path,
                 metrics_backend: str = "fast", track: bool = True) -> dict[str, Any]:
    """Score one checkpoint on the MDIR test split and the SDIR sets the synthesize stage copied beside it.

    Writes ``out_dir/per_image.csv``, ``metrics.json`` and ``samples/``; returns the metrics dict.
    Every input is checked and every output built in memory before the first file is written.
    """
    cfg = params.evaluate
    workers = cfg.workers
    torch.set_num_threads(cfg.threads)
    state, model = ckpt_io.load_model(ckpt_path, expect_model=model_name)
    model = model.to(_device())
    from interir.registry import get_card

    card = get_card(model_name)
    ensure_writable_dir(out_dir)
    scorer = Scorer(backend=metrics_backend)
    sets = scored_sets(data_dir, cfg)
    rows: list[dict[str, Any]] = []
    samples: dict[str, np.ndarray] = {}
    for set_name, pairs in sets.items():
        rows += evaluate_pairs(model, pairs, set_name, card.stride, cfg.tile, cfg.tile_overlap, scorer,
                               keep=cfg.save_images, samples=samples, batch=eval_batch(card, cfg.batch),
                               workers=workers)
    trajectory = budget_rows(model_name, ckpt_path, int(state["step"]), sets["MDIR"], card, cfg, scorer, rows)
    agg = aggregate(rows)
    dver = data_version(data_dir)
    # DVC metrics: numbers only, a pure function of the inputs (timings and identities go to MLflow).
    metrics = {s: {"n": e["n"], **{k: round(e[k], 6) for k in METRIC_KEYS}} for s, e in agg.items()}
    by_comb = "combination," + ",".join(METRIC_KEYS) + "\n" + "".join(
        f"{c}," + ",".join(f"{m[k]:.6f}" for k in METRIC_KEYS) + "\n"
        for c, m in agg["MDIR"].get("by_combination", {}).items())
    with atomic_dir(out_dir) as build:  # all files appear together: a kill never mixes two evaluations
        write_csv(build / PER_IMAGE, rows)
        write_text(build / EVAL_METRICS, json.dumps(metrics, indent=2) + "\n")
        write_text(build / BY_COMBINATION, by_comb)
        write_csv(build / TRAJECTORY, trajectory, ("budget", *CSV_COLUMNS))
        (build / SAMPLES).mkdir()  # a DVC output, even when no restoration is kept
        for fname, arr in samples.items():
            write_image(build / SAMPLES / fname, arr)
    if track:
        _track(model_name, seed, params.profile, dver, state, ckpt_path, metrics_backend, agg, out_dir)
    return metrics


def _track(model_name: str, seed: int, profile: str, dver: str, state: dict[str, Any], ckpt_path: Path,
           backend: str, agg: dict[str, Any], out_dir: Path) -> None:
    """Log the metrics into the MLflow run of the training that made the checkpoint (a new run otherwise)."""
    import mlflow

    from pipelines.common import tracking

    key = tracking.run_key(state.get("resume_key", {}))
    tags = {**tracking.run_tags(model_name, profile, seed, dver), "run.key": key}
    # The training run of this checkpoint (tagged with its key) when the store has it and the data agree.
    train_run = tracking.find_run(tracking.setup(profile), profile, key) if state.get("data_version") == dver else None
    with tracking.tracked_run(profile, tracking.run_name(model_name, profile, seed), tags, run_id=train_run,
                              source="pipelines.stages.evaluate"):
        mlflow.set_tags({"eval.checkpoint": str(ckpt_path), "eval.checkpoint_step": str(state["step"]),
                         "eval.metrics_backend": backend})
        flat = {}
        for set_name, e in agg.items():
            for k in METRIC_KEYS:
                flat[tracking.metric_key(set_name, k)] = e[k]
            for c, m in e.get("by_combination", {}).items():
                for k in METRIC_KEYS:
                    flat[tracking.metric_key(set_name, k, c)] = m[k]
            flat[tracking.metric_key(set_name, "runtime_s")] = e["runtime_s"]
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(out_dir / PER_IMAGE), "eval")
        mlflow.log_artifact(str(out_dir / EVAL_METRICS), "eval")
        mlflow.log_artifact(str(out_dir / BY_COMBINATION), "eval")


def budget_rows(model_name: str, ckpt_path: Path, final_step: int, pairs: list[Pair], card: Any, cfg: Any,
                scorer: Scorer, final_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MDIR rows of every training budget (``budget`` column): the checkpoints the run branched off
    (``snapshots/model_<budget>.pt`` beside the final one), each scored like the final model, then the
    final model's own MDIR rows at its step count."""
    rows: list[dict[str, Any]] = []
    snaps = sorted(Path(ckpt_path).parent.joinpath(SNAPSHOTS).glob("model_*.pt"),
                   key=lambda p: int(p.stem.split("_")[1]))
    for snap in snaps:
        model = ckpt_io.load_model(snap, expect_model=model_name)[1].to(_device())
        budget = int(snap.stem.split("_")[1])
        rows += [{"budget": budget, **r} for r in evaluate_pairs(
            model, pairs, "MDIR", card.stride, cfg.tile, cfg.tile_overlap, scorer, batch=eval_batch(card, cfg.batch),
            workers=cfg.workers)]
    return rows + [{"budget": final_step, **r} for r in final_rows if r["set"] == "MDIR"]


def scored_sets(data_dir: Path, cfg: EvaluateConfig) -> dict[str, list[Pair]]:
    """What evaluate and score_inputs score: the MDIR test split and every SDIR set of ``<data>/sdir`` but
    ``evaluate.skip_sdir``."""
    found = sdir.load_sets(Path(data_dir) / SDIR_DIR)
    return {"MDIR": read_manifest(data_dir, "test"), **{k: v for k, v in found.items() if k not in cfg.skip_sdir}}


def score_inputs(params: Params, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The "no restoration" baseline: every degraded test input scored against its target, as ``evaluate_run``
    scores a model (same sets, same metrics, same files), so tables and claims can say whether a model beats
    doing nothing."""
    cfg = params.evaluate
    torch.set_num_threads(cfg.threads)
    ensure_writable_dir(out_dir)
    sets = scored_sets(data_dir, cfg)
    rows: list[dict[str, Any]] = []
    for set_name, pairs in sets.items():
        rows += evaluate_pairs(torch.nn.Identity(), pairs, set_name, 1, scorer=Scorer(), batch=max(1, cfg.batch),
                               workers=cfg.workers)
    agg = aggregate(rows)
    metrics = {s: {"n": e["n"], **{k: round(e[k], 6) for k in METRIC_KEYS}} for s, e in agg.items()}
    with atomic_dir(out_dir) as build:
        write_csv(build / PER_IMAGE, rows)
        write_text(build / EVAL_METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def _device() -> torch.device:
    """The first GPU when there is one (the forward pass dominates), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
