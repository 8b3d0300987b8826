"""DVC stage ``train@<model>-<seed>``: the one training loop for every registered model.

Iteration-based: Adam (beta1, beta2 from params), warm-up + cosine annealing from ``lr``
to ``lr_min`` (a pure function of the step, :func:`pipelines.config.lr_at`), the L1 +
0.1*FFT-L1 loss, random patches with h/v flips drawn per step from (seed, step), and
gradient-norm clipping. Auto-resume: ``<ckpt-dir>/last.pt`` is written atomically every
``ckpt_every`` steps; a run started again (after a crash or SIGKILL) continues from it and,
on the CPU, ends with bit-identical weights. A non-finite loss stops the run, keeps the
last good checkpoint and marks the MLflow run FAILED.

Data parallel: launched by ``torchrun``, each process takes its slice of the global batch
(``train.<profile>.batch`` is the global batch), gradients are averaged by DDP, and rank
0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
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
from pipelines.pairs import PatchSampler, data_version, read_manifest


class TrainingError(UserError):
    """The run cannot continue (non-finite loss, ...); the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(dist_info: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def run_name(model: str, seed: int) -> str:
    return f"{model}-s{seed}"


def _resume_key(model: str, model_args: dict, cfg: TrainConfig, seed: int, dver: str) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed rather than restarted."""
    return {"model": model, "model_args": _plain(model_args), "train": dataclasses.asdict(cfg), "seed": seed,
            "data_version": dver}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


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
    from interir.losses import L1FFTLoss
    from interir.registry import create_model, model_args

    cfg = params.train
    probe = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dist_info = init_distributed(probe.type)
    device = pick_device(dist_info)
    if cfg.batch % dist_info.world:
        raise UserError(f"train batch {cfg.batch} is not divisible by the {dist_info.world} processes")

    pairs = read_manifest(data_dir, "train")
    dver = data_version(data_dir)
    args = model_args(model_name, params.preset)
    key = _resume_key(model_name, args, cfg, seed, dver)

    seed_everything(seed)
    model = create_model(model_name, params.preset).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    loss_fn = L1FFTLoss(cfg.fft_weight)

    last = ckpt_dir / "last.pt"
    start = 0
    run_id = None
    if last.exists():
        state = ckpt_io.load(last, expect_model=model_name)
        if state.get("resume_key") == key:
            model.load_state_dict(state["model_state"])
            opt.load_state_dict(state["optimizer_state"])
            ckpt_io.set_rng_state(state["rng"])
            start = int(state["step"])
            run_id = state.get("mlflow_run_id")
            if dist_info.is_main:
                print(f"resuming {model_name} from step {start} ({last})", file=sys.stderr)
        elif dist_info.is_main:
            print(f"{last}: written for another config or data version; starting afresh", file=sys.stderr)

    ddp_model = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = PatchSampler(pairs, cfg.patch, seed=seed)
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
            "model_state": model.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "lr": cfg.lr, "lr_min": cfg.lr_min,
                          "warmup_iters": cfg.warmup_iters, "cosine_iters": cfg.cosine_iters},
            "mlflow_run_id": mlflow_run_id,
        }
        if with_optimizer:
            payload["optimizer_state"] = opt.state_dict()
            payload["rng"] = ckpt_io.rng_state()
        return payload

    tracker = None
    if track and dist_info.is_main:
        from pipelines import tracking

        tags = tracking.run_tags("train", model_name, params.profile, seed, dver)
        tracker = tracking.tracked_run(params.profile, f"train:{model_name}:s{seed}", tags, run_id=run_id)
    ctx = tracker if tracker is not None else nullcontext(None)
    t0 = time.perf_counter()
    losses: list[float] = []
    with ctx as run:
        mlflow = None
        if run is not None:
            import mlflow  # already imported by tracking.setup

            run_id = run.info.run_id
            if start == 0:
                mlflow.log_params({
                    "model": model_name, "preset": params.preset, "profile": params.profile, "seed": seed,
                    "iters": cfg.iters, "batch": cfg.batch, "patch": cfg.patch, "lr": cfg.lr,
                    "lr_min": cfg.lr_min, "n_params": n_params, "world_size": dist_info.world,
                    "data_version": dver,
                })
                mlflow.log_dict(_plain(params.to_dict()), "config/params_resolved.json")
        from tqdm.auto import tqdm

        bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=f"train {model_name}",
                   disable=not dist_info.is_main, dynamic_ncols=True, file=sys.stderr)
        ddp_model.train()
        steps_this_run = 0
        for step in bar:
            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = sampler.batch(step, cfg.batch, dist_info.rank, dist_info.world)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with amp:
                pred = ddp_model(x)
            loss = loss_fn(pred.float(), y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at step {step} of {model_name}; "
                    f"last good checkpoint kept at {last if last.exists() else 'none (no checkpoint yet)'}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            done = step + 1
            steps_this_run += 1
            lval = loss.item()
            losses.append(lval)
            if dist_info.is_main:
                bar.set_postfix(loss=f"{lval:.4f}", lr=f"{lr:.2e}", refresh=False)
                if mlflow is not None and (done % cfg.log_every == 0 or done == cfg.iters):
                    window = losses[-cfg.log_every :]
                    mlflow.log_metrics({"train/loss": float(np.mean(window)), "train/lr": lr}, step=done)
                if done % cfg.ckpt_every == 0 or done == cfg.iters:
                    ckpt_io.save(last, checkpoint_payload(done, True, run_id))
            if stop_after is not None and steps_this_run >= stop_after:
                return {"stopped_at": done}
        bar.close()
        elapsed = time.perf_counter() - t0
        summary = {
            "model": model_name,
            "seed": seed,
            "steps": cfg.iters,
            "resumed_from": start,
            "final_loss": float(np.mean(losses[-cfg.log_every :])) if losses else float("nan"),
            "it_per_s": steps_this_run / elapsed if elapsed > 0 else 0.0,
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
    return summary


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
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    name = run_name(a.model, a.seed)
    summary = train(a.model, params, a.seed, Path(a.data), Path(a.ckpt_dir) / name, Path(a.out) / name,
                    track=not a.no_mlflow, stop_after=a.stop_after)
    if "stopped_at" not in summary:
        print(f"trained {a.model} (seed {a.seed}): loss {summary['final_loss']:.4f}, "
              f"{summary['it_per_s']:.2f} it/s -> {Path(a.out) / name / 'model.pt'}")
    return 0
