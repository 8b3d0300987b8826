"""GPU speed and memory of every model of params.yaml at its paper preset, in at most 8 minutes on one GPU.

Sections (each with a time cap; a global deadline skips what would not fit, and the file is rewritten after
every model, so a killed run keeps what it measured):

1. **latency** (Table 8's protocol on the GPU): batch 1, 1x3x256x256, ``torch.no_grad``, fp32 and bf16
   autocast, warm-up passes, then the median of CUDA-synchronised forward passes (at most ``LAT_REPEATS`` or
   ``LAT_CAP_S`` seconds per precision); peak memory of the pass.
2. **train**: steps/s of the training step of ``pipelines.engine.loop`` (forward under bf16 autocast, the
   L1 + FFT loss in float32, backward, gradient clipping, Adam) at the paper profile's global batch and patch
   (params.yaml ``train.paper``: 32 x 256x256), channels-last off and on, on a fixed random batch (no data
   loading); ``torch.cuda.max_memory_allocated`` per configuration. A batch that runs out of memory is halved
   until it fits; the batch used is recorded (``oom_batches`` lists those that did not fit).
3. **xconv**: ``interir.xconv.ExplainableConv2d`` against ``nn.Conv2d(groups=C)`` (3x3 depthwise),
   forward+backward, fp32 and bf16 autocast, at the feature size the explainable convs of ``interir`` see at
   the paper preset when training (the paper batch, C and H x W read by hooks on a forward pass).
4. **ddp**: the training step under ``torchrun`` with one process per GPU (NCCL; gloo on the CPU in the dry
   run) on ``interir``, through ``pipelines.engine.distributed`` as the train stage uses it: steps/s at the
   global paper batch.

Time budget (8 min = 480 s): start-up and CUDA initialisation ~15 s; per model, latency 2 x ``LAT_CAP_S`` (3 s)
and training 2 x ``TRAIN_CAP_S`` (8 s) plus warm-ups and model building, ~30 s, x 9 models ~270 s; xconv
``XCONV_CAP_S`` (10 s); ddp ``DDP_CAP_S`` (60 s, the torchrun start-up included). About 360 s expected; the
global deadline (``DEADLINE_S`` = 450 s) skips the sections that would start after it. The dry run
(``--dry``) takes the same code paths on the CPU with the smoke presets at 32x32, batch 2 and 2 steps, in
seconds (``tests/test_bench_gpu.py``); its caps were scaled from it, not measured on a GPU: no GPU was
available when this script was written, so the CUDA paths (bf16 autocast, channels-last, NCCL) are ready but
have not run.

    python benchmarks/bench_gpu.py                 # -> benchmarks/results/gpu_<device name>.json
    python benchmarks/bench_gpu.py --dry --out /tmp/gpu_dry.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.common import env  # noqa: E402

env.apply_defaults()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from pipelines.common.config import load_params  # noqa: E402
from pipelines.common.files import write_text  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BUDGET_S = 480.0
DEADLINE_S = 450.0  # no section starts after this many seconds
LAT_WARMUP, LAT_REPEATS, LAT_CAP_S = 5, 50, 3.0
TRAIN_WARMUP, TRAIN_STEPS, TRAIN_CAP_S = 3, 30, 8.0
XCONV_WARMUP, XCONV_REPEATS, XCONV_CAP_S = 3, 30, 10.0
DDP_STEPS, DDP_CAP_S = 20, 60.0


class Bench:
    """The device, the sizes of the run (paper or dry) and the clock."""

    def __init__(self, dry: bool) -> None:
        self.dry = dry
        self.device = torch.device("cpu" if dry else "cuda")
        self.t0 = time.perf_counter()
        params = load_params(REPO / "params.yaml", "smoke" if dry else "paper")
        self.train_cfg = params.train
        self.models = list(params.models)
        self.preset = "smoke" if dry else "paper"
        self.size = 32 if dry else 256  # latency input side (Table 8: 256)
        self.batch = 2 if dry else params.train.batch  # training global batch
        self.patch = 32 if dry else params.train.patch
        self.scale = 0.05 if dry else 1.0  # time caps and repeats shrink in the dry run
        self.min_steps = 2 if dry else 3

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def over_deadline(self) -> bool:
        return self.elapsed() > DEADLINE_S

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        """``torch.cuda.max_memory_allocated`` since the last reset, in GB (None on the CPU)."""
        return round(torch.cuda.max_memory_allocated() / 2**30, 3) if self.device.type == "cuda" else None

    def autocast(self, bf16: bool) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def timed(self, step: Callable[[], Any], warmup: int, repeats: int, cap_s: float) -> dict[str, Any]:
        """Run ``step`` ``warmup`` times, then time it (synchronised) until ``repeats`` runs or ``cap_s`` s."""
        for _ in range(warmup if not self.dry else 1):
            step()
        self.sync()
        times: list[float] = []
        start = time.perf_counter()
        repeats = repeats if not self.dry else self.min_steps
        cap_s *= self.scale
        while len(times) < repeats and (len(times) < self.min_steps or time.perf_counter() - start < cap_s):
            t = time.perf_counter()
            step()
            self.sync()
            times.append(time.perf_counter() - t)
        return {"median_s": round(statistics.median(times), 6), "n": len(times),
                "capped": len(times) < repeats}


def device_info(bench: Bench) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "platform": platform.platform(), "dry": bench.dry,
                            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if bench.device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=torch.cuda.get_device_name(0), capability=f"{props.major}.{props.minor}",
                    memory_gb=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count(),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    bf16_supported=torch.cuda.is_bf16_supported())
    else:
        info.update(name="cpu (dry run)", cpus=os.cpu_count(), threads=torch.get_num_threads())
    return info


def out_path(info: dict[str, Any]) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", str(info["name"]).lower()).strip("-")
    return RESULTS / f"gpu_{slug}.json"


# ------------------------------------------------------------------------------------------------ sections
def latency(bench: Bench, model: nn.Module) -> dict[str, Any]:
    """Table 8's protocol: batch 1, 1x3xSxS, no_grad, warm-up, median of synchronised passes; fp32 and bf16."""
    x = torch.rand(1, 3, bench.size, bench.size, generator=torch.Generator().manual_seed(0)).to(bench.device)
    model.eval()
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        bench.reset_peak()

        def forward(bf16: bool = bf16) -> None:
            with torch.no_grad(), bench.autocast(bf16):
                model(x)

        out[name] = {**bench.timed(forward, LAT_WARMUP, LAT_REPEATS, LAT_CAP_S), "peak_mem_gb": bench.peak_gb()}
    return out


