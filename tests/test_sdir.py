"""SDIR loaders on the real subsets (Rain100H 1-40, SOTS-indoor 1400-1439) and on each published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.common.env import UserError
from pipelines.data.imageio import read_image, write_image
from pipelines.data.sdir import find_sdir_sets, load_pairs


def _img(path: Path, h: int = 8, w: int = 12, v: float = 0.5) -> Path:
    write_image(path, np.full((h, w, 3), v, np.float32))
    return path


# ----------------------------------------------------------------------------- real subsets


def test_find_sdir_sets_on_the_real_data_root(data_root):
    sets = find_sdir_sets(data_root)
    assert sets == {"rain100h": data_root / "rain100h", "sots-indoor": data_root / "sots-indoor"}


def test_rain100h_real_pairs(data_root):
    pairs = load_pairs("rain100h", data_root / "rain100h")
    assert [p.name for p in pairs] == [str(i) for i in range(1, 41)]
    for p in pairs:
        assert p.input.parent.name == "input" and p.target.parent.name == "target" and p.input.name == p.target.name
    a, b = read_image(pairs[0].input), read_image(pairs[0].target)
    assert a.shape == b.shape and 5 / 255 < np.abs(a - b).mean()  # rainy differs from clean


def test_sots_indoor_real_pairs(data_root):
    pairs = load_pairs("SOTS-indoor", data_root / "sots-indoor")
    assert len(pairs) == 40
    scenes = sorted(int(p.target.stem) for p in pairs)
    assert scenes == list(range(1400, 1440))
    for p in pairs:
        assert p.name.split("_")[0] == p.target.stem and p.target.parent.name == "gt"
    a, b = read_image(pairs[0].input), read_image(pairs[0].target)
    assert a.shape == b.shape == (460, 620, 3)


def test_real_rain_pairs_load_with_the_input_target_layout(data_root):
    pairs = load_pairs("derain", data_root / "rain-pairs")
    assert len(pairs) == 3 and len({read_image(p.target).shape for p in pairs}) == 3


# ----------------------------------------------------------------------------- published layouts


def test_rain100l_flat_and_subfolder_naming(tmp_path):
    flat = tmp_path / "Rain100L"
    for i in (1, 2, 10):
        _img(flat / f"rain-{i:03d}.png")
        _img(flat / f"norain-{i:03d}.png")
    pairs = load_pairs("rain100l", flat)
    assert [p.name for p in pairs] == ["rain-001", "rain-002", "rain-010"]
    assert all(p.target.name == "norain-" + p.input.name[5:] for p in pairs)
    sub = tmp_path / "r"
    for i in (1, 2):
        _img(sub / "rain" / f"rain-{i}.png")
        _img(sub / "norain" / f"norain-{i}.png")
    assert [p.target.name for p in load_pairs("Rain100L", sub)] == ["norain-1.png", "norain-2.png"]


def test_test1200_input_target_and_its_hazy_clear(tmp_path):
    t = tmp_path / "Test1200"
    for i in (3, 20, 100):
        _img(t / "input" / f"{i}.png")
        _img(t / "target" / f"{i}.png")
    assert [p.name for p in load_pairs("test1200", t)] == ["3", "20", "100"]
    its = tmp_path / "ITS"
    _img(its / "clear" / "1.png")
    _img(its / "clear" / "2.png")  # clear images without hazy ones are allowed
    for k, beta in ((1, "0.74"), (2, "0.96")):
        _img(its / "hazy" / f"1_{k}_{beta}.png")
    pairs = load_pairs("its", its)
    assert [(p.name, p.target.name) for p in pairs] == [("1_1_0.74", "1.png"), ("1_2_0.96", "1.png")]


def test_mismatched_pairs_name_the_file(tmp_path):
    d = tmp_path / "Test100"
    _img(d / "input" / "1.png")
    _img(d / "target" / "1.png")
    _img(d / "input" / "2.png")
    with pytest.raises(UserError, match=r"input/2\.png: no target"):
        load_pairs("test100", d)
    _img(d / "target" / "2.png", h=16)
    with pytest.raises(UserError, match=r"input/2\.png: size 12x8 differs"):
        load_pairs("test100", d)
    _img(d / "target" / "2.png")
    _img(d / "target" / "3.png")
    with pytest.raises(UserError, match=r"target/3\.png: no input"):
        load_pairs("test100", d)
    s = tmp_path / "sots"
    _img(s / "gt" / "5.png")
    _img(s / "hazy" / "6_1.png")
    with pytest.raises(UserError, match=r"hazy/6_1\.png: no clear image"):
        load_pairs("sots-outdoor", s)


def test_unknown_set_and_wrong_layout_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown SDIR set"):
        load_pairs("rain800", tmp_path)
    with pytest.raises(UserError, match="not a dehazing set"):
        load_pairs("sots-indoor", tmp_path)
    with pytest.raises(UserError, match="folder not found"):
        load_pairs("rain100h", tmp_path / "missing")


def test_find_sdir_sets_recognises_aliases(tmp_path):
    for name in ("Rain100L", "test_1200", "SOTS/indoor", "SOTS/outdoor", "rain-pairs"):
        (tmp_path / name).mkdir(parents=True)
    assert find_sdir_sets(tmp_path) == {"rain100l": tmp_path / "Rain100L", "test1200": tmp_path / "test_1200",
                                        "sots-indoor": tmp_path / "SOTS/indoor",
                                        "sots-outdoor": tmp_path / "SOTS/outdoor"}
