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
                         "sha256": hashlib.sha256((root / f).read_bytes()).hexdigest()})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root


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
