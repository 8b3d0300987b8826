"""``interir-bench restore``: restore your own photos with a trained checkpoint.

Any size is accepted: images are padded to the model's stride (reflect) and, above
``--tile`` pixels a side, processed in overlapping tiles to bound memory. Inputs follow
the rules of :mod:`pipelines.data.imageio` (grayscale -> RGB, alpha dropped, 16-bit ->
[0,1]); outputs are 8-bit RGB PNGs with the input's size, named ``<stem>.png``, written
atomically. Every input and the checkpoint are checked before the first output is
written, and an existing output is never overwritten unless ``--overwrite`` is given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from pipelines.common import entry, env
from pipelines.common.env import UserError
from pipelines.common.files import check_writable_dir, ensure_writable_dir
from pipelines.data.imageio import read_image, write_image
from pipelines.engine import checkpoint as ckpt_io
from pipelines.engine.inference import restore_tensor


def main(argv: list[str] | None = None) -> int:
    p = entry.ArgumentParser(prog="interir-bench restore", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a model.pt written by 'interir-bench train'")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--tile", type=int, default=512, help="tile size in pixels (0 = whole image; default 512)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels; half of it is discarded per edge")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.tile < 0 or a.overlap < 0:
        raise UserError(f"--tile and --overlap must be >= 0, got {a.tile} and {a.overlap}")
    out_dir = check_writable_dir(a.out)  # fail before any work, but create nothing until the inputs are checked
    targets = [(Path(img), out_dir / (Path(img).stem + ".png")) for img in a.images]
    clash = [str(t) for _, t in targets if t.exists()]
    if clash and not a.overwrite:
        raise UserError(f"{clash[0]}: exists (use --overwrite)")
    seen: dict[Path, Path] = {}
    for src, dst in targets:
        if dst.exists() and src.exists() and os.path.samefile(src, dst):
            raise UserError(f"{dst}: is the input {src}; write the restorations to another folder")
        if dst in seen:
            raise UserError(f"{src}: same file stem as {seen[dst]}; both would write {dst}")
        seen[dst] = src
    state, model = ckpt_io.load_model(a.checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    # Validate every input before writing anything (decoded twice: memory stays at one image).
    for src, _ in targets:
        read_image(src)
    ensure_writable_dir(out_dir)
    from interir.registry import get_card

    stride = get_card(state["model"]).stride
    torch.set_num_threads(env.torch_threads())
    for src, dst in targets:
        x = torch.from_numpy(read_image(src)).permute(2, 0, 1)[None].to(device)
        try:
            y = restore_tensor(model, x, stride=stride, tile=a.tile, overlap=a.overlap).float().cpu()
        except (RuntimeError, ValueError, IndexError) as exc:  # a checkpoint that built but does not run, or no memory
            raise UserError(f"{src}: restoring with {a.checkpoint} failed ({ckpt_io.first_line(exc)})") from None
        if not torch.isfinite(y).all():
            raise UserError(f"{src}: {a.checkpoint} produced NaN or inf values (broken weights?); nothing written")
        write_image(dst, y[0].permute(1, 2, 0).numpy())
        print(f"{src} -> {dst}", file=sys.stderr)
    return 0
