"""Inference shared by ``evaluate`` and ``restore``: pad to the stride, tile, crop, clamp."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to multiples of ``stride`` (replicate when the image is too small)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@torch.no_grad()
def restore_tensor(
    model: torch.nn.Module, x: torch.Tensor, stride: int = 1, tile: int = 0, overlap: int = 32
) -> torch.Tensor:
    """Restore a (B,3,H,W) batch in [0,1]; ``tile`` > 0 bounds memory by overlapping tiles.

    Each tile contributes only its centre: ``overlap // 2`` pixels next to an inner tile
    edge are discarded, so the tiled result equals the whole-image one exactly for a model
    whose receptive-field radius is at most ``overlap // 2`` (to float rounding). Models
    with global operations (NAFNet's channel attention, FFT branches, the unfolding's
    image-sized matrices) see different statistics per tile: docs/engine.md quantifies it.
    """
    xp, (h, w) = pad_to_stride(x, stride)
    H, W = xp.shape[-2:]
    if tile <= 0 or (H <= tile and W <= tile):
        return model(xp)[..., :h, :w].clamp(0, 1)
    tile = max(stride, tile - tile % stride)
    overlap = min(max(0, overlap), tile // 2)
    step = max(stride, tile - overlap - (tile - overlap) % stride)
    margin = overlap // 2
    out = torch.empty_like(xp)
    ys = _starts(H, tile, step)
    xs = _starts(W, tile, step)
    for top in ys:
        th = min(tile, H - top)
        for left in xs:
            tw = min(tile, W - left)
            pred = model(xp[..., top : top + th, left : left + tw])
            t0 = margin if top > 0 else 0
            t1 = th - margin if top + th < H else th
            l0 = margin if left > 0 else 0
            l1 = tw - margin if left + tw < W else tw
            out[..., top + t0 : top + t1, left + l0 : left + l1] = pred[..., t0:t1, l0:l1]
    return out[..., :h, :w].clamp(0, 1)


def _starts(size: int, tile: int, step: int) -> list[int]:
    """Tile origins along one axis: every ``step``, the last one flush with the far edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts
