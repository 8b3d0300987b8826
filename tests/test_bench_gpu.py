"""``benchmarks/bench_gpu.py --dry``: the GPU benchmark's code paths (latency in fp32 and bf16 autocast, the
training step with channels-last off and on, the explainable vs depthwise conv, DDP under torchrun) on the
CPU at the smoke presets, 32x32, 2 steps. The CUDA paths themselves need a GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()  # the dry run sets its own; later tests in this process expect theirs
    yield
    torch.set_num_threads(threads)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_measures_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_dry.json"
    assert _bench().main(["--dry", "--models", "interir", "nafnet", "--no-ddp", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"]["dry"] is True and result["device"]["name"] == "cpu (dry run)"
    assert set(result["models"]) == {"interir", "nafnet"}
    for rec in result["models"].values():
        assert rec["preset"] == "smoke" and rec["params"] > 0 and "error" not in rec
        for prec in ("fp32", "bf16"):
            assert rec["latency"][prec]["median_s"] > 0 and rec["latency"][prec]["n"] == 2
        for key in ("bf16", "bf16_channels_last"):
            t = rec["train"][key]
            assert (t["batch"], t["patch"], t["n"]) == (2, 32, 2) and t["steps_per_s"] > 0
    x = result["xconv"]
    assert x["shape"][0] == 2 and x["kernel"] == 3 and x["ratio_fp32"] > 0 and x["ratio_bf16"] > 0
    assert result["elapsed_s"] < result["deadline_s"]


@pytest.mark.integration
def test_dry_ddp_section_runs_under_torchrun(tmp_path: Path) -> None:
    bench = _bench()
    ddp = bench.ddp(bench.Bench(dry=True), tmp_path / "gpu_dry.json")
    assert "error" not in ddp, ddp.get("error")
    assert (ddp["nproc"], ddp["backend"], ddp["global_batch"]) == (2, "gloo", 2) and ddp["steps_per_s"] > 0


def test_results_file_names_the_device() -> None:
    bench = _bench()
    assert bench.out_path({"name": "NVIDIA H200"}).name == "gpu_nvidia-h200.json"
