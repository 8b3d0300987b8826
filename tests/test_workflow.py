"""DVC's own workflow on a miniature copy of the project (one small model): reproduction from a fresh clone
leaves git clean, a clone pulls from a remote and reproduces nothing, queued experiments land in MLflow.

Slow (minutes): ``make test-all``. Each test runs the real pipeline commands in a temporary git repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BIN = Path(sys.executable).parent
# `python -m pipelines.cli` in the mini project runs the project's own code (its folder comes first on sys.path);
# the environment's `interir-bench` script would import the checkout the environment was installed from.
CLI = (sys.executable, "-m", "pipelines.cli")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "INTERIR_DATA", "DVC_ROOT",
                                                             "PYTHONPATH")}
    return {**env, "PATH": f"{BIN}:{env['PATH']}", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def make_project(root: Path, models: tuple[str, ...] = ("nafnet",)) -> Path:
    """The project's tracked files in a new git repository, with params cut down to small models (one by
    default) trained for a few steps."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("results/", "docs/small-run/")) or rel == "dvc.lock":
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", models=list(models), seeds=[0])
    params["data"]["root"] = ""
    params["train"]["smoke"].update(iters=6, log_every=3, ckpt_every=3, warmup_iters=2, budgets=[3])
    params["synthesize"]["smoke"].update(max_train_sources=3, max_test_sources=2, train_pairs_per_source=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "mini project")
    return root


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini project reproduced with ``interir-bench repro`` (two jobs), results committed and pushed."""
    root = make_project(tmp_path_factory.mktemp("workflow") / "origin")
    out = sh(root, *CLI, "repro", "--jobs", "2")
    assert "done in" in out.stdout
    sh(root, "dvc", "remote", "add", "-d", "local", str(root.parent / "remote"))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "results")
    sh(root, "dvc", "push")
    return root


def test_a_fresh_clone_reproduces_byte_for_byte(reproduced: Path) -> None:
    """A clone that recomputes everything (no cache, no remote) ends with a clean git status: dvc.lock and the
    committed metrics are the same bytes, so the lock is the proof of reproduction."""
    clone = reproduced.parent / "clone"
    sh(reproduced.parent, "git", "clone", "-q", str(reproduced), str(clone))
    sh(clone, "dvc", "repro")  # an empty cache: every stage runs (repro never reads the remote)
    assert sh(clone, "git", "status", "--porcelain").stdout == ""
    assert json.loads((clone / "results/eval/nafnet-s0/metrics.json").read_text())["MDIR"]["n"] > 0
    assert (clone / "reports/index.html").is_file()


def test_a_clone_pulls_the_results_and_reproduces_nothing(reproduced: Path) -> None:
    clone = reproduced.parent / "pulled"
    sh(reproduced.parent, "git", "clone", "-q", str(reproduced), str(clone))
    sh(clone, "dvc", "pull")
    status = sh(clone, "dvc", "status").stdout
    assert "up to date" in status, status
    assert not list(clone.glob("results/**/.gitignore"))  # DVC needed no ignore files of its own
    repro = sh(clone, "dvc", "repro").stdout
    assert "Running stage" not in repro, repro
    assert (clone / "reports/tables/table1_mdir.csv").read_bytes() == \
        (reproduced / "reports/tables/table1_mdir.csv").read_bytes()
    sh(clone, *CLI, "report")  # the page from the pulled results, without training
    assert (clone / "reports/index.html").is_file()


def _outputs(root: Path) -> dict[str, bytes]:
    folders = ("datasets/mdir", "results", "reports/tables", "reports/figures")
    return {p.relative_to(root).as_posix(): p.read_bytes() for f in folders for p in sorted((root / f).rglob("*"))
            if p.is_file() and p.name != ".gitignore"}  # DVC rewrites its .gitignore files as it pleases


@pytest.mark.parametrize("bad", ["train.smoke.iters=abc", "train.smoke.batch=-4", "profile=nonsense",
                                 "synthesize.noise_range=[0,500]"])
def test_a_failed_experiment_keeps_every_previous_output(reproduced: Path, bad: str) -> None:
    """Outputs are persist: true and the stages replace them atomically, so a run that fails on its params
    deletes nothing (DVC would otherwise remove a stage's outputs, and the uncached metrics, before its command
    runs); restoring params.yaml leaves the pipeline up to date."""
    before = _outputs(reproduced)
    failed = sh(reproduced, "dvc", "exp", "run", "-S", bad, check=False)
    assert failed.returncode != 0 and "error: " in failed.stdout + failed.stderr
    assert _outputs(reproduced) == before
    sh(reproduced, "git", "checkout", "params.yaml")
    assert "up to date" in sh(reproduced, "dvc", "status").stdout


def test_plots_render_offline(reproduced: Path) -> None:
    out = reproduced.parent / "plots_out"  # outside the project: its git status stays clean
    sh(reproduced, *CLI, "plots", "show", "-o", str(out))
    page = (out / "index.html").read_text()
    assert "vegaEmbed" in page and "results_train_nafnet-s0_curve_csv" in page  # the plot element named by its file
    assert "results_eval_nafnet-s0_by_combination_csv" in page
    scripts = [s for s in page.split("<script") if "src=" in s.split(">")[0]]
    assert all("http" not in s.split(">")[0] or "vega" in s for s in scripts)  # CDN tags may stay, unused
    assert page.count("<script>") >= 1  # the inline bundle


def test_queued_experiments_land_in_mlflow_with_artifacts(reproduced: Path) -> None:
    """Two experiments queued and run side by side (DVC's temporary workspaces) both reach the project's MLflow
    store, with their artifacts under the project, tagged with the experiment and the commit."""
    sh(reproduced, "dvc", "exp", "run", "--queue", "-n", "iters8", "-S", "train.smoke.iters=8")
    sh(reproduced, "dvc", "exp", "run", "--queue", "-n", "iters9", "-S", "train.smoke.iters=9")
    sh(reproduced, "dvc", "queue", "start", "-j", "2")
    sh(reproduced, "dvc", "queue", "logs", "iters8", check=False)
    for _ in range(120):  # the queue runs in the background
        status = sh(reproduced, "dvc", "queue", "status").stdout
        if "Running" not in status and "Queued" not in status:
            break
        import time

        time.sleep(5)
    assert "Failed" not in status, status
    shown = sh(reproduced, "dvc", "exp", "show", "--json").stdout
    assert "iters8" in shown and "iters9" in shown
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{reproduced / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["interir-bench/smoke"], output_format="list",
                              filter_string="tags.`dvc.exp_name` != ''")
    names = {r.data.tags["dvc.exp_name"] for r in runs}
    assert names == {"iters8", "iters9"}, names
    for r in runs:
        assert r.info.artifact_uri.startswith((reproduced / "mlruns").as_uri())
        arts = {a.path for a in mlflow.MlflowClient().list_artifacts(r.info.run_id, "checkpoint")}
        assert arts == {"checkpoint/model.pt"}
        local = Path(r.info.artifact_uri.removeprefix("file://")) / "checkpoint" / "model.pt"
        assert local.is_file()
        assert len(r.data.tags["mlflow.source.git.commit"]) == 40
