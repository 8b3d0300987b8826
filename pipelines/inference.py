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

    Tiles are blended by averaging the overlaps, so the output does not depend on where
    seams fall beyond the receptive field of the model.
    """
    xp, (h, w) = pad_to_stride(x, stride)
    H, W = xp.shape[-2:]
    if tile <= 0 or (H <= tile and W <= tile):
        return model(xp)[..., :h, :w].clamp(0, 1)
    tile = max(stride, tile - tile % stride)
    step = max(stride, tile - overlap - (tile - overlap) % stride)
    out = torch.zeros_like(xp)
    weight = torch.zeros_like(xp[:, :1])
    ys = list(range(0, max(H - tile, 0) + 1, step))
    xs = list(range(0, max(W - tile, 0) + 1, step))
    if ys[-1] + tile < H:
        ys.append(H - tile)
    if xs[-1] + tile < W:
        xs.append(W - tile)
    for top in ys:
        for left in xs:
            patch = xp[..., top : top + tile, left : left + tile]
            out[..., top : top + tile, left : left + tile] += model(patch)
            weight[..., top : top + tile, left : left + tile] += 1
    return (out / weight)[..., :h, :w].clamp(0, 1)
