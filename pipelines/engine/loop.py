"""The one training loop for every registered model (nanoGPT style: set-up in helpers, one straight loop).

Iteration-based: Adam (beta1, beta2 from params), warm-up + cosine annealing from ``lr`` to ``lr_min``
(:func:`lr_at`, a pure function of the step), the L1 + 0.1*FFT-L1 loss, random patches with h/v flips
drawn per step from (seed, step) (:mod:`pipelines.data.sampler`), and gradient-norm clipping.

Auto-resume: ``<ckpt-dir>/last.pt`` is written atomically every ``ckpt_every`` steps; a run started again
(after a crash or SIGKILL) continues from it and, on the CPU, ends with bit-identical weights. A
non-finite loss stops the run, keeps the last good checkpoint and marks the MLflow run FAILED.

Data parallel under ``torchrun`` (:mod:`pipelines.engine.distributed`): each process takes its slice of
the global batch (``train.<profile>.batch``), DDP averages gradients, rank 0 alone logs and writes
checkpoints, resume state is read by rank 0 and broadcast. MLflow: one run per (model, profile, seed),
see :mod:`pipelines.common.tracking`. User guide: ``docs/engine.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.common.config import Params, TrainConfig
from pipelines.common.env import UserError
from pipelines.common.files import atomic_dir, ensure_writable_dir, write_bytes, write_text
from pipelines.common.paths import MODEL_FILE, SNAPSHOTS, TRAIN_CURVE, TRAIN_SUMMARY
from pipelines.data.manifest import data_version, read_manifest, verify_pairs
from pipelines.data.sampler import PatchSampler, StepBatches
from pipelines.engine import checkpoint as ckpt_io
from pipelines.engine import distributed as dist_mod
from pipelines.engine.distributed import DistInfo

# Train keys that change neither the batches nor the arithmetic: editing them keeps a checkpoint resumable.
_NOT_IN_RESUME_KEY = ("log_every", "ckpt_every", "num_workers")


class TrainingError(UserError):
    """The run cannot continue (non-finite loss, ...); the last good checkpoint is kept."""


def lr_at(cfg: TrainConfig, step: int, budget: int | None = None) -> float:
    """The learning rate of ``step`` in a run of ``budget`` steps (default ``train.iters``): a linear warm-up, then

    - ``cosine``: cosine annealing from ``lr`` to ``lr_min`` over the rest of the budget;
    - ``wsd`` (warmup-stable-decay): ``lr`` until the last ``decay_fraction`` of the budget, then linear to
      ``lr_min``; up to its decay a run of any budget follows the same rates, so one run can branch off
      shorter budgets (:func:`run_budget`) that equal separate runs of those budgets, step for step;
    - ``linear``: linear from ``lr`` to ``lr_min`` over the rest of the budget (DeepSN-Net's recipe).
    """
    budget = budget or cfg.iters
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    if cfg.schedule == "wsd":
        start = decay_start(cfg, budget)
        t = 0.0 if step < start else min(1.0, (step - start + 1) / max(1, budget - start))
        return cfg.lr + (cfg.lr_min - cfg.lr) * t
    t = min(1.0, (step - cfg.warmup_iters) / max(1, budget - cfg.warmup_iters))
    if cfg.schedule == "linear":
        return cfg.lr + (cfg.lr_min - cfg.lr) * t
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def decay_start(cfg: TrainConfig, budget: int) -> int:
    """First step of the ``wsd`` schedule's decay in a run of ``budget`` steps (never inside the warm-up)."""
    return max(cfg.warmup_iters, budget - round(cfg.decay_fraction * budget))


def effective_train(cfg: TrainConfig, model_name: str, profile: str) -> TrainConfig:
    """The train config a model trains with: the shared recipe, or with ``train.recipe: original`` its card's
    published one (:class:`interir.registry.Recipe`; batch, patch and iterations only at the paper profile).
    A model without a published recipe keeps the shared one (its card says why)."""
    from interir.registry import get_card

    r = get_card(model_name).recipe
    if cfg.recipe != "original" or r is None:
        return cfg
    budget = {"batch": r.batch or cfg.batch, "patch": r.patch or cfg.patch, "iters": r.iters or cfg.iters} \
        if profile == "paper" else {}
    return dataclasses.replace(cfg, optimizer=r.optimizer, lr=r.lr, lr_min=r.lr_min, beta1=r.betas[0],
                               beta2=r.betas[1], weight_decay=r.weight_decay, schedule=r.schedule, loss=r.loss,
                               warmup_iters=round(r.warmup_fraction * budget.get("iters", cfg.iters)),
                               fft_weight=r.fft_weight, grad_clip=r.grad_clip,
                               budgets=cfg.budgets if r.schedule == "wsd" else (), **budget)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _plain(obj: Any) -> Any:
    """Tuples -> lists, recursively: what a ``weights_only`` checkpoint and JSON can hold."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclasses.dataclass
class Run:
    """Everything the loop touches, built once by :func:`setup`."""

    name: str
    params: Params
    seed: int
    dist: DistInfo
    device: torch.device
    model: torch.nn.Module  # the bare model (checkpoints, clipping)
    net: torch.nn.Module  # what the forward pass calls: the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    loss_fn: torch.nn.Module | None  # None: the model's own training_losses
    args: dict[str, Any]  # constructor arguments (recorded in checkpoints)
    key: dict[str, Any]  # what must match for a checkpoint to be resumed
    data_version: str
    sampler: PatchSampler
    last: Path  # the resume checkpoint
    out_dir: Path
    memory_format: torch.memory_format
    n_params: int
    encoder_steps: int = 0  # loss "model": steps in the model's first (encoder-only) phase

    @property
    def cfg(self) -> TrainConfig:
        return self.params.train


@dataclasses.dataclass
class Progress:
    """What a resume restores besides the weights: the step, the MLflow run, the loss window and curve."""

    step: int = 0
    run_id: str | None = None
    losses: list[float] = dataclasses.field(default_factory=list)  # checkpointed, so logged means match
    curve: list[dict[str, float]] = dataclasses.field(default_factory=list)  # (step, loss, lr) per log_every
    last_good: str = "none yet"


def setup(model_name: str, params: Params, seed: int, data_dir: Path, ckpt_dir: Path, out_dir: Path,
          dist: DistInfo) -> Run:
    """Check the outputs, read the data, build the seeded model and its optimizer."""
    from interir.losses import build_loss
    from interir.registry import create_model, get_card, model_args

    cfg = effective_train(params.train, model_name, params.profile)
    device = dist_mod.pick_device(dist)
    if cfg.batch % dist.world:
        raise UserError(f"train batch {cfg.batch} (global) is not divisible by the {dist.world} processes")
    stride = get_card(model_name).stride
    if cfg.patch % stride:
        raise UserError(f"params key train.{params.profile}.patch: {cfg.patch} is not a multiple of {model_name}'s "
                        f"stride {stride}")
    pairs = read_manifest(data_dir, "train")
    verify_pairs(pairs)  # a mixed dataset is refused even if training would not sample its foreign files
    dver = data_version(data_dir)
    args = model_args(model_name, params.preset)
    train_keys = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_RESUME_KEY}
    key = {"model": model_name, "model_args": _plain(args), "train": train_keys, "seed": seed, "data_version": dver}
    if dist.is_main:
        ensure_writable_dir(ckpt_dir)
        ensure_writable_dir(out_dir)
    seed_everything(seed)
    memory_format = torch.channels_last if cfg.channels_last and device.type == "cuda" else torch.contiguous_format
    model = create_model(model_name, params.preset).to(device).to(memory_format=memory_format)
    net: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # A model whose forward leaves trainable parameters unused (AirNet: its contrastive encoder head, trained
        # only by its own training_losses) says so with this class attribute; DDP then looks for them every step.
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                  find_unused_parameters=bool(getattr(model, "ddp_find_unused_parameters", False)))
    encoder_steps = 0
    if cfg.loss == "model":  # the model's own objective (AirNet's two phases), a method outside DDP's forward
        if dist.world > 1:
            raise UserError(f"{model_name}'s own training objective runs in one process (as its official code does)")
        from interir.registry import get_card

        encoder_steps = round(get_card(model_name).recipe.encoder_fraction * cfg.iters)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = optimizer(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return Run(model_name, dataclasses.replace(params, train=cfg), seed, dist, device, model, net, opt,
               None if cfg.loss == "model" else build_loss(cfg.loss, cfg.fft_weight), args, key, dver,
               PatchSampler(pairs, cfg.patch, seed=seed), ckpt_dir / "last.pt", out_dir, memory_format,
               sum(p.numel() for p in model.parameters()), encoder_steps)


def resume(run: Run) -> Progress:
    """Continue from ``last.pt`` when it was written for this run's key; rank 0 reads, every rank loads."""
    state, err = None, None
    if run.dist.is_main and run.last.exists():
        try:
            state = ckpt_io.load(run.last, expect_model=run.name)
        except UserError as exc:
            err = str(exc)
    state, err = dist_mod.broadcast_from_main((state, err), run.dist)
    if err is not None:
        raise ckpt_io.CheckpointError(err)
    if state is None:
        return Progress()
    if state.get("resume_key") != run.key:
        if run.dist.is_main:
            print(f"{run.last}: written for another config or data version; starting afresh", file=sys.stderr)
        return Progress()
    # The resume key matched, but the file is still untrusted: shapes first, then the optimizer and RNG states.
    ckpt_io.check_state(run.model, state["model_state"], run.last, run.name)
    try:
        run.model.load_state_dict(state["model_state"])
        run.opt.load_state_dict(state["optimizer_state"])
        ckpt_io.set_rng_state(state["rng"])
        step = int(state["step"])
        if not 0 <= step <= run.cfg.iters:
            raise ValueError(f"step {step} outside [0, {run.cfg.iters}]")
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise ckpt_io.CheckpointError(f"{run.last}: unusable resume state ({ckpt_io.first_line(exc)}); delete it "
                                      "to start afresh") from None
    if run.dist.is_main:
        print(f"resuming {run.name} from step {step} ({run.last})", file=sys.stderr)
    return Progress(step, state.get("mlflow_run_id"), [float(v) for v in state.get("recent_losses", [])],
                    [dict(p) for p in state.get("curve", [])], f"{run.last} (step {step})")


def checkpoint_payload(run: Run, prog: Progress, resumable: bool, budget: int | None = None) -> dict[str, Any]:
    """A self-describing checkpoint at ``prog.step``.

    The final ``model.pt`` is a pure function of the stage's inputs (same params, data and threads: same
    bytes), so ``dvc.lock`` proves a reproduction; ``resumable`` (``last.pt``) adds what only a resume needs:
    optimizer and RNG states, the MLflow run to reopen, the loss window and the curve so far.
    """
    cfg, step = run.cfg, prog.step
    payload = {
        "model": run.name, "model_args": _plain(run.args), "preset": run.params.preset,
        "profile": run.params.profile, "config": {"train": _plain(dataclasses.asdict(cfg))}, "resume_key": run.key,
        "step": step, "seed": run.seed, "data_version": run.data_version, "world_size": run.dist.world,
        "model_state": run.model.state_dict(),
        "scheduler": {"kind": cfg.schedule, "lr": cfg.lr, "lr_min": cfg.lr_min, "warmup_iters": cfg.warmup_iters,
                      "budget": budget or cfg.iters, "last_lr": lr_at(cfg, max(step - 1, 0), budget)},
    }
    if resumable:
        payload["optimizer_state"] = run.opt.state_dict()
        payload["rng"] = ckpt_io.rng_state()
        payload["mlflow_run_id"] = prog.run_id
        payload["recent_losses"] = [float(v) for v in prog.losses[-cfg.log_every:]]
        payload["curve"] = [dict(p) for p in prog.curve]
    return payload


def snapshot_path(run: Run, budget: int) -> Path:
    """Where the checkpoint of a shorter budget waits until the run finishes (beside ``last.pt``: DVC deletes
    the stage's outputs before a rerun, a resumed run must not lose the budgets it already branched off)."""
    return run.last.with_name(f"snapshot_{budget}.pt")


def step_once(run: Run, x: torch.Tensor, y: torch.Tensor, lr: float, amp: Any, where: str, step: int) -> float:
    """One optimisation step at learning rate ``lr``; returns the loss (averaged over ranks)."""
    for g in run.opt.param_groups:
        g["lr"] = lr
    x, y = (t.to(run.device, non_blocking=True, memory_format=run.memory_format) for t in (x, y))
    with amp:
        if run.loss_fn is None:  # the model's own objective: AirNet's encoder phase, then the joint one
            phase = "encoder" if step < run.encoder_steps else "joint"
            loss = run.model.training_losses(x, y, phase=phase)["loss"].float()
        else:
            loss = run.loss_fn(run.net(x).float(), y)
    lval = dist_mod.global_mean(loss, run.dist)
    if not math.isfinite(lval):
        raise TrainingError(f"non-finite loss ({lval}) at {where} of {run.name} (seed {run.seed}); run stopped; "
                            "lower train.lr or check the data")
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.opt.step()
    return lval


def run_budget(run: Run, budget: int, amp: Any) -> None:
    """Branch a run of ``budget`` steps off the main line at its decay start (``wsd``): train its decay on a copy of
    the state, save its checkpoint, restore the main line. Batches are a function of the step, so the result
    equals a separate run of ``budget`` steps."""
    import copy

    start = decay_start(run.cfg, budget)
    saved = (copy.deepcopy(run.model.state_dict()), copy.deepcopy(run.opt.state_dict()), ckpt_io.rng_state())
    for step in range(start, budget):
        step_once(run, *run.sampler.batch(step, run.cfg.batch, run.dist.rank, run.dist.world),
                  lr_at(run.cfg, step, budget), amp, f"step {step + 1} of the {budget}-step budget", step)
    if run.dist.is_main:
        ckpt_io.save(snapshot_path(run, budget), checkpoint_payload(run, Progress(step=budget), False, budget))
    dist_mod.barrier(run.dist)
    run.model.load_state_dict(saved[0])
    run.opt.load_state_dict(saved[1])
    ckpt_io.set_rng_state(saved[2])


def batches(run: Run, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches for steps ``start, start+1, ...``: in-process, or prefetched by loader workers."""
    cfg, d = run.cfg, run.dist
    if cfg.num_workers <= 0:
        return (run.sampler.batch(s, cfg.batch, d.rank, d.world) for s in range(start, cfg.iters))
    from torch.utils.data import DataLoader

    loader = DataLoader(StepBatches(run.sampler, cfg.batch, d.rank, d.world), batch_size=None,
                        sampler=range(start, cfg.iters), num_workers=cfg.num_workers,
                        pin_memory=run.device.type == "cuda", prefetch_factor=2)
    return iter(loader)


@contextlib.contextmanager
def tracking(run: Run, prog: Progress, enabled: bool) -> Iterator[Any]:
    """The MLflow run of this training (rank 0 only; reopened on resume); yields mlflow or None."""
    if not (enabled and run.dist.is_main):
        yield None
        return
    import mlflow

    from pipelines.common import tracking as trk

    tags = {**trk.run_tags(run.name, run.params.profile, run.seed, run.data_version),
            "run.key": trk.run_key(run.key), "params.hash": trk.params_hash(run.key)}
    with trk.tracked_run(run.params.profile, trk.run_name(run.name, run.params.profile, run.seed), tags,
                         run_id=prog.run_id, source="pipelines.stages.train") as active:
        prog.run_id = active.info.run_id
        if not active.data.params:  # a new run (not a resumed one): few, flat params
            cfg = run.cfg
            mlflow.log_params({
                "model": run.name, "preset": run.params.preset, "profile": run.params.profile, "seed": run.seed,
                "iters": cfg.iters, "batch_global": cfg.batch, "patch": cfg.patch, "lr": cfg.lr,
                "lr_min": cfg.lr_min, "warmup_iters": cfg.warmup_iters, "fft_weight": cfg.fft_weight,
                "grad_clip": cfg.grad_clip, "amp_bf16": cfg.amp_bf16, "n_params": run.n_params,
                "world_size": run.dist.world, "data_version": run.data_version,
            })
            mlflow.log_dict(_plain(run.params.to_dict()), "config/params_resolved.json")
            _log_dataset(mlflow, run)
        yield mlflow


def _log_dataset(mlflow: Any, run: Run) -> None:
    """The training split as an MLflow dataset input, named by its content version."""
    import pandas as pd

    rows = [{"input": str(p.input), "target": str(p.target), "combination": p.combination, "haze": p.haze,
             "rain": p.rain, "noise": p.noise} for p in run.sampler.pairs]
    root = Path(rows[0]["input"]).resolve().parents[1]
    with warnings.catch_warnings():  # mlflow registers its local-file source twice and warns about it
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(pd.DataFrame(rows), source=root.as_uri(),
                                     name=f"mdir-train@{run.data_version}", digest=run.data_version)
    mlflow.log_input(ds, context="training")


def _log_model(mlflow: Any, run: Run) -> None:
    """The trained network with ``mlflow.pytorch`` and a signature: float32 RGB batches of any size, in [0, 1],
    to restored batches of the same shape."""
    import mlflow.pytorch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model = run.model.eval()
    images = Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))])
    signature = ModelSignature(inputs=images, outputs=images)
    # "pickle", not the "pt2" default: a torch.export graph is traced at one input size (these models restore
    # images of any size) and took 1-12 s per smoke model here. The store is trusted, unlike a checkpoint.
    mlflow.pytorch.log_model(model, name="model", signature=signature, input_example=x.numpy(),
                             serialization_format="pickle",
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])


def finish(run: Run, prog: Progress, mlflow: Any, steps_this_run: int, elapsed: float) -> dict[str, Any]:
    """Write ``model.pt``, ``train.json`` and ``curve.csv`` (rank 0) and log the run; return the summary.

    The files hold only what the inputs determine (DVC metrics and plots, byte-stable); speed, device and
    the resume history go to MLflow.
    """
    metrics = {"final_loss": float(np.mean(prog.losses[-run.cfg.log_every:])) if prog.losses else None,
               "steps": run.cfg.iters, "params": run.n_params}
    speed = {"it_per_s": steps_this_run / elapsed if elapsed > 0 else 0.0,
             "resumed_from": run.cfg.iters - steps_this_run}
    if run.dist.is_main:
        final = run.out_dir / MODEL_FILE
        with atomic_dir(run.out_dir) as build:  # the files appear together: a kill never mixes two runs'
            ckpt_io.save(build / MODEL_FILE, checkpoint_payload(run, prog, resumable=False))
            (build / SNAPSHOTS).mkdir()  # a DVC output, empty without budgets
            for budget in run.cfg.budgets:  # the shorter budgets' checkpoints, branched off during the run
                snap = snapshot_path(run, budget)
                if not snap.is_file():
                    raise TrainingError(f"{snap}: the {budget}-step budget's checkpoint is missing (resumed past "
                                        f"its branch point); delete {run.last.parent} to train {run.name} again")
                write_bytes(build / SNAPSHOTS / f"model_{budget}.pt", snap.read_bytes())
            write_text(build / TRAIN_SUMMARY, json.dumps(metrics, indent=2) + "\n")
            write_text(build / TRAIN_CURVE, "step,loss,lr\n" + "".join(
                f"{p['step']},{p['loss']:.6f},{p['lr']:.6e}\n" for p in prog.curve))
        if mlflow is not None:
            mlflow.log_metrics({"train/it_per_s": speed["it_per_s"]}, step=run.cfg.iters)
            mlflow.set_tags({"train.device": str(run.device), "train.world_size": str(run.dist.world),
                             "train.resumed_from": str(speed["resumed_from"])})
            mlflow.log_artifact(str(final), "checkpoint")
            _log_model(mlflow, run)
    dist_mod.barrier(run.dist)
    return {"model": run.name, "seed": run.seed, **metrics, **speed, "run_id": prog.run_id}


def train(model_name: str, params: Params, seed: int, data_dir: Path, ckpt_dir: Path, out_dir: Path,
          track: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train ``model_name``; write ``out_dir/model.pt`` and ``out_dir/train.json``; return the summary.

    ``stop_after`` ends this invocation after that many steps (tests of resumption): the run is left
    resumable and the final outputs are not written.
    """
    dist = dist_mod.init_distributed("cuda" if torch.cuda.is_available() else "cpu")
    try:
        run = setup(model_name, params, seed, Path(data_dir), Path(ckpt_dir), Path(out_dir), dist)
        cfg, prog = run.cfg, resume(run)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp_bf16 and run.device.type == "cuda" \
            else contextlib.nullcontext()
        data = batches(run, prog.step)
        with tracking(run, prog, track) as mlflow:
            from tqdm.auto import tqdm

            bar = tqdm(range(prog.step, cfg.iters), initial=prog.step, total=cfg.iters, desc=f"train {model_name}",
                       disable=not dist.is_main, dynamic_ncols=True, file=sys.stderr, unit="it")
            run.net.train()
            steps_this_run, t0 = 0, time.perf_counter()
            branch_at = {decay_start(cfg, b): b for b in cfg.budgets}
            for step in bar:
                if step in branch_at and not snapshot_path(run, branch_at[step]).is_file():
                    run_budget(run, branch_at[step], amp)
                lr = lr_at(cfg, step)
                lval = step_once(run, *next(data), lr, amp, f"step {step + 1} (last good checkpoint: {prog.last_good})",
                                 step)
                prog.step, steps_this_run = step + 1, steps_this_run + 1
                prog.losses = [*prog.losses, lval][-cfg.log_every:]
                bar.set_postfix(loss=f"{lval:.4f}", lr=f"{lr:.2e}", refresh=False)
                if prog.step % cfg.log_every == 0 or prog.step == cfg.iters:
                    prog.curve.append({"step": prog.step, "loss": float(np.mean(prog.losses)), "lr": lr})
                    if mlflow is not None:
                        mlflow.log_metrics({"train/loss": prog.curve[-1]["loss"], "train/lr": lr}, step=prog.step)
                if prog.step % cfg.ckpt_every == 0 or prog.step == cfg.iters:
                    if dist.is_main:
                        ckpt_io.save(run.last, checkpoint_payload(run, prog, resumable=True))
                    prog.last_good = f"{run.last} (step {prog.step})"
                    dist_mod.barrier(dist)
                if stop_after is not None and steps_this_run >= stop_after:
                    bar.close()
                    if mlflow is not None:
                        mlflow.end_run(status="KILLED")  # deliberately stopped; a restart reopens it
                    return {"stopped_at": prog.step}
            bar.close()
            return finish(run, prog, mlflow, steps_this_run, time.perf_counter() - t0)
    finally:
        dist_mod.shutdown(dist)
