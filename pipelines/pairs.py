"""Reading the synthesized MDIR set (``manifest.csv``) and sampling training patches.

Patch sampling is a pure function of (seed, step): which pairs, where to crop and how to
flip are drawn from ``np.random.default_rng([seed, step])``. A resumed run therefore sees
exactly the batches an uninterrupted run would have seen, with any number of processes.
"""

from __future__ import annotations

import csv
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.env import UserError
from pipelines.imageio import read_image, to_uint8

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("file", "target", "source", "split", "combination", "haze", "rain", "noise", "seed", "sha256")
COMBINATIONS = ("haze+rain+noise", "haze+rain", "haze+noise", "rain+noise", "haze", "rain", "noise")


@dataclass(frozen=True)
class Pair:
    input: Path
    target: Path
    name: str
    combination: str = ""
    haze: float = 0.0
    rain: float = 0.0
    noise: float = 0.0


def read_manifest(root: str | Path, split: str) -> list[Pair]:
    """Pairs of one split from ``root/manifest.csv``; errors name the file and the row."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: manifest not found (run 'interir-bench synthesize' first)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: manifest lacks column {missing[0]!r}")
        pairs = [
            Pair(root / r["file"], root / r["target"], Path(r["file"]).stem if split == "train" else r["file"],
                 r["combination"], float(r["haze"]), float(r["rain"]), float(r["noise"]))
            for r in reader
            if r["split"] == split
        ]
    if not pairs:
        raise UserError(f"{path}: no {split!r} rows")
    return pairs


def data_version(root: str | Path) -> str:
    """Short content hash of the manifest (which lists every file's sha256)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return "unknown"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 HxWx3; a size mismatch is an error naming the input file."""
    x, y = read_image(pair.input), read_image(pair.target)
    if x.shape != y.shape:
        raise UserError(f"{pair.input}: size {x.shape[:2]} does not match its target {pair.target} {y.shape[:2]}")
    return to_uint8(x), to_uint8(y)


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
