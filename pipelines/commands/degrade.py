"""``interir-bench degrade``: apply haze -> rain -> noise to one image.

With the levels and seed of a manifest row (and the same crop of the source) this reproduces
that row's degraded image, because the synthesize stage uses the same :func:`degrade` call.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipelines.common import entry
from pipelines.common.config import check_seed
from pipelines.common.env import UserError
from pipelines.common.files import check_writable_dir
from pipelines.data.degradations import DEPTH_PROXIES, Levels, degrade, load_depth, proxy_depth
from pipelines.data.imageio import IMAGE_SUFFIXES, read_image, write_image


def _parser() -> argparse.ArgumentParser:
    p = entry.ArgumentParser(prog="interir-bench degrade",
                                description="Apply haze, rain and noise (in that order) to one image. "
                                            "A level of 0 leaves that component off.")
    p.add_argument("image", help="input image (PNG, JPEG, BMP, TIFF)")
    p.add_argument("--haze", type=float, default=0.0, help="visibility range V in metres, e.g. 60-150 (0 = off)")
    p.add_argument("--rain", type=float, default=0.0, help="TANet streak-seed density, 0-300 (0 = off)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian sigma on the 0-255 scale, 0-50 (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="random seed (rain streaks and noise)")
    p.add_argument("--depth", help="depth map for haze: uint16 PNG (0 = invalid) or a disparity .npz/.npy "
                                   "(name containing 'disp'); default: the depth proxy")
    p.add_argument("--depth-proxy", choices=DEPTH_PROXIES, default="ground_plane",
                   help="depth proxy used without --depth (default: ground_plane)")
    p.add_argument("-o", "--out", required=True, help="output image path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    check_seed(args.seed)
    out = Path(args.out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{out}: unknown image suffix (use one of {', '.join(sorted(IMAGE_SUFFIXES))})")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; -o takes the output image's file name")
    for given in filter(None, (args.image, args.depth)):
        if out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise UserError(f"{out}: is the input {given}; write the degraded image to another file")
    check_writable_dir(out.parent)
    levels = Levels(args.haze, args.rain, args.noise)
    levels.validate()
    img = read_image(args.image)
    depth = None
    if levels.haze > 0:
        if args.depth:
            depth = load_depth(args.depth)
            if depth.shape != img.shape[:2]:
                raise UserError(f"{args.depth}: depth map {depth.shape[1]}x{depth.shape[0]} does not match image "
                                f"{img.shape[1]}x{img.shape[0]}")
        else:
            depth = proxy_depth(img, args.depth_proxy)
    write_image(out, degrade(img, levels, depth, args.seed))
    print(f"wrote {out} (haze {args.haze:g}, rain {args.rain:g}, noise {args.noise:g}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run("degrade", main))
