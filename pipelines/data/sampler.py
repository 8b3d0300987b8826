"""Training batches: random patches with flips, a pure function of (seed, step).

Which pairs, where to crop and how to flip are drawn from ``np.random.default_rng([seed, step])``.
A resumed run therefore sees exactly the batches an uninterrupted run would have seen, with any
number of processes or loader workers.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from pipelines.common.env import UserError
from pipelines.data.manifest import Pair, load_pair


class PatchSampler:
    """Deterministic per-step batches of random patches with horizontal/vertical flips.

    Decoded pairs are kept in a bounded LRU cache (``cache`` pairs; the paper set does not
    fit in memory, the smoke set does); the cache changes speed only, never the batches.
    """

    def __init__(self, pairs: list[Pair], patch: int, seed: int, cache: int = 1024) -> None:
        self.pairs = pairs
        self.patch = patch
        self.seed = seed
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = max(0, int(cache))

    def _get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        x, y = load_pair(self.pairs[i])
        if min(x.shape[:2]) < self.patch:
            raise UserError(f"{self.pairs[i].input}: image {x.shape[:2]} is smaller than the patch {self.patch}")
        if self._cache_size:
            self._cache[i] = (x, y)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return x, y

    def batch(self, step: int, batch: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of ``step`` is drawn once; rank ``r`` takes its contiguous slice."""
        rng = np.random.default_rng([self.seed, step])
        idx = rng.integers(0, len(self.pairs), size=batch)
        u = rng.random((batch, 4))  # crop y, crop x, hflip, vflip
        per = batch // world
        xs, ys = [], []
        for j in range(rank * per, (rank + 1) * per):
            x, y = self._get(int(idx[j]))
            h, w = x.shape[:2]
            top = int(u[j, 0] * (h - self.patch + 1))
            left = int(u[j, 1] * (w - self.patch + 1))
            px = x[top : top + self.patch, left : left + self.patch]
            py = y[top : top + self.patch, left : left + self.patch]
            if u[j, 2] < 0.5:
                px, py = px[:, ::-1], py[:, ::-1]
            if u[j, 3] < 0.5:
                px, py = px[::-1], py[::-1]
            xs.append(np.ascontiguousarray(px))
            ys.append(np.ascontiguousarray(py))
        to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
        return to_t(xs), to_t(ys)


class StepBatches(torch.utils.data.Dataset):
    """Map-style view ``step -> this rank's slice of the step's batch`` for a ``DataLoader``.

    Lets ``train.num_workers`` processes decode and crop ahead of the GPU; since each
    batch is a pure function of (seed, step), workers and prefetching cannot change what
    the model sees.
    """

    def __init__(self, sampler: PatchSampler, batch: int, rank: int = 0, world: int = 1) -> None:
        self.sampler, self.batch, self.rank, self.world = sampler, batch, rank, world

    def __len__(self) -> int:  # steps are indexed directly; the length only bounds the index
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampler.batch(int(step), self.batch, self.rank, self.world)
