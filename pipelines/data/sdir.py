"""Loaders for the single-degradation (SDIR) benchmarks in their published folder layouts.

Deraining (Rain100L, Rain100H, Test100, Test1200): ``input/`` + ``target/`` or ``rain/`` + ``norain/``
(partners share a name, a ``rain-``/``norain-`` prefix aside), or Rain100L's flat folder of
``rain-<n>.png`` next to ``norain-<n>.png``. Every input needs a target and every target an input.
Dehazing (SOTS-indoor/outdoor, RESIDE ITS/OTS): ``hazy/<id>_<k>[_<beta>...].png`` paired with
``gt/<id>.png`` or ``clear/<id>.png`` (one clear image serves several hazy ones; clear images
without a hazy one are allowed, as in ITS/OTS). A missing partner or a size mismatch is a
one-line :class:`UserError` naming the file; sizes are read from the file headers only.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.common.env import UserError
from pipelines.data.imageio import IMAGE_SUFFIXES, image_size
from pipelines.data.manifest import Pair  # name = the input's stem, unique within the set

DERAIN_SETS = ("rain100l", "rain100h", "test100", "test1200")
DEHAZE_SETS = ("sots-indoor", "sots-outdoor", "its", "ots")
LAYOUTS = ("derain", "dehaze")
_DERAIN_DIRS = (("input", "target"), ("rain", "norain"), ("rainy", "norain"), ("rainy", "gt"))
_CLEAR_DIRS = ("gt", "clear", "GT")


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: _natural(p.name))


def _size(path: Path) -> tuple[int, int]:
    return image_size(path)


def _check_sizes(pairs: list[Pair]) -> list[Pair]:
    for p in pairs:
        a, b = _size(p.input), _size(p.target)
        if a != b:
            raise UserError(f"{p.input}: size {a[0]}x{a[1]} differs from its target {p.target.name} ({b[0]}x{b[1]})")
    return pairs


def _strip(stem: str, prefix: str) -> str:
    return stem[len(prefix):] if stem.lower().startswith(prefix) else stem


def _match(inputs: dict[str, Path], targets: dict[str, Path]) -> list[Pair]:
    for key, path in inputs.items():
        if key not in targets:
            raise UserError(f"{path}: no target image for this input")
    for key, path in targets.items():
        if key not in inputs:
            raise UserError(f"{path}: no input image for this target")
    return [Pair(inputs[k], targets[k], inputs[k].stem, unit=targets[k].stem) for k in sorted(inputs, key=_natural)]


def _keyed(files: list[Path], prefix: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        key = _strip(p.stem, prefix)
        if key in out:
            raise UserError(f"{p}: two images share the id {key!r} ({out[key].name})")
        out[key] = p
    return out


def load_derain(folder: Path) -> list[Pair]:
    """Deraining pairs from ``input/``+``target/``, ``rain/``+``norain/`` or a flat ``rain-*``/``norain-*`` folder."""
    for inp, tgt in _DERAIN_DIRS:
        if (folder / inp).is_dir() and (folder / tgt).is_dir():
            inputs = _keyed(_images(folder / inp), "rain-")
            targets = _keyed(_images(folder / tgt), "norain-")
            return _check_sizes(_match(inputs, targets))
    files = _images(folder)
    rain = [p for p in files if p.stem.lower().startswith("rain-")]
    norain = [p for p in files if p.stem.lower().startswith("norain-")]
    if rain or norain:
        return _check_sizes(_match(_keyed(rain, "rain-"), _keyed(norain, "norain-")))
    raise UserError(f"{folder}: not a deraining set (expected input/+target/, rain/+norain/ or rain-*/norain-* files)")


def load_dehaze(folder: Path) -> list[Pair]:
    """Dehazing pairs: ``hazy/<id>_<k>[...]`` with ``gt/<id>`` or ``clear/<id>`` (SOTS, ITS, OTS)."""
    hazy_dir = folder / "hazy"
    clear_dir = next((folder / d for d in _CLEAR_DIRS if (folder / d).is_dir()), None)
    if not hazy_dir.is_dir() or clear_dir is None:
        raise UserError(f"{folder}: not a dehazing set (expected hazy/ with gt/ or clear/)")
    clear = _keyed(_images(clear_dir), "")
    pairs = []
    for p in _images(hazy_dir):
        scene = p.stem.split("_", 1)[0]
        if scene not in clear:
            raise UserError(f"{p}: no clear image {clear_dir.name}/{scene}.* for this hazy image")
        pairs.append(Pair(p, clear[scene], p.stem, unit=scene))  # hazy images of one scene share a unit
    if not pairs:
        raise UserError(f"{hazy_dir}: no hazy images")
    return _check_sizes(pairs)


def load_pairs(layout_or_name: str, folder: str | Path) -> list[Pair]:
    """Pairs of one SDIR set; ``layout_or_name`` is ``derain``/``dehaze`` or a set name (``rain100h``...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    key = layout_or_name.lower().replace("_", "-")
    if key in LAYOUTS:
        layout = key
    elif key.replace("-", "") in DERAIN_SETS:
        layout = "derain"
    elif key in DEHAZE_SETS:
        layout = "dehaze"
    else:
        raise UserError(f"unknown SDIR set or layout {layout_or_name!r} "
                        f"(known: {', '.join(LAYOUTS + DERAIN_SETS + DEHAZE_SETS)})")
    pairs = load_derain(folder) if layout == "derain" else load_dehaze(folder)
    if not pairs:
        raise UserError(f"{folder}: no image pairs")
    return pairs


def load_sets(root: str | Path | None) -> dict[str, list[Pair]]:
    """Every known SDIR set under ``root`` with its pairs ({} for None or a folder without any)."""
    if root is None:
        return {}
    return {name: load_pairs(name, folder) for name, folder in find_sdir_sets(root).items()}


def find_sdir_sets(data_root: str | Path) -> dict[str, Path]:
    """Known SDIR sets under ``data_root`` (folder names matched case-insensitively, - or _ alike).

    Only sets whose name identifies them are returned: a folder of unnamed rain pairs is not
    reported as Rain100L.
    """
    root = Path(data_root)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    aliases = {name: name for name in (*DERAIN_SETS, *DEHAZE_SETS)}
    aliases.update({"sotsindoor": "sots-indoor", "sotsoutdoor": "sots-outdoor"})
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        norm = sub.name.lower().replace("_", "").replace("-", "")
        name = aliases.get(norm) or aliases.get(sub.name.lower())
        if name is None and norm == "sots":  # SOTS/indoor, SOTS/outdoor
            for part in ("indoor", "outdoor"):
                if (sub / part).is_dir():
                    found[f"sots-{part}"] = sub / part
            continue
        if name is not None:
            found[name] = sub
    return found
