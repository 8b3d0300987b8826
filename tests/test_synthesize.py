"""The synthesize stage: output contract, determinism, bad input, resumability, sources and split."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.common.config import load_params
from pipelines.common.env import UserError
from pipelines.data import synthesis as syn
from pipelines.data.imageio import read_image, write_image
from pipelines.data.manifest import COMBINATIONS
from pipelines.data.sources import group_near_duplicates, list_clean_sources, resolve_data_root, thumbnail
from pipelines.stages import synthesize as stage

REPO = Path(__file__).resolve().parents[1]
CROP, PATCH = 64, 32


def _cfg(**kw) -> syn.SynthesizeConfig:
    base = load_params(REPO / "params.yaml", "smoke").synthesize
    return dataclasses.replace(base, **{"crop": CROP, "max_train_sources": 3, "max_test_sources": 2,
                                        "train_pairs_per_source": 3, **kw})


def _run(out: Path, root: Path | None = None, workers: int = 1, **kw) -> dict:
    return syn.synthesize(_cfg(**kw), out, root, PATCH, workers, "smoke", log=lambda m: None)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(out: Path) -> list[dict]:
    with (out / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _photo_root(tmp: Path, n: int = 6, size: int = 80) -> Path:
    """A data root of real photo crops (scikit-image), laid out as clean/<set>/."""
    from skimage import data

    root = tmp / "data"
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(n):
        p = photos[i % len(photos)]
        top = 10 + 37 * (i // len(photos))
        write_image(root / "clean" / "Set" / f"img{i}.png", p[top : top + size, 20 : 20 + size])
    return root


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mdir") / "a"
    _run(out)
    return out


# ----------------------------------------------------------------------------- contract


def test_manifest_columns_counts_and_files(smoke_out):
    rows = _rows(smoke_out)
    header = (smoke_out / "manifest.csv").read_text().splitlines()[0]
    assert header == "file,target,source,group,split,combination,haze,rain,noise,seed,sha256,target_sha256"
    test = [r for r in rows if r["split"] == "test"]
    train = [r for r in rows if r["split"] == "train"]
    assert len(rows) == len(test) + len(train)
    test_sources = {r["source"] for r in test}
    train_sources = {r["source"] for r in train}
    assert len(test_sources) == 2 and len(train_sources) == 3 and not test_sources & train_sources
    assert len(test) == 7 * 2 and len(train) == 3 * 3
    for s in test_sources:  # every test source under each of the 7 combinations, in the documented folders
        combos = {r["combination"]: r for r in test if r["source"] == s}
        assert sorted(combos) == sorted(COMBINATIONS)
        for c, r in combos.items():
            assert r["file"] == f"test/{c.replace('+', '_')}/{s}.png"
    meta = json.loads((smoke_out / "meta.json").read_text())
    assert meta["counts"]["test_images"] == 14 and meta["counts"]["train_pairs"] == 9
    assert meta["source_kind"] == "skimage" and {s["split"] for s in meta["sources"]} >= {"train", "test", "unused"}
    # No path of this checkout or its .venv: the dataset's DVC hash must not depend on where the clone lives.
    text = (smoke_out / "meta.json").read_text()
    assert str(REPO) not in text and sys.prefix not in text and meta["source_base"].startswith("skimage.data")
    cfg = _cfg()
    for r in rows:
        assert r["target"] == f"clean/{r['source']}.png"
        f, t = smoke_out / r["file"], smoke_out / r["target"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == r["sha256"]
        a, b = read_image(f), read_image(t)
        assert a.shape == b.shape and a.shape[0] % 8 == 0 and a.shape[1] % 8 == 0 and max(a.shape[:2]) <= CROP
        parts = set(r["combination"].split("+"))
        for comp, (lo, hi) in (("haze", cfg.haze_range), ("rain", cfg.rain_range), ("noise", cfg.noise_range)):
            v = float(r[comp])
            assert (lo <= v <= hi and v > 0) if comp in parts else v == 0, (r, comp)
        assert not np.array_equal(a, b)
    assert (smoke_out / "contact_sheet.png").is_file()
    sheet = read_image(smoke_out / "contact_sheet.png")
    assert sheet.shape[1] > 3 * sheet.shape[0]  # two rows of clean + 7 combinations


def test_combinations_match_paper_table6():
    table = REPO.parent / "shared" / "paper" / "tables" / "table6_mdir_levels.csv"
    if not table.is_file():
        pytest.skip(f"{table} not found")
    with table.open(newline="") as fh:
        assert tuple(r["combination"] for r in csv.DictReader(fh)) == COMBINATIONS


def test_degrade_cli_reproduces_a_manifest_row(smoke_out, tmp_path):
    from pipelines.commands import degrade

    row = next(r for r in _rows(smoke_out) if r["combination"] == "haze+rain+noise")
    out = tmp_path / "x.png"
    rc = degrade.main([str(smoke_out / row["target"]), "--haze", row["haze"], "--rain", row["rain"], "--noise",
                       row["noise"], "--seed", row["seed"], "-o", str(out)])
    assert rc == 0
    assert out.read_bytes() == (smoke_out / row["file"]).read_bytes()


# ----------------------------------------------------------------------------- determinism


def test_two_runs_and_worker_counts_give_identical_bytes(smoke_out, tmp_path):
    again = tmp_path / "b"
    _run(again, workers=2)
    assert _tree(again) == _tree(smoke_out)
    # and the seed matters: another global seed plans other image seeds, other training levels, and another
    # assignment of the test strata to sources (the strata themselves do not depend on the seed)
    test, train = ["a", "b", "c", "d"], ["e"]
    plan0, plan1 = syn.plan_jobs(test, train, _cfg()), syn.plan_jobs(test, train, _cfg(seed=1))
    assert [j.file for js in plan0.values() for j in js] == [j.file for js in plan1.values() for j in js]
    assert all(a.seed != b.seed for s in plan0 for a, b in zip(plan0[s], plan1[s]))
    assert all(a.levels != b.levels for a, b in zip(plan0["e"], plan1["e"]))
    test0 = [j.levels for s in test for j in plan0[s]]
    test1 = [j.levels for s in test for j in plan1[s]]
    assert test0 != test1
    for name in ("haze", "rain", "noise"):
        assert sorted(getattr(lv, name) for lv in test0) == sorted(getattr(lv, name) for lv in test1)


def test_rerun_after_interruption_completes_and_removes_leftovers(smoke_out, tmp_path):
    import shutil

    out = tmp_path / "d"
    shutil.copytree(smoke_out, out)
    rows = _rows(out)
    (out / rows[0]["file"]).unlink()  # never written
    (out / rows[-1]["file"]).write_bytes(b"\x89PNG truncated")  # a stale partial file from elsewhere
    (out / "train" / ".x.png.abc.tmp.png").write_bytes(b"partial")  # temp file of a killed writer
    (out / "train" / "old_999.png").write_bytes(b"stale")  # from an earlier run with other params
    (out / "manifest.csv").unlink()
    _run(out)
    assert _tree(out) == _tree(smoke_out)


# ----------------------------------------------------------------------------- bad input


def test_corrupt_and_too_small_sources_are_reported_and_skipped(tmp_path, capsys):
    root = _photo_root(tmp_path, n=5)
    (root / "clean" / "Set" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(root / "clean" / "Set" / "tiny.png", np.full((20, 90, 3), 0.5, np.float32))
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synthesize"]["smoke"].update(crop=CROP, max_train_sources=3, max_test_sources=1, train_pairs_per_source=2)
    raw["train"]["smoke"]["patch"] = PATCH
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    rc = stage.main(["--params", str(params), "--profile", "smoke", "--data-root", str(root), "--out", str(out),
                   "--workers", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("skipped source")]
    assert len(lines) == 2 and any("broken.png" in ln for ln in lines) and any("tiny.png" in ln for ln in lines)
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(s["id"] for s in meta["skipped"]) == ["set_broken", "set_tiny"]
    assert meta["counts"]["sources_usable"] == 5
    sources = {r["source"] for r in _rows(out)}
    assert sources and not sources & {"set_broken", "set_tiny"}


def test_missing_or_empty_data_root_is_a_user_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="does not exist"):
        stage.main(["--data-root", str(tmp_path / "nope"), "--out", str(out), "--params", str(REPO / "params.yaml")])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="no clean images"):
        stage.main(["--data-root", str(tmp_path / "empty"), "--out", str(out), "--params", str(REPO / "params.yaml")])
    root = tmp_path / "allbad"
    (root / "clean" / "x").mkdir(parents=True)
    (root / "clean" / "x" / "a.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no usable source"):
        _run(out, root)
    assert not out.exists()


def test_bad_synthesize_params_are_rejected(tmp_path):
    with pytest.raises(UserError, match="haze_range"):
        _run(tmp_path / "o", haze_range=(0.0, 150.0))
    with pytest.raises(UserError, match="depth_proxy"):
        _run(tmp_path / "o", depth_proxy="midas")


# ----------------------------------------------------------------------------- sources and split


def test_data_root_resolution_order(tmp_path, monkeypatch):
    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.mkdir()
    monkeypatch.setenv("INTERIR_DATA", str(c))
    assert resolve_data_root(str(a), str(b)) == a.resolve()
    assert resolve_data_root(None, str(b)) == b.resolve()
    assert resolve_data_root(None, "") == c.resolve()
    monkeypatch.delenv("INTERIR_DATA")
    assert resolve_data_root(None, "") is None
    with pytest.raises(UserError, match="from params data.root"):
        resolve_data_root(None, str(tmp_path / "missing"))


def test_real_data_root_sources(data_root):
    sources = list_clean_sources(data_root)
    ids = [s.id for s in sources]
    assert len(ids) == len(set(ids))
    by_prefix = {p: sum(i.startswith(p + "_") for i in ids) for p in ("cbsd68", "mcmaster", "set5", "rain100h",
                                                                      "sots_indoor", "depth")}
    assert by_prefix == {"cbsd68": 68, "mcmaster": 18, "set5": 5, "rain100h": 40, "sots_indoor": 40, "depth": 2}
    with_depth = {s.id: s.depth.name for s in sources if s.depth is not None}
    assert with_depth == {"depth_sample": "sample_depth.png", "depth_motorcycle": "motorcycle_disp.npz"}
    assert not any("input" in s.path.parts or "hazy" in s.path.parts for s in sources)


def test_near_duplicates_share_a_split_group(data_root):
    # Rain100H target 21 is a crop of CBSD68 196073: one scene must not land in both splits.
    paths = [data_root / "rain100h/target/21.png", data_root / "clean/CBSD68/196073.png",
             data_root / "clean/CBSD68/101085.png", data_root / "rain100h/target/13.png"]
    thumbs = np.stack([thumbnail(read_image(p)) for p in paths])
    groups = group_near_duplicates(["a", "b", "c", "d"], thumbs, ["a", "b", "c", "d"])
    assert groups[0] == groups[1] == "a"
    assert len({groups[0], groups[2], groups[3]}) == 3


def test_split_keeps_groups_together_and_is_seeded():
    ids = [f"s{i:02d}" for i in range(20)]
    groups = [f"g{i // 2}" for i in range(20)]  # pairs of near-duplicates
    cfg = dataclasses.replace(_cfg(), max_test_sources=5, max_train_sources=0, test_fraction=0.25)
    test, train = syn.split_sources(ids, groups, cfg)
    assert len(test) == 4 and len(train) == 16 and not set(test) & set(train)
    g_of = dict(zip(ids, groups))
    assert not {g_of[i] for i in test} & {g_of[i] for i in train}
    assert syn.split_sources(ids, groups, cfg) == (test, train)
    assert syn.split_sources(ids, groups, dataclasses.replace(cfg, seed=5))[0] != test


def test_output_seed_depends_only_on_seed_source_and_index():
    _, s1 = syn.sample_streams(0, "cbsd68_1", "train", 3)
    _, s2 = syn.sample_streams(0, "cbsd68_1", "train", 3)
    _, s3 = syn.sample_streams(0, "cbsd68_1", "train", 4)
    _, s4 = syn.sample_streams(1, "cbsd68_1", "train", 3)
    assert s1 == s2 and len({s1, s3, s4}) == 3 and 0 <= s1 < 2**63
    assert syn.source_key("x") == int.from_bytes(hashlib.sha256(b"x").digest()[:8], "little")


def test_sdir_test_targets_and_their_near_duplicates_never_train(data_root, tmp_path):
    """On a data root with Rain100H and SOTS-indoor pairs, no clean image of an SDIR test pair, nor a near
    duplicate of one, reaches the MDIR training split; the pairs are copied into the dataset for evaluation."""
    import shutil

    root = tmp_path / "root"
    for name in sorted((data_root / "clean" / "CBSD68").iterdir())[:4]:
        (root / "clean" / "CBSD68").mkdir(parents=True, exist_ok=True)
        shutil.copy(name, root / "clean" / "CBSD68" / name.name)
    for i in range(1, 7):
        for sub in ("input", "target"):
            (root / "rain100h" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(data_root / "rain100h" / sub / f"{i}.png", root / "rain100h" / sub / f"{i}.png")
    for hazy in sorted((data_root / "sots-indoor" / "hazy").iterdir())[:4]:
        (root / "sots-indoor" / "hazy").mkdir(parents=True, exist_ok=True)
        (root / "sots-indoor" / "gt").mkdir(parents=True, exist_ok=True)
        shutil.copy(hazy, root / "sots-indoor" / "hazy" / hazy.name)
        gt = hazy.name.split("_")[0] + ".png"
        shutil.copy(data_root / "sots-indoor" / "gt" / gt, root / "sots-indoor" / "gt" / gt)
    # A near duplicate of a Rain100H target under another name (a re-crop of the same photo).
    dup = read_image(root / "rain100h" / "target" / "3.png")[2:-2, 2:-2]
    write_image(root / "clean" / "Extra" / "recrop.png", dup)
    out = tmp_path / "out"
    meta = _run(out, root, test_fraction=0.2, max_train_sources=0, max_test_sources=3)
    rows = _rows(out)
    train_sources = {r["source"] for r in rows if r["split"] == "train"}
    held = {s["id"] for s in meta["sources"] if s["id"].startswith(("rain100h_", "sots_indoor_"))}
    assert len(held) == 10 and not (train_sources & held)
    assert "extra_recrop" not in train_sources  # its group holds Rain100H target 3
    assert train_sources and {s["split"] for s in meta["sources"] if s["id"] in held} <= {"test", "sdir-heldout"}
    # The SDIR pairs are in the dataset, byte for byte, where evaluate and the report read them.
    from pipelines.data import sdir

    copied = sdir.load_sets(out / "sdir")
    assert {k: len(v) for k, v in copied.items()} == {"rain100h": 6, "sots-indoor": 4} == meta["sdir_sets"]
    assert (out / "sdir/rain100h/target/3.png").read_bytes() == (root / "rain100h/target/3.png").read_bytes()


@pytest.mark.parametrize("n", [1, 2, 7, 12])
def test_test_levels_cover_each_range_evenly_for_any_seed(n):
    """Each combination's test levels: one per equal stratum of each component's range, whatever the seed."""
    for seed in range(25):
        cfg = _cfg(seed=seed)
        for comb in COMBINATIONS:
            levels = syn.stratified_levels(n, comb, cfg)
            assert len(levels) == n
            for name, (lo, hi) in (("haze", cfg.haze_range), ("rain", cfg.rain_range), ("noise", cfg.noise_range)):
                vals = np.array([getattr(lv, name) for lv in levels])
                if name not in comb.split("+"):
                    assert (vals == 0).all()
                    continue
                strata = np.floor((vals - lo) / (hi - lo) * n).astype(int)
                assert sorted(strata) == list(range(n)), (seed, comb, name, vals)
    # Two components are not tied together: their strata are shuffled independently.
    lv = syn.stratified_levels(12, "rain+noise", _cfg(seed=0))
    assert [round(x.rain) for x in lv] != sorted(round(x.rain) for x in lv) or \
        [round(x.noise) for x in lv] != sorted(round(x.noise) for x in lv)