def train_step_fn(bench: Bench, model: nn.Module, batch: int, channels_last: bool,
                  net: nn.Module | None = None) -> Callable[[], None]:
    """One step of the training loop (``pipelines.engine.loop.train``) on a fixed random batch, bf16 autocast."""
    from interir.losses import L1FFTLoss

    cfg = bench.train_cfg
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    net = net or model
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, bench.patch, bench.patch, generator=gen).to(bench.device, memory_format=fmt)
    y = torch.rand(batch, 3, bench.patch, bench.patch, generator=gen).to(bench.device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    loss_fn = L1FFTLoss(cfg.fft_weight)

    def step() -> None:
        with bench.autocast(True):
            pred = net(x)
        loss = loss_fn(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    return step


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def train(bench: Bench, name: str) -> dict[str, Any]:
    """Steps/s at the paper batch and patch, bf16 autocast, channels-last off and on; halve the batch on OOM."""
    from interir.registry import create_model

    out: dict[str, Any] = {}
    for key, channels_last in (("bf16", False), ("bf16_channels_last", True)):
        if bench.over_deadline():
            out[key] = {"skipped": "time budget"}
            continue
        batch, oom = bench.batch, []
        while True:
            bench.reset_peak()
            torch.manual_seed(0)
            model = create_model(name, bench.preset).to(bench.device)
            try:
                stats = bench.timed(train_step_fn(bench, model, batch, channels_last), TRAIN_WARMUP, TRAIN_STEPS,
                                    TRAIN_CAP_S)
            except RuntimeError as exc:
                if not _is_oom(exc) or batch == 1:
                    raise
                oom.append(batch)
                batch //= 2
                continue
            finally:
                del model
            break
        out[key] = {"batch": batch, "patch": bench.patch, "steps_per_s": round(1.0 / stats["median_s"], 4),
                    "images_per_s": round(batch / stats["median_s"], 2), **stats, "peak_mem_gb": bench.peak_gb(),
                    **({"oom_batches": oom} if oom else {})}
    return out


def xconv_shape(bench: Bench) -> tuple[int, int, int, int]:
    """(batch, C, H, W) of the explainable convs' inputs in ``interir`` at the preset, training patch."""
    from interir.registry import create_model
    from interir.xconv import ExplainableConv2d

    model = create_model("interir", bench.preset).to(bench.device).eval()
    seen: list[tuple[int, int, int]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[1:])))
             for m in model.modules() if isinstance(m, ExplainableConv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, bench.patch, bench.patch, device=bench.device))
    for h in hooks:
        h.remove()
    c, h, w = statistics.mode(seen)
    return bench.batch, c, h, w


