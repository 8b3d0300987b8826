"""Shared fixtures: a tiny synthesized-set lookalike, a params file, the data root."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipelines.common.env import apply_defaults

apply_defaults()  # before torch loads OpenMP (OMP_WAIT_POLICY) and before mlflow/pyiqa read their switches

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The real benchmark images (``$INTERIR_DATA`` or ``../shared/data``), if present."""
    cand = os.environ.get("INTERIR_DATA") or str(REPO.parent / "shared" / "data")
    return Path(cand) if Path(cand).is_dir() else None


@pytest.fixture
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("real benchmark images not found (set INTERIR_DATA or place ../shared/data)")
    return root


def make_tiny_mdir(root: Path, n_train: int = 4, n_test: int = 2, size: int = 48, seed: int = 0) -> Path:
    """A manifest-compatible set: noisy crops of a real photo (enough for loop tests)."""
    from skimage import data

    from pipelines.data.imageio import write_image
    from pipelines.data.manifest import MANIFEST_COLUMNS

    rng = np.random.default_rng(seed)
    photo = data.astronaut().astype(np.float32) / 255.0
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            top, left = rng.integers(0, photo.shape[0] - size, size=2)
            clean = photo[top : top + size, left : left + size]
            sigma = float(rng.uniform(10, 30))
            noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape), 0, 1)
            f, t = f"{split}/{i}.png", f"clean/{split}_{i}.png"
            write_image(root / f, noisy)
            write_image(root / t, clean)
            rows.append({"file": f, "target": t, "source": f"astronaut_{i}", "split": split,
                         "combination": "noise", "haze": 0, "rain": 0, "noise": round(sigma, 3), "seed": i,
                         "sha256": hashlib.sha256((root / f).read_bytes()).hexdigest(),
                         "target_sha256": hashlib.sha256((root / t).read_bytes()).hexdigest()})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root


def rehash_manifest(root: Path) -> None:
    """Recompute the manifest's sha256 columns after a test edited the images on purpose."""
    path = root / "manifest.csv"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    for r in rows:
        r["sha256"] = hashlib.sha256((root / r["file"]).read_bytes()).hexdigest()
        r["target_sha256"] = hashlib.sha256((root / r["target"]).read_bytes()).hexdigest()
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def tiny_mdir(tmp_path: Path) -> Path:
    return make_tiny_mdir(tmp_path / "mdir")


def write_params(path: Path, **train_overrides) -> Path:
    """A copy of the repository's params.yaml with smoke training values overridden (no extra budgets unless
    given)."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "smoke"
    raw["train"]["smoke"].update({"budgets": [], **train_overrides})  # budgets must stay below a test's iters
    path.write_text(yaml.safe_dump(raw))
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port) with a SQLite backend, served artifacts and one worker, its
    store and log in ``folder``; yields its URL, stopped with SIGTERM (its own session: the CLI and its
    uvicorn worker), SIGKILL after 20 s."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
           "--artifacts-destination", str(folder / "artifacts")]
    log = (folder / "server.log").open("w")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# A child that runs ``interir-bench`` argv lists in-process under an address-space limit and reports, per run,
# the exit status, stderr and the process's peak resident size so far (tests/test_robustness.py).
_BOUNDED_CHILD = r"""
import contextlib, io, json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from pipelines import cli
results = []
for argv in json.loads(open(sys.argv[2]).read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # a traceback: what the tests look for
            import traceback
            traceback.print_exc(file=err)
            rc = 1
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak when the child was forked (it survives exec).
    peak_mb = int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1]) / 1024
    results.append({"rc": rc, "stderr": err.getvalue(), "peak_mb": peak_mb})
print(json.dumps(results))
"""

# torch and the project's imports map about 3.3 GB of address space (libraries, not memory) and 0.55 GB of RSS.
BOUNDED_AS_MB = 6144


def run_bounded(argvs: list[list[str]], tmp: Path, limit_mb: int = BOUNDED_AS_MB, timeout: float = 300,
                env: dict[str, str] | None = None) -> list[dict]:
    """Run each argv through ``pipelines.cli.main`` in one child process under RLIMIT_AS = ``limit_mb``."""
    import json
    import subprocess
    import sys

    spec = tmp / "argvs.json"
    spec.write_text(json.dumps(argvs))
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _BOUNDED_CHILD, str(limit_mb * 2**20), str(spec)], cwd=tmp,
                          capture_output=True, text=True, timeout=timeout, env=child_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
