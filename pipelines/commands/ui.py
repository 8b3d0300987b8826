"""``interir-bench ui``: the MLflow UI on 127.0.0.1 (one worker), for comparing runs table by table.

The port is checked before the server starts (a busy one is a one-line error, exit 2). The server (``mlflow ui``
and the uvicorn process it starts) runs in a process group of its own: SIGTERM, SIGINT (Ctrl-C) and SIGHUP to
this command are passed to the whole group, and whatever is left of the group when the server exits is
stopped, so nothing keeps listening after ``interir-bench ui`` ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time

from pipelines.common import entry, tracking
from pipelines.common.env import UserError

GRACE_S = 10.0  # how long the server group gets to stop after a signal before it is killed


def command(host: str, port: int, uri: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def check_port(host: str, port: int) -> None:
    """Fail with one line unless ``host:port`` can be bound now (as the server will, with SO_REUSEADDR)."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in [1, 65535], got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use (another 'interir-bench ui' or MLflow server?); "
                                "stop it or pass --port") from None
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pgid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group, then SIGKILL whatever is still there after :data:`GRACE_S`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def serve(cmd: list[str]) -> int:
    """Run ``cmd`` in a new session (its own process group), forwarding SIGTERM/SIGINT/SIGHUP to the group.

    Returns 0 when stopped by a signal, else the server's exit status; the group is empty afterwards.
    """
    proc = subprocess.Popen(cmd, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        rc = proc.wait()
    finally:
        _stop_group(proc.pid)  # uvicorn outlives `mlflow ui` on a signal: stop the whole group
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if received else rc


def main(argv: list[str] | None = None) -> int:
    p = entry.ArgumentParser(prog="interir-bench ui", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--backend-store-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    a = p.parse_args(argv)
    check_port(a.host, a.port)
    uri = a.backend_store_uri or tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        print(f"note: {uri} does not exist yet; run 'make repro' first to have runs to compare", file=sys.stderr)
    print(f"MLflow UI: http://{a.host}:{a.port}  (tracking {uri}; Ctrl-C stops it)", flush=True)
    rc = serve(command(a.host, a.port, uri))
    if rc != 0:
        raise UserError(f"the MLflow UI stopped with exit status {rc} (its messages are above)")
    return 0
