"""Data parallelism under ``torchrun``: process-group set-up, the device, barriers, rank-0 broadcasts.

A single process (``WORLD_SIZE`` unset or 1) needs none of it: every helper is then a no-op. Under
``torchrun`` the backend is NCCL on GPUs and gloo on the CPU; rank 0 alone writes files and logs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch


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
