"""Process-wide settings of pipelines.common.env: the malloc tuning (measured in fresh processes)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Four 6 MiB buffers allocated, written and freed per cycle: the size of a batch of 256x256 feature maps.
_PROBE = """
import json, resource
import numpy as np
from pipelines.common import env
tuned = env.tune_malloc()
def cycle():
    bufs = [np.ones(6 * 2**20 // 4, np.float32) for _ in range(4)]
    del bufs
cycle(); cycle()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
print(json.dumps({"tuned": tuned, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5}))
"""


def _probe(**extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("INTERIR_MALLOC_TUNE", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env={**env, **extra_env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_tuned_malloc_reuses_freed_buffers_without_page_faults() -> None:
    """Freed 6 MiB buffers are reused in place once tuned (0 faults per cycle here); glibc's defaults
    trim the heap and fault the pages in again (2,024 per cycle here, 8 MiB of the 24 MiB)."""
    tuned, default = _probe(), _probe(INTERIR_MALLOC_TUNE="0")
    assert tuned["tuned"] is True and default["tuned"] is False
    assert tuned["faults"] < 100
    assert default["faults"] > 1000


def test_malloc_tuning_leaves_the_users_settings_alone() -> None:
    assert _probe(MALLOC_TRIM_THRESHOLD_="131072")["tuned"] is False
    assert _probe(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")["tuned"] is False