def xconv(bench: Bench) -> dict[str, Any]:
    """ExplainableConv2d vs nn.Conv2d(groups=C), 3x3 depthwise, forward+backward, fp32 and bf16 autocast."""
    from interir.xconv import ExplainableConv2d

    b, c, h, w = xconv_shape(bench)
    torch.manual_seed(0)
    x = torch.randn(b, c, h, w, device=bench.device)
    mods = {"plain": nn.Conv2d(c, c, 3, padding=1, groups=c).to(bench.device),
            "xconv": ExplainableConv2d(c, c, 3, padding=1, groups=c).to(bench.device)}
    out: dict[str, Any] = {"shape": [b, c, h, w], "kernel": 3}
    for prec, bf16 in (("fp32", False), ("bf16", True)):
        for key, mod in mods.items():
            g = torch.randn(b, c, h, w, device=bench.device)

            def step(mod: nn.Module = mod, g: torch.Tensor = g, bf16: bool = bf16) -> None:
                xi = x.detach().requires_grad_(True)
                with bench.autocast(bf16):
                    y = mod(xi)
                (y.float() * g).sum().backward()
                mod.zero_grad(set_to_none=True)

            bench.reset_peak()
            out[f"{key}_{prec}"] = {**bench.timed(step, XCONV_WARMUP, XCONV_REPEATS, XCONV_CAP_S / 4),
                                    "peak_mem_gb": bench.peak_gb()}
        out[f"ratio_{prec}"] = round(out[f"xconv_{prec}"]["median_s"] / out[f"plain_{prec}"]["median_s"], 3)
    return out


def ddp(bench: Bench, out_file: Path) -> dict[str, Any]:
    """``torchrun`` with one process per GPU (2 gloo processes on the CPU in the dry run) on ``interir``."""
    nproc = 2 if bench.dry else max(1, torch.cuda.device_count())
    result = out_file.with_name(out_file.stem + ".ddp.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(Path(__file__).resolve()), "--ddp-worker", str(result), *(["--dry"] if bench.dry else [])]
    t = time.perf_counter()
    timeout = max(DDP_CAP_S, BUDGET_S - 10 - bench.elapsed())  # a hung NCCL start must not overrun the budget
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    except subprocess.TimeoutExpired:
        return {"error": f"torchrun did not finish in {timeout:.0f} s", "nproc": nproc}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-1500:], "nproc": nproc}
    data = json.loads(result.read_text())
    result.unlink()
    return {**data, "wall_s": round(time.perf_counter() - t, 1)}


