"""Process-wide defaults: offline and telemetry switches, headless plotting, thread counts.

Set by the project itself (not only in CI) so that every entry point behaves the same on
a machine without network access. Existing environment values win.
"""

from __future__ import annotations

import ctypes
import os
import platform

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "MPLBACKEND": "Agg",
    "TQDM_MININTERVAL": "1",
    # OpenMP threads that spin while waiting make torch 10-30x slower on a busy 2-core machine
    # (measured: interir smoke step 0.15 s alone, 4.5 s beside a second torch process; 0.5 s with
    # PASSIVE). Read when libgomp loads, so it must be set before torch is imported.
    "OMP_WAIT_POLICY": "PASSIVE",
}


# glibc's malloc serves blocks above its mmap threshold (128 KiB, raised on the fly to at most 32 MiB)
# with fresh mmaps and returns free memory above its trim threshold to the kernel, so a batch of
# 256x256 feature maps is faulted in and zeroed again on every forward pass. With these values freed
# buffers are reused instead (tests/test_env.py checks it; figures: benchmarks/bench_malloc.py,
# docs/engine.md §7).
MALLOC_MMAP_THRESHOLD = 32 * 2**20  # the largest value mallopt accepts on 64-bit glibc
MALLOC_TRIM_THRESHOLD = 2**30  # freed memory stays in the process up to this much
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)
_malloc_tuned: bool | None = None


class UserError(Exception):
    """Bad input from the user (a file, a flag, a params key): reported as one line."""


def apply_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    tune_malloc()
    quiet_image_warnings()


def quiet_image_warnings() -> None:
    """PIL's warnings about the files it reads are two more lines on stderr, against the one-line errors:
    ``DecompressionBombWarning`` (``read_image`` checks the size itself, from the header, and refuses with one
    line) and the ``UserWarning`` about damage PIL reads past ("Corrupt EXIF data", "Tag data larger than
    file"): an image that cannot be used is refused with one line anyway."""
    import warnings

    warnings.filterwarnings("ignore", module=r"PIL\.")


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel (glibc only).

    Sets glibc's mmap threshold to 32 MiB and its trim threshold to 1 GiB once per process; the
    resident size then stays at its peak instead of shrinking between batches. Skipped, returning
    False, off glibc, with ``INTERIR_MALLOC_TUNE=0``, or when the user tunes malloc already
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc`` in ``GLIBC_TUNABLES``).
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        user_set = ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
                    or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))
        if os.environ.get("INTERIR_MALLOC_TUNE", "1") != "0" and not user_set and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            _malloc_tuned = bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))
    return _malloc_tuned


def torch_threads() -> int:
    """Intra-op threads for a tool outside the pipeline (``restore``): ``$OMP_NUM_THREADS``, else all cores.

    Pipeline stages take theirs from params (``train.threads``, ``evaluate.threads``) instead, so their
    results do not depend on the machine.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, os.cpu_count() or 1)
