"""DVC stage ``train@<model>-<seed>``: the one training loop for every registered model.

Iteration-based: Adam (beta1, beta2 from params), warm-up + cosine annealing from ``lr``
to ``lr_min`` (a pure function of the step, :func:`pipelines.config.lr_at`), the L1 +
0.1*FFT-L1 loss, random patches with h/v flips drawn per step from (seed, step), and
gradient-norm clipping. Auto-resume: ``<ckpt-dir>/last.pt`` is written atomically every
``ckpt_every`` steps; a run started again (after a crash or SIGKILL) continues from it and,
on the CPU, ends with bit-identical weights. A non-finite loss stops the run, keeps the
last good checkpoint and marks the MLflow run FAILED.

Data parallel: launched by ``torchrun``, each process takes its slice of the global batch
(``train.<profile>.batch`` is the global batch), gradients are averaged by DDP, rank 0
alone logs and writes checkpoints (barriers after each write), resume state is read by
rank 0 and broadcast, and the process group is destroyed at the end. MLflow: one run per
(model, profile, seed), see :mod:`pipelines.tracking`. User guide: ``docs/engine.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import checkpoint as ckpt_io
from pipelines import env
from pipelines.config import Params, TrainConfig, load_params, lr_at
from pipelines.env import UserError
from pipelines.imageio import write_text
from pipelines.pairs import PatchSampler, StepBatches, data_version, read_manifest


class TrainingError(UserError):
    """The run cannot continue (non-finite loss, ...); the last good checkpoint is kept."""


# Train keys that change neither the batches nor the arithmetic: editing them keeps a checkpoint resumable.
_NOT_IN_RESUME_KEY = ("log_every", "ckpt_every", "num_workers")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def barrier(dist_info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process): used where rank 0 writes files."""
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def pick_device(dist_info: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def run_name(model: str, seed: int) -> str:
    """Folder name of a (model, seed) run under ``results/`` and ``checkpoints/``."""
    return f"{model}-s{seed}"


def _resume_key(model: str, model_args: dict, cfg: TrainConfig, seed: int, dver: str) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed rather than restarted."""
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_RESUME_KEY}
    return {"model": model, "model_args": _plain(model_args), "train": train, "seed": seed, "data_version": dver}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _load_resume_state(last: Path, model_name: str, dist_info: DistInfo) -> dict[str, Any] | None:
    """Rank 0 reads ``last.pt`` and sends it to the other ranks (no shared filesystem needed)."""
    state = None
    err: str | None = None
    if dist_info.is_main and last.exists():
        try:
            state = ckpt_io.load(last, expect_model=model_name)
        except UserError as exc:
            err = str(exc)
    if dist_info.world > 1:
        import torch.distributed as dist

        box = [(state, err)]
        dist.broadcast_object_list(box, src=0)
        state, err = box[0]
    if err is not None:
        raise ckpt_io.CheckpointError(err)
    return state


def _global_mean(value: torch.Tensor, dist_info: DistInfo) -> float:
    """The loss averaged over ranks: what a single process with the global batch would see."""
    if dist_info.world == 1:
        return float(value.item())
    import torch.distributed as dist

    t = value.detach().float().clone()
    dist.all_reduce(t)
    return float(t.item()) / dist_info.world


def train(
    model_name: str,
    params: Params,
    seed: int,
    data_dir: Path,
    ckpt_dir: Path,
    out_dir: Path,
    track: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` and write ``out_dir/model.pt`` and ``out_dir/train.json``.

    ``stop_after`` ends the process after that many steps of this invocation (used to
    test resumption); the final outputs are then not written.
    """
    probe = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist_info = init_distributed(probe.type)
    try:
        return _train(model_name, params, seed, data_dir, ckpt_dir, out_dir, track, stop_after, dist_info)
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    model_name: str,
    params: Params,
    seed: int,
    data_dir: Path,
    ckpt_dir: Path,
    out_dir: Path,
    track: bool,
    stop_after: int | None,
    dist_info: DistInfo,
) -> dict[str, Any]:
    from interir.losses import L1FFTLoss
    from interir.registry import create_model, model_args

    cfg = params.train
    device = pick_device(dist_info)
    if cfg.batch % dist_info.world:
        raise UserError(f"train batch {cfg.batch} (global) is not divisible by the {dist_info.world} processes")

    pairs = read_manifest(data_dir, "train")
    dver = data_version(data_dir)
    args = model_args(model_name, params.preset)
    key = _resume_key(model_name, args, cfg, seed, dver)
    last = ckpt_dir / "last.pt"
    if dist_info.is_main:
        _check_writable(ckpt_dir)
        _check_writable(out_dir)

    seed_everything(seed)
    model = create_model(model_name, params.preset).to(device)
    memory_format = torch.channels_last if cfg.channels_last and device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    loss_fn = L1FFTLoss(cfg.fft_weight)

    start = 0
    run_id = None
    last_good = "none yet"
    losses: list[float] = []  # this window is checkpointed, so logged means match an uninterrupted run
    state = _load_resume_state(last, model_name, dist_info)
    if state is not None:
        if state.get("resume_key") == key:
            model.load_state_dict(state["model_state"])
            opt.load_state_dict(state["optimizer_state"])
            ckpt_io.set_rng_state(state["rng"])
            start = int(state["step"])
            run_id = state.get("mlflow_run_id")
            losses = [float(v) for v in state.get("recent_losses", [])]
            last_good = f"{last} (step {start})"
            if dist_info.is_main:
                print(f"resuming {model_name} from step {start} ({last})", file=sys.stderr)
        elif dist_info.is_main:
            print(f"{last}: written for another config or data version; starting afresh", file=sys.stderr)
    del state

    ddp_model: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = PatchSampler(pairs, cfg.patch, seed=seed)
    batches = _batches(sampler, cfg, start, dist_info, pin=device.type == "cuda")
    amp = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if cfg.amp_bf16 and device.type == "cuda"
        else nullcontext()
    )

    def checkpoint_payload(step: int, with_optimizer: bool, mlflow_run_id: str | None) -> dict[str, Any]:
        payload = {
            "model": model_name,
            "model_args": _plain(args),
            "preset": params.preset,
            "profile": params.profile,
            "config": _plain(params.to_dict()),
            "resume_key": key,
            "step": step,
            "seed": seed,
            "data_version": dver,
            "world_size": dist_info.world,
            "model_state": model.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "lr": cfg.lr, "lr_min": cfg.lr_min,
                          "warmup_iters": cfg.warmup_iters, "cosine_iters": cfg.cosine_iters,
                          "last_lr": lr_at(cfg, max(step - 1, 0))},
            "mlflow_run_id": mlflow_run_id,
            "recent_losses": [float(v) for v in losses[-cfg.log_every :]],
        }
        if with_optimizer:
            payload["optimizer_state"] = opt.state_dict()
            payload["rng"] = ckpt_io.rng_state()
        return payload

    tracker = None
    if track and dist_info.is_main:
        from pipelines import tracking

        tags = tracking.run_tags(model_name, params.profile, seed, dver)
        tracker = tracking.tracked_run(params.profile, tracking.run_name(model_name, params.profile, seed), tags,
                                       run_id=run_id)
    ctx = tracker if tracker is not None else nullcontext(None)
    with ctx as run:
        mlflow = None
        if run is not None:
            import mlflow  # already imported by tracking.setup

            run_id = run.info.run_id
            if not run.data.params:  # a new run (not a resumed one): few, flat params
                mlflow.log_params({
                    "model": model_name, "preset": params.preset, "profile": params.profile, "seed": seed,
                    "iters": cfg.iters, "batch_global": cfg.batch, "patch": cfg.patch, "lr": cfg.lr,
                    "lr_min": cfg.lr_min, "warmup_iters": cfg.warmup_iters, "fft_weight": cfg.fft_weight,
                    "grad_clip": cfg.grad_clip, "amp_bf16": cfg.amp_bf16, "n_params": n_params,
                    "world_size": dist_info.world, "data_version": dver,
                })
                mlflow.log_dict(_plain(params.to_dict()), "config/params_resolved.json")
        from tqdm.auto import tqdm

        bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=f"train {model_name}",
                   disable=not dist_info.is_main, dynamic_ncols=True, file=sys.stderr, unit="it")
        ddp_model.train()
        steps_this_run = 0
        t0 = time.perf_counter()
        for step in bar:
            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = next(batches)
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True, memory_format=memory_format)
            with amp:
                pred = ddp_model(x)
            loss = loss_fn(pred.float(), y)
            lval = _global_mean(loss, dist_info)
            if not math.isfinite(lval):
                raise TrainingError(
                    f"non-finite loss ({lval}) at step {step + 1} of {model_name} (seed {seed}); run stopped, "
                    f"last good checkpoint: {last_good}; lower train.lr or check the data"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            done = step + 1
            steps_this_run += 1
            losses.append(lval)
            del losses[: -cfg.log_every]
            if dist_info.is_main:
                bar.set_postfix(loss=f"{lval:.4f}", lr=f"{lr:.2e}", refresh=False)
                if mlflow is not None and (done % cfg.log_every == 0 or done == cfg.iters):
                    window = losses[-cfg.log_every :]
                    mlflow.log_metrics({"train/loss": float(np.mean(window)), "train/lr": lr}, step=done)
            if done % cfg.ckpt_every == 0 or done == cfg.iters:
                if dist_info.is_main:
                    ckpt_io.save(last, checkpoint_payload(done, True, run_id))
                last_good = f"{last} (step {done})"
                barrier(dist_info)
            if stop_after is not None and steps_this_run >= stop_after:
                bar.close()
                if mlflow is not None:
                    mlflow.end_run(status="KILLED")  # deliberately stopped; a restart reopens it
                return {"stopped_at": done}
        bar.close()
        elapsed = time.perf_counter() - t0
        summary = {
            "model": model_name,
            "seed": seed,
            "steps": cfg.iters,
            "resumed_from": start,
            "final_loss": float(np.mean(losses[-cfg.log_every :])) if losses else None,
            "it_per_s": steps_this_run / elapsed if elapsed > 0 else 0.0,
            "batch_global": cfg.batch,
            "n_params": n_params,
            "world_size": dist_info.world,
            "device": str(device),
            "data_version": dver,
            "mlflow_run_id": run_id,
        }
        if dist_info.is_main:
            final = out_dir / "model.pt"
            ckpt_io.save(final, checkpoint_payload(cfg.iters, False, run_id))
            write_text(out_dir / "train.json", json.dumps(summary, indent=2))
            if mlflow is not None:
                mlflow.log_metrics({"train/it_per_s": summary["it_per_s"]}, step=cfg.iters)
                mlflow.log_artifact(str(final), "checkpoint")
        barrier(dist_info)
    return summary


def _batches(sampler: PatchSampler, cfg: TrainConfig, start: int, dist_info: DistInfo, pin: bool) -> Iterator:
    """This rank's batches for steps ``start, start+1, ...``: in-process, or prefetched by workers."""
    if cfg.num_workers <= 0:
        return (sampler.batch(s, cfg.batch, dist_info.rank, dist_info.world) for s in range(start, cfg.iters))
    from torch.utils.data import DataLoader

    loader = DataLoader(StepBatches(sampler, cfg.batch, dist_info.rank, dist_info.world), batch_size=None,
                        sampler=range(start, cfg.iters), num_workers=cfg.num_workers, pin_memory=pin,
                        prefetch_factor=2)
    return iter(loader)


def _check_writable(folder: Path) -> None:
    """Fail before any work if ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: folder is not writable")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interir-bench train", description=__doc__.splitlines()[0])
    p.add_argument("model", help="registered model name (see 'interir-bench models')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", choices=("smoke", "small", "paper"), help="override the params profile")
    p.add_argument("--data", default="datasets/mdir", help="synthesized set (manifest.csv)")
    p.add_argument("--out", default="results/train", help="final checkpoint and summary go to OUT/<model>-s<seed>")
    p.add_argument("--ckpt-dir", default="checkpoints", help="resume checkpoints go to CKPT_DIR/<model>-s<seed>")
    p.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    env.apply_defaults()
    a = _parser().parse_args(argv)
    params = load_params(a.params, a.profile)
    from interir.registry import list_models

    if a.model not in list_models():
        raise UserError(f"unknown model {a.model!r}; known: {', '.join(list_models())}")
    torch.set_num_threads(env.torch_threads())
    name = run_name(a.model, a.seed)
    summary = train(a.model, params, a.seed, Path(a.data), Path(a.ckpt_dir) / name, Path(a.out) / name,
                    track=not a.no_mlflow, stop_after=a.stop_after)
    if "stopped_at" not in summary and int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"
        print(f"trained {a.model} (seed {a.seed}): loss {loss}, "
              f"{summary['it_per_s']:.2f} it/s -> {Path(a.out) / name / 'model.pt'}")
    return 0
