"""Table 8's latency protocol on this machine's CPU: batch 1, 1x3x256x256, ``torch.no_grad``, one warm-up,
median of ``--repeats`` forward passes, for every model of params.yaml at each ``--presets`` preset.

The report's Table 8 reads the result, ``benchmarks/results/latency_cpu.json`` (the machine, the thread
count and the torch version are in the file): timings are not computed inside the pipeline, whose outputs
must be the same bytes on every run. Run it on a quiet machine::

    python benchmarks/bench_latency.py                      # paper and smoke presets, 5 repeats, 2 threads
    python benchmarks/bench_latency.py --presets smoke --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common import env  # noqa: E402

env.apply_defaults()

import torch  # noqa: E402

from pipelines.common.config import load_params  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402
from pipelines.engine.profiling import cpu_latency  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "latency_cpu.json"


def machine() -> dict[str, str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return {"cpu": cpu, "logical_cpus": str(os.cpu_count()), "platform": platform.platform(),
            "torch": torch.__version__}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["paper", "smoke"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--models", nargs="*", help="default: params.yaml models")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    from interir.registry import create_model

    torch.set_num_threads(a.threads)
    models = a.models or list(load_params(REPO / "params.yaml").models)
    result: dict = {"protocol": f"CPU, batch 1, 1x3x{a.size}x{a.size}, torch.no_grad, one warm-up, median of "
                                f"{a.repeats} forward passes, {a.threads} intra-op thread(s)",
                    "machine": machine(), "seconds": {}}
    x = torch.rand(1, 3, a.size, a.size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for name in models:
        result["seconds"][name] = {}
        for preset in a.presets:
            torch.manual_seed(0)
            model = create_model(name, preset).eval()
            result["seconds"][name][preset] = round(cpu_latency(model, x, a.repeats), 6)
            print(f"{name:>16} {preset:>6}: {result['seconds'][name][preset]:.4f} s", flush=True)
            del model
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write_text(a.out, json.dumps(result, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
