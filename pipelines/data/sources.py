"""Where the clean MDIR source images come from: data-root resolution and source listing.

Data root, first match wins: the ``--data-root`` flag, params ``data.root`` if non-empty, the
``INTERIR_DATA`` environment variable, else no root (the photos bundled with scikit-image).

Sources under a root laid out like ``../shared/data`` (see docs/dataset.md):
``clean/<set>/*`` (CBSD68, McMaster, Set5, ...), ``rain100h/target/*``, ``sots-indoor/gt/*``
(also ``sots-outdoor/gt``, ``rain100l/norain``...: the clean halves of the SDIR sets) and
``depth/`` RGB-D pairs (``<x>_rgb.png`` + ``<x>_depth.png``, ``<x>_left.png`` +
``<x>_disp.npz``), which carry a real depth map. A root with none of these folders is
searched recursively for images, leaving out folders of degraded images (``input``,
``hazy``, ``rain``, ...) and depth maps.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.common.env import UserError
from pipelines.data.imageio import IMAGE_SUFFIXES, list_images

ENV_VAR = "INTERIR_DATA"

# (folder relative to the root, source-id prefix); clean/<set>/ is handled separately.
CLEAN_FOLDERS = (
    ("rain100h/target", "rain100h"),
    ("rain100h/norain", "rain100h"),
    ("rain100l/target", "rain100l"),
    ("rain100l/norain", "rain100l"),
    ("test100/target", "test100"),
    ("sots-indoor/gt", "sots_indoor"),
    ("sots-outdoor/gt", "sots_outdoor"),
)
DEGRADED_DIRS = {"input", "hazy", "rain", "rainy", "degraded", "lq", "noisy", "depth"}

# Bundled scikit-image photos: (file, source id, group). Grayscale ones become RGB by the reading
# rule. The two motorcycle views show one scene, so they share a split group.
SKIMAGE_PHOTOS = (
    ("astronaut.png", "astronaut", "astronaut"),
    ("chelsea.png", "chelsea", "chelsea"),
    ("coffee.png", "coffee", "coffee"),
    ("rocket.jpg", "rocket", "rocket"),
    ("motorcycle_left.png", "motorcycle_left", "motorcycle"),
    ("motorcycle_right.png", "motorcycle_right", "motorcycle"),
    ("hubble_deep_field.jpg", "hubble_deep_field", "hubble_deep_field"),
    ("ihc.png", "immunohistochemistry", "immunohistochemistry"),
    ("retina.jpg", "retina", "retina"),
    ("camera.png", "camera", "camera"),
    ("coins.png", "coins", "coins"),
    ("moon.png", "moon", "moon"),
    ("grass.png", "grass", "grass"),
    ("gravel.png", "gravel", "gravel"),
    ("brick.png", "brick", "brick"),
)
SKIMAGE_DEPTH = {"motorcycle_left": "motorcycle_disp.npz"}  # Middlebury disparity of the left view


@dataclass(frozen=True)
class Source:
    """One clean image: a unique file-system-safe id, its file, an optional depth file, a split group."""

    id: str
    path: Path
    depth: Path | None = None
    group: str = ""


def resolve_data_root(cli_value: str | os.PathLike | None, params_value: str | None) -> Path | None:
    """The data root to use, or None for the scikit-image photos; a bad root is a UserError."""
    for origin, value in (("--data-root", cli_value), ("params data.root", params_value),
                          (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if value is None or str(value).strip() == "":
            continue
        root = Path(value).expanduser()
        if not root.exists():
            raise UserError(f"data root {root} (from {origin}) does not exist")
        if not root.is_dir():
            raise UserError(f"data root {root} (from {origin}) is not a folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UserError(f"data root {root} (from {origin}) is not readable")
        return root.resolve()
    return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_").lower() or "x"


def _depth_partner(img: Path) -> Path | None:
    stem = img.stem
    candidates = []
    if stem.endswith("_rgb"):
        base = stem[: -len("_rgb")]
        candidates += [img.with_name(f"{base}_depth{s}") for s in (".png", ".tif", ".tiff", ".npy", ".npz")]
    if stem.endswith("_left"):
        base = stem[: -len("_left")]
        candidates += [img.with_name(f"{base}_disp{s}") for s in (".npz", ".npy")]
    return next((c for c in candidates if c.is_file()), None)


def _list_folder(folder: Path) -> list[Path]:
    try:
        return list_images(folder)
    except OSError as exc:
        raise UserError(f"{folder}: cannot list folder ({exc.__class__.__name__})") from None


def _skimage_sources() -> list[Source]:
    import skimage.data

    data_dir = Path(skimage.data.data_dir)
    out = []
    for fname, sid, group in SKIMAGE_PHOTOS:
        path = data_dir / fname
        if not path.is_file():
            continue
        depth = data_dir / SKIMAGE_DEPTH[sid] if sid in SKIMAGE_DEPTH else None
        out.append(Source(f"skimage_{sid}", path, depth if depth and depth.is_file() else None, f"skimage_{group}"))
    if not out:
        raise UserError(f"no bundled scikit-image photos found in {data_dir}; pass --data-root")
    return out


def _root_sources(root: Path) -> list[Source]:
    found: list[tuple[str, Path, Path | None]] = []
    clean = root / "clean"
    if clean.is_dir():
        for sub in sorted(p for p in clean.iterdir() if p.is_dir()):
            found += [(f"{_safe(sub.name)}_{_safe(p.stem)}", p, None) for p in _list_folder(sub)]
        found += [(f"clean_{_safe(p.stem)}", p, None) for p in _list_folder(clean)]
    for rel, prefix in CLEAN_FOLDERS:
        folder = root / rel
        if folder.is_dir():
            found += [(f"{prefix}_{_safe(p.stem)}", p, None) for p in _list_folder(folder)]
    depth_dir = root / "depth"
    if depth_dir.is_dir():
        for p in _list_folder(depth_dir):
            partner = _depth_partner(p)
            if partner is not None:
                name = re.sub(r"_(rgb|left)$", "", p.stem)
                found.append((f"depth_{_safe(name)}", p, partner))
    if not found and not any((root / d).is_dir() for d in ("clean", "depth", *(r for r, _ in CLEAN_FOLDERS))):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d.lower() not in DEGRADED_DIRS and not d.startswith("."))
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.lower().endswith(("_depth", "_disp")):
                    rel = p.relative_to(root).with_suffix("")
                    found.append((_safe("_".join(rel.parts)), p, None))
    seen: dict[str, int] = {}
    out = []
    for sid, path, depth in sorted(found, key=lambda t: (t[0], str(t[1]))):
        n = seen.get(sid, 0)
        seen[sid] = n + 1
        uid = sid if n == 0 else f"{sid}_{n}"
        out.append(Source(uid, path, depth, uid))
    return out


def list_clean_sources(root: Path | None) -> list[Source]:
    """Clean source images under ``root`` (None: the scikit-image photos), sorted by id.

    Raises UserError when the root holds no images. Files are not opened here; the synthesize
    stage reads each one and reports unreadable ones.
    """
    if root is None:
        return _skimage_sources()
    sources = _root_sources(Path(root))
    if not sources:
        raise UserError(f"data root {root} holds no clean images (expected clean/<set>/, rain100h/target/, "
                        "sots-indoor/gt/ or image files)")
    return sources


def thumbnail(img: np.ndarray) -> np.ndarray:
    """A 16x24 grey thumbnail, landscape-oriented, for near-duplicate detection."""
    import cv2

    grey = img.mean(axis=2).astype(np.float32)
    if grey.shape[0] > grey.shape[1]:
        grey = grey.T[::-1]
    return cv2.resize(grey, (24, 16), interpolation=cv2.INTER_AREA).ravel()


def group_near_duplicates(ids: list[str], thumbs: np.ndarray, groups: list[str], tol: float = 2.0 / 255) -> list[str]:
    """Merge the split groups of sources whose thumbnails differ by less than ``tol`` (RMS).

    Why: several public sets re-crop the same photo (Rain100H targets are crops of CBSD68
    images), and one scene in both splits would leak test content into training.
    Returns, per source, the smallest id-sorted group name of its connected component.
    """
    n = len(ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Same starting group -> same component.
    first: dict[str, int] = {}
    for i, g in enumerate(groups):
        j = first.setdefault(g, i)
        parent[find(i)] = find(j)
    t = thumbs.astype(np.float64)
    sq = (t * t).sum(axis=1)
    block = 2048
    for s in range(0, n, block):
        d2 = sq[s : s + block, None] + sq[None, :] - 2.0 * t[s : s + block] @ t.T
        rows, cols = np.nonzero(d2 < tol * tol * t.shape[1])
        for r, c in zip(rows + s, cols):
            if r < c:
                parent[find(int(r))] = find(int(c))
    comp: dict[int, str] = {}
    for i in sorted(range(n), key=lambda k: groups[k]):
        comp.setdefault(find(i), groups[i])
    return [comp[find(i)] for i in range(n)]
