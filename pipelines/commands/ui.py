"""``interir-bench ui``: the MLflow UI on 127.0.0.1 (one worker), for comparing runs table by table."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.common import entry, tracking


def command(host: str, port: int, uri: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def main(argv: list[str] | None = None) -> int:
    p = entry.ArgumentParser(prog="interir-bench ui", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--backend-store-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    a = p.parse_args(argv)
    uri = a.backend_store_uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        print(f"note: {uri} does not exist yet; run 'make repro' first to have runs to compare", file=sys.stderr)
    print(f"MLflow UI: http://{a.host}:{a.port}  (tracking {uri}; Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(command(a.host, a.port, uri))
    except KeyboardInterrupt:
        return 0