def ddp_worker(result: Path, dry: bool) -> int:
    """One torchrun process: DDP over the training step (NCCL on GPUs), this rank's slice of the global batch."""
    import torch.distributed as dist

    from interir.registry import create_model
    from pipelines.engine import distributed as dist_mod

    bench = Bench(dry)
    backend = "gloo" if dry else "nccl"
    info = dist_mod.init_distributed("cpu" if dry else "cuda")  # the train stage's set-up (WORLD_SIZE >= 2)
    if info.world == 1:  # one GPU: a group of one still runs NCCL's communicator and DDP's all-reduce
        dist.init_process_group(backend=backend)
        info = dist_mod.DistInfo(owns_group=True)
    try:
        bench.device = dist_mod.pick_device(info) if not dry else torch.device("cpu")
        torch.manual_seed(0)
        model = create_model("interir", bench.preset).to(bench.device)
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[bench.device.index] if bench.device.type == "cuda" else None)
        if bench.batch % info.world:
            raise SystemExit(f"global batch {bench.batch} is not divisible by {info.world} processes")
        step = train_step_fn(bench, model, bench.batch // info.world, channels_last=False, net=net)
        bench.reset_peak()
        stats = bench.timed(step, TRAIN_WARMUP, DDP_STEPS, DDP_CAP_S / 3)
        if info.is_main:
            write_text(result, json.dumps({"model": "interir", "nproc": info.world, "backend": dist.get_backend(),
                                           "global_batch": bench.batch, "patch": bench.patch,
                                           "steps_per_s": round(1.0 / stats["median_s"], 4), **stats,
                                           "peak_mem_gb_rank0": bench.peak_gb()}))
        dist_mod.barrier(info)
    finally:
        dist_mod.shutdown(info)
    return 0


# ------------------------------------------------------------------------------------------------ main
@contextlib.contextmanager
def section(record: dict[str, Any], key: str, bench: Bench) -> Iterator[None]:
    """Record the section's wall time, or its error (the run goes on), or that the budget skipped it."""
    t = time.perf_counter()
    try:
        yield
    except Exception as exc:  # one model failing must not lose the others' numbers
        record[key] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        if bench.device.type == "cuda":
            torch.cuda.empty_cache()
    record.setdefault("seconds", {})[key] = round(time.perf_counter() - t, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry", action="store_true", help="the same code paths on the CPU at tiny sizes (seconds)")
    p.add_argument("--models", nargs="*", help="default: params.yaml models")
    p.add_argument("--out", help="default: benchmarks/results/gpu_<device name>.json")
    p.add_argument("--no-ddp", action="store_true", help="skip the torchrun section")
    p.add_argument("--ddp-worker", metavar="RESULT", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.ddp_worker:
        return ddp_worker(Path(a.ddp_worker), a.dry)
    if not a.dry and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; --dry runs the same code paths on the CPU", file=sys.stderr)
        return 2
    bench = Bench(a.dry)
    if a.dry:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:
        torch.backends.cudnn.benchmark = True
    from interir.registry import create_model

    info = device_info(bench)
    out = Path(a.out) if a.out else out_path(info)
    result: dict[str, Any] = {
        "benchmark": "bench_gpu: latency (Table 8 protocol), training steps/s and peak memory at the paper preset, "
                     "explainable vs depthwise conv, DDP under torchrun",
        "device": info,
        "protocol": {"latency": f"batch 1, 1x3x{bench.size}x{bench.size}, no_grad, {LAT_WARMUP} warm-up passes, "
                                f"median of up to {LAT_REPEATS} synchronised passes or {LAT_CAP_S} s; fp32 and bf16 "
                                "autocast; cudnn.benchmark on",
                     "train": f"global batch {bench.batch}, patch {bench.patch}, preset {bench.preset}, bf16 "
                              "autocast, L1+FFT loss in fp32, grad clip, Adam, fixed random batch (no data "
                              f"loading); {TRAIN_WARMUP} warm-up steps, median of up to {TRAIN_STEPS} steps or "
                              f"{TRAIN_CAP_S} s; channels-last off and on; batch halved on OOM",
                     "peak_memory": "torch.cuda.max_memory_allocated, reset before each configuration"},
        "budget_s": BUDGET_S, "deadline_s": DEADLINE_S, "models": {},
    }
    for name in a.models or bench.models:
        rec: dict[str, Any] = {"preset": bench.preset}
        result["models"][name] = rec
        if bench.over_deadline():
            rec["skipped"] = "time budget"
            continue
        with section(rec, "latency", bench):
            torch.manual_seed(0)
            model = create_model(name, bench.preset).to(bench.device)
            rec["params"] = sum(q.numel() for q in model.parameters())
            rec["latency"] = latency(bench, model)
            del model
        with section(rec, "train", bench):
            rec["train"] = train(bench, name)
        result["elapsed_s"] = round(bench.elapsed(), 1)
        write_text(out, json.dumps(result, indent=2) + "\n")
        print(f"{name:>16}: {json.dumps({k: rec.get(k) for k in ('latency', 'train')})[:300]} "
              f"({bench.elapsed():.0f} s)", flush=True)
    for key, run in (("xconv", lambda: xconv(bench)), ("ddp", lambda: ddp(bench, out))):
        if key == "ddp" and a.no_ddp:
            continue
        if bench.over_deadline():
            result[key] = {"skipped": "time budget"}
            continue
        with section(result, key, bench):
            result[key] = run()
        print(f"{key}: {json.dumps(result[key])[:300]} ({bench.elapsed():.0f} s)", flush=True)
    result["elapsed_s"] = round(bench.elapsed(), 1)
    write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"-> {out} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
