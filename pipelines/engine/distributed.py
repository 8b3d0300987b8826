"""Data parallelism under ``torchrun``: process-group set-up, the device, barriers, rank-0 broadcasts.

A single process (``WORLD_SIZE`` unset or 1) needs none of it: every helper is then a no-op. Under
``torchrun`` the backend is NCCL on GPUs and gloo on the CPU; rank 0 alone writes files and logs.

``$INTERIR_NPROC_PER_NODE=N`` (N >= 2) makes the train stage start itself again under
``torchrun --standalone --nproc_per_node N`` (:func:`relaunch_under_torchrun`), so the command in
``dvc.yaml`` stays the one description of what the stage runs while a cluster job (``interir-bench cluster
submit --gpus-per-job N``) or a user trains on N GPUs. It is an environment variable, not a param: the
batch is global, so the process count changes the speed, not the recipe, and must not rerun the stage.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

import torch

from pipelines.common.env import UserError

NPROC_ENV = "INTERIR_NPROC_PER_NODE"


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_nproc() -> int:
    """Processes to train with: ``$INTERIR_NPROC_PER_NODE`` (unset, 0 or 1: one), and 1 inside a process that
    ``torchrun`` started already (it sets ``LOCAL_RANK``)."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return 1
    value = os.environ.get(NPROC_ENV, "").strip()
    if not value:
        return 1
    if not value.isdigit():
        raise UserError(f"{NPROC_ENV} must be a process count (0 or 1 = no torchrun), got {value!r}")
    return max(1, int(value))


def torchrun_command(module: str, argv: list[str], nproc: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE ARGV`` (= ``torchrun``)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", module, *argv]


def relaunch_under_torchrun(module: str, argv: list[str]) -> int | None:
    """Run ``module argv`` under torchrun when ``$INTERIR_NPROC_PER_NODE`` asks for 2+ processes and this
    process is not one of torchrun's: returns torchrun's exit status, or None to go on in this process."""
    nproc = torchrun_nproc()
    if nproc <= 1:
        return None
    cmd = torchrun_command(module, argv, nproc)
    print(f"{NPROC_ENV}={nproc}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=False).returncode


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


def shutdown(dist_info: DistInfo) -> None:
    """Destroy the process group if this process created it."""
    if dist_info.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()


def pick_device(dist_info: DistInfo) -> torch.device:
    """This rank's GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def barrier(dist_info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process): used where rank 0 writes files."""
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_from_main(obj: Any, dist_info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (pickled by torch.distributed; no shared filesystem needed)."""
    if dist_info.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def global_mean(value: torch.Tensor, dist_info: DistInfo) -> float:
    """A scalar averaged over ranks: what a single process with the global batch would see."""
    if dist_info.world == 1:
        return float(value.item())
    import torch.distributed as dist

    t = value.detach().float().clone()
    dist.all_reduce(t)
    return float(t.item()) / dist_info.world
