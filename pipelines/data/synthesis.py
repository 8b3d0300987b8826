"""MDIR synthesis: the train/test sets from clean real photos (the ``synthesize`` stage's library).

Output contract (the training and evaluation stages read it):
``<out>/manifest.csv`` with columns ``file,target,source,split,combination,haze,rain,noise,seed,sha256``
(paths relative to ``<out>``), ``<out>/meta.json``, ``clean/<source>.png`` (one per source),
``test/<combination with _>/<source>.png`` (each test source under all 7 combinations),
``train/<source>_<k>.png`` (pre-generated pairs, random combination and levels per sample) and
``contact_sheet.png``.

Determinism: every output's randomness comes from ``SeedSequence([seed, hash(source), split, k])``,
never from the order in which processes finish, so the same params give the same bytes with any
number of workers. Bad sources (unreadable, too small, depth map of the wrong size) are reported
one line each and left out before the split is drawn; nothing is written when none is usable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.common.config import SynthesizeConfig
from pipelines.common.env import UserError
from pipelines.common.files import atomic_dir, atomic_path, write_text
from pipelines.data import sdir
from pipelines.data.degradations import Levels, degrade, load_depth, proxy_depth
from pipelines.data.imageio import image_size, read_image, to_uint8, write_image
from pipelines.data.manifest import COMBINATIONS, MANIFEST, MANIFEST_COLUMNS, SDIR_DIR, Pair, file_sha256
from pipelines.data.sources import Source, group_near_duplicates, list_clean_sources, thumbnail

STRIDE = 8  # models downsample 3 times: H and W must be multiples of 8
_SPLIT_CODE = {"test": 1, "train": 2, "contact": 3, "split": 4}


# ----------------------------------------------------------------------------- pure helpers


def source_key(source_id: str) -> int:
    """A stable 64-bit integer for a source id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(source_id.encode()).digest()[:8], "little")


def sample_streams(seed: int, source_id: str, split: str, index: int) -> tuple[np.random.Generator, int]:
    """(generator for combination/levels, 63-bit image seed for :func:`degrade`) of one output."""
    ss = np.random.SeedSequence([seed, source_key(source_id), _SPLIT_CODE[split], index])
    levels_ss, image_ss = ss.spawn(2)
    return np.random.default_rng(levels_ss), int(image_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _draw(rng: np.random.Generator, lo: float, hi: float) -> float:
    # (lo, hi], rounded to 0.01 so the manifest value is exactly the value applied; never 0 (= off).
    return max(round(lo + (hi - lo) * (1.0 - float(rng.random())), 2), 0.01)


def draw_levels(rng: np.random.Generator, combination: str, cfg: SynthesizeConfig) -> Levels:
    """Levels of one sample: each active component uniform in its params range, the others 0."""
    parts = set(combination.split("+"))
    return Levels(
        haze=_draw(rng, *cfg.haze_range) if "haze" in parts else 0.0,
        rain=_draw(rng, *cfg.rain_range) if "rain" in parts else 0.0,
        noise=_draw(rng, *cfg.noise_range) if "noise" in parts else 0.0,
    )


def crop_box(h: int, w: int, crop: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred crop: at most crop x crop, sides multiples of 8."""
    ch = min(h, crop) if crop > 0 else h
    cw = min(w, crop) if crop > 0 else w
    ch, cw = ch - ch % STRIDE, cw - cw % STRIDE
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _fmt(x: float) -> str:
    return f"{x:g}" if x != int(x) else str(int(x))


# ----------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class Job:
    """One output image: which source, split, index, combination, levels and image seed."""

    file: str
    source: str
    split: str
    combination: str
    levels: Levels
    seed: int


@dataclass(frozen=True)
class SourceTask:
    source: Source
    crop: int
    depth_proxy: str
    out: str
    jobs: tuple[Job, ...]


def _worker_init() -> None:
    import multiprocessing

    import cv2

    cv2.setNumThreads(1)  # one process per core; cv2 threads would only oversubscribe
    parent = multiprocessing.parent_process()
    if sys.platform.startswith("linux") and parent is not None:
        # A pool worker dies with the stage: a SIGKILLed parent's workers would otherwise go on with the tasks
        # already queued to them, writing into the build folder of a run that no longer exists.
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent.pid:  # the parent died before the line above: nobody will kill us
            os._exit(1)


def load_source(source: Source, crop: int, depth_proxy: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Cropped float image, its depth map in metres (real or proxy) and where the depth came from."""
    img = read_image(source.path)
    top, left, ch, cw = crop_box(img.shape[0], img.shape[1], crop)
    depth_origin = depth_proxy
    if source.depth is not None:
        depth = load_depth(source.depth)
        if depth.shape != img.shape[:2]:
            raise UserError(f"{source.depth}: depth map {depth.shape[1]}x{depth.shape[0]} does not match image "
                            f"{img.shape[1]}x{img.shape[0]}")
        depth = depth[top : top + ch, left : left + cw]
        depth_origin = "file"
    # Quantise once: the degraded image is made from exactly the pixels of the clean target on disk.
    img = to_uint8(img[top : top + ch, left : left + cw]).astype(np.float32) / np.float32(255.0)
    if source.depth is None:
        depth = proxy_depth(img, depth_proxy)
    return img, np.ascontiguousarray(depth), depth_origin


def check_source(args: tuple[Source, int, int, str]) -> dict:
    """Pass 1: can this source be used? Returns sizes, sha256 and a thumbnail, or the error."""
    source, crop, patch, depth_proxy = args
    try:
        width, height = image_size(source.path)
        _, _, h, w = crop_box(height, width, crop)
        if min(h, w) < patch:
            cropped = f" ({w}x{h} after cropping)" if (h, w) != (height, width) else ""
            raise UserError(f"{source.path}: {width}x{height}{cropped} is smaller than the training patch {patch}")
        img, _, depth_origin = load_source(source, crop, depth_proxy)
        return {"id": source.id, "ok": True, "sha256": file_sha256(source.path), "crop": [h, w],
                "depth": depth_origin, "thumb": thumbnail(img)}
    except UserError as exc:  # ImageError is a UserError
        return {"id": source.id, "ok": False, "error": str(exc)}


def run_source(task: SourceTask) -> list[dict]:
    """Pass 2: write the clean target and every degraded output of one source; manifest rows back."""
    src = task.source
    img, depth, _ = load_source(src, task.crop, task.depth_proxy)
    out = Path(task.out)
    target = f"clean/{src.id}.png"
    write_image(out / target, img)
    rows = [{"file": target, "source": src.id, "split": "clean", "sha256": file_sha256(out / target)}]
    for job in task.jobs:
        degraded = degrade(img, job.levels, depth, job.seed)
        write_image(out / job.file, degraded)
        rows.append({
            "file": job.file, "target": target, "source": src.id, "split": job.split,
            "combination": job.combination, "haze": _fmt(job.levels.haze), "rain": _fmt(job.levels.rain),
            "noise": _fmt(job.levels.noise), "seed": str(job.seed), "sha256": file_sha256(out / job.file),
        })
    return rows


# ----------------------------------------------------------------------------- planning


def split_sources(ids: list[str], groups: list[str], cfg: SynthesizeConfig,
                  reserved: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Seeded split over groups (near-duplicates stay together): (test ids, train ids), each sorted.

    A group holding a ``reserved`` id (the clean image of an SDIR test pair) never enters the train split:
    it may be drawn for the MDIR test split like any group, and is otherwise left out of MDIR.
    """
    held = {g for sid, g in zip(ids, groups) if sid in reserved}
    by_group: dict[str, list[str]] = {}
    for sid, g in zip(ids, groups):
        by_group.setdefault(g, []).append(sid)
    order = sorted(by_group)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _SPLIT_CODE["split"]]))
    order = [order[i] for i in rng.permutation(len(order))]
    n = len(ids)
    want_test = math.ceil(cfg.test_fraction * n) if cfg.test_fraction > 0 else 0
    if cfg.max_test_sources > 0:
        want_test = min(want_test, cfg.max_test_sources)
    if n >= 2:
        want_test = min(max(want_test, 1), n - 1)
    test: list[str] = []
    train: list[str] = []
    for g in order:
        members = sorted(by_group[g])
        if len(test) < want_test and len(test) + len(members) <= max(want_test, 1):
            test += members
        elif g not in held:
            train += members
    if cfg.max_train_sources > 0:
        train = train[: cfg.max_train_sources]
    return sorted(test), sorted(train)


def stratified_levels(n: int, combination: str, cfg: SynthesizeConfig) -> list[Levels]:
    """Test levels of one combination for ``n`` test sources: a centred Latin hypercube over its components.

    Each active component's range is cut into ``n`` equal strata and every stratum gets exactly one source, at
    its midpoint; the strata are shuffled per component (seeded by ``synthesize.seed`` and the combination),
    so sources meet different difficulties and two components are not tied together. The test set's
    difficulty then covers each range evenly whatever the seed (uniform draws left half of the noise levels
    of a 12-source set below sigma 10 with seed 0); the training pairs stay uniformly random.
    """
    parts = set(combination.split("+"))
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODE["test"], int.from_bytes(combination.encode(), "little")])
    midpoints = (np.arange(n) + 0.5) / max(n, 1)
    values: dict[str, np.ndarray] = {}
    for name, (lo, hi) in (("haze", cfg.haze_range), ("rain", cfg.rain_range), ("noise", cfg.noise_range)):
        order = rng.permutation(n)  # drawn for every component, so each one's shuffle is fixed by the seed
        if name in parts:
            values[name] = np.maximum(np.round(lo + (hi - lo) * midpoints[order], 2), 0.01)
    return [Levels(**{k: float(v[i]) for k, v in values.items()}) for i in range(n)]


def plan_jobs(test: list[str], train: list[str], cfg: SynthesizeConfig) -> dict[str, list[Job]]:
    """Every output of every source, keyed by source id: each test source under the seven combinations at
    stratified levels (:func:`stratified_levels`), training pairs at random combinations and levels."""
    jobs: dict[str, list[Job]] = {sid: [] for sid in [*test, *train]}
    for j, comb in enumerate(COMBINATIONS):
        for sid, levels in zip(test, stratified_levels(len(test), comb, cfg)):
            _, seed = sample_streams(cfg.seed, sid, "test", j)
            jobs[sid].append(Job(f"test/{comb.replace('+', '_')}/{sid}.png", sid, "test", comb, levels, seed))
    for sid in train:
        for k in range(cfg.train_pairs_per_source):
            rng, seed = sample_streams(cfg.seed, sid, "train", k)
            comb = COMBINATIONS[int(rng.integers(len(COMBINATIONS)))]
            jobs[sid].append(Job(f"train/{sid}_{k:03d}.png", sid, "train", comb, draw_levels(rng, comb, cfg), seed))
    return jobs


# ----------------------------------------------------------------------------- SDIR test sets

def find_sdir(data_root: Path | None) -> dict[str, tuple[Path, list[Pair]]]:
    """The SDIR test sets under the data root: name -> (folder, pairs); none without a data root."""
    if data_root is None:
        return {}
    return {name: (folder, sdir.load_pairs(name, folder)) for name, folder in sdir.find_sdir_sets(data_root).items()}


def copy_sdir(sets: dict[str, tuple[Path, list[Pair]]], dest: Path) -> set[str]:
    """Copy every pair's two files into ``dest/<set>/`` (same relative layout); returns the written paths
    relative to ``dest.parent``. The evaluate stage and the report read the SDIR sets from this copy: the
    pairs are then part of the dataset DVC hashes, and a set's clean images are known to be held out of
    MDIR training (:func:`split_sources`)."""
    written: set[str] = set()
    for name, (folder, pairs) in sets.items():
        for pair in pairs:
            for f in (pair.input, pair.target):
                rel = Path(SDIR_DIR) / name / f.relative_to(folder)
                target = dest.parent / rel
                if rel.as_posix() not in written:
                    with atomic_path(target) as tmp:
                        shutil.copyfile(f, tmp)
                    written.add(rel.as_posix())
    return written


# ----------------------------------------------------------------------------- contact sheet


def severity_levels(combination: str, severity: float, cfg: SynthesizeConfig) -> Levels:
    """Levels at ``severity`` in [0, 1] of each params range (haze: 1 = lowest visibility); 'clean' = all off."""
    parts = set(combination.split("+"))

    def at(lo: float, hi: float) -> float:
        return round(lo + severity * (hi - lo), 2)

    return Levels(
        haze=at(cfg.haze_range[1], cfg.haze_range[0]) if "haze" in parts else 0.0,
        rain=at(*cfg.rain_range) if "rain" in parts else 0.0,
        noise=at(*cfg.noise_range) if "noise" in parts else 0.0,
    )


def contact_sheet(img: np.ndarray, depth: np.ndarray, cfg: SynthesizeConfig, source_id: str) -> np.ndarray:
    """Grid: rows = mild / severe levels, columns = clean + the 7 combinations (uint8 RGB)."""
    from PIL import Image, ImageDraw, ImageFont

    tile = 160
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    label_h, pad = 28, 4
    cols = ["clean", *COMBINATIONS]
    severities = (("mild", 0.25), ("severe", 1.0))
    sheet = Image.new("RGB", (len(cols) * (tw + pad) + pad + 60, len(severities) * (th + label_h + pad) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (name, s) in enumerate(severities):
        y = pad + r * (th + label_h + pad)
        draw.text((pad, y + th // 2), name, fill="black", font=font)
        for c, comb in enumerate(cols):
            lv = severity_levels(comb, s, cfg)
            _, seed = sample_streams(cfg.seed, source_id, "contact", r * len(cols) + c)
            out = to_uint8(degrade(img, lv, depth, seed))
            x = 60 + pad + c * (tw + pad)
            sheet.paste(Image.fromarray(out).resize((tw, th), Image.Resampling.BILINEAR), (x, y))
            text = comb if comb == "clean" else "/".join(
                f"{k[0].upper()}{_fmt(v)}" for k, v in (("haze", lv.haze), ("rain", lv.rain), ("noise", lv.noise)) if v)
            draw.text((x, y + th + 2), comb, fill="black", font=font)
            if comb != "clean":
                draw.text((x, y + th + 14), text, fill="dimgray", font=font)
    return np.asarray(sheet)


# ----------------------------------------------------------------------------- driver


def _pool_map(fn, items: list, workers: int, desc: str) -> Iterable:
    """Map in ``workers`` processes (1 = in this process) with a progress bar; results in input order."""
    from tqdm import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="src", file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        if workers <= 1 or len(items) <= 1:
            _worker_init()
            for item in items:
                yield fn(item)
                bar.update()
            return
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork of a parent holding OpenCV/BLAS thread pools
        with ctx.Pool(min(workers, len(items)), initializer=_worker_init) as pool:
            for res in pool.imap(fn, items, chunksize=1):
                yield res
                bar.update()
            pool.close()  # every worker has exited before the caller goes on (and, say, swaps the folder in)
            pool.join()
    finally:
        bar.close()


def validate_config(cfg: SynthesizeConfig) -> None:
    """Reject params the stage cannot honour, naming the key."""
    from pipelines.data.degradations import DEPTH_PROXIES

    if cfg.depth_proxy not in DEPTH_PROXIES:
        raise UserError(f"params synthesize.depth_proxy: {cfg.depth_proxy!r} is not one of {', '.join(DEPTH_PROXIES)}")
    for name, (lo, hi), top in (("haze_range", cfg.haze_range, math.inf), ("rain_range", cfg.rain_range, 300.0),
                                ("noise_range", cfg.noise_range, 255.0)):
        if not (0 <= lo <= hi <= top) or (name == "haze_range" and lo <= 0):
            raise UserError(f"params synthesize.{name}: [{lo:g}, {hi:g}] must satisfy "
                            f"{'0 < lo' if name == 'haze_range' else '0 <= lo'} <= hi <= {top:g}")
    if not 0 <= cfg.test_fraction < 1:
        raise UserError(f"params synthesize.test_fraction: {cfg.test_fraction} must be in [0, 1)")
    for name in ("max_train_sources", "max_test_sources", "train_pairs_per_source", "crop", "workers"):
        if getattr(cfg, name) < 0:
            raise UserError(f"params synthesize.{name}: must be >= 0")


def synthesize(cfg: SynthesizeConfig, out: Path, data_root: Path | None, patch: int, workers: int,
               profile: str = "", log=print) -> dict:
    """Run the stage; returns the meta dict written to ``meta.json``."""
    validate_config(cfg)
    sources = list_clean_sources(data_root)
    base = data_root if data_root is not None else sources[0].path.parent
    n_workers = workers if workers > 0 else (os.cpu_count() or 1)

    checks = list(_pool_map(check_source, [(s, cfg.crop, patch, cfg.depth_proxy) for s in sources], n_workers,
                            "checking sources"))
    by_id = {s.id: s for s in sources}
    skipped = [{"id": c["id"], "file": str(by_id[c["id"]].path), "reason": c["error"]} for c in checks if not c["ok"]]
    for s in skipped:
        log(f"skipped source: {s['reason']}")
    good = [c for c in checks if c["ok"]]
    if not good:
        raise UserError(f"no usable source image among {len(sources)} (every one was skipped)")
    ids = [c["id"] for c in good]
    groups = group_near_duplicates(ids, np.stack([c["thumb"] for c in good]), [by_id[i].group for i in ids])
    sdir_sets = find_sdir(data_root)
    targets = {p.target.resolve() for _, pairs in sdir_sets.values() for p in pairs}
    reserved = frozenset(sid for sid in ids if by_id[sid].path.resolve() in targets)
    test, train = split_sources(ids, groups, cfg, reserved)
    jobs = plan_jobs(test, train, cfg)

    # The whole set is built in a folder beside ``out`` and swapped in at the end (atomic_dir): a kill at any
    # moment leaves the complete old set or the complete new one, never old files under a new manifest.
    with atomic_dir(out) as build:
        tasks = [SourceTask(by_id[sid], cfg.crop, cfg.depth_proxy, str(build), tuple(jobs[sid]))
                 for sid in sorted(jobs)]
        rows: list[dict] = []
        clean_sha: dict[str, str] = {}
        group_of = dict(zip(ids, groups))
        for res in _pool_map(run_source, tasks, n_workers, "synthesizing"):  # workers joined when it ends
            clean_sha[res[0]["source"]] = res[0]["sha256"]
            rows += [{**r, "group": group_of[r["source"]], "target_sha256": res[0]["sha256"]} for r in res[1:]]
        copy_sdir(sdir_sets, build / SDIR_DIR)
        order = {c: i for i, c in enumerate(COMBINATIONS)}
        rows.sort(key=lambda r: (r["split"] != "test", order[r["combination"]] if r["split"] == "test" else 0,
                                 r["file"]))

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(build / MANIFEST, buf.getvalue())

        sheet_src = test[0] if test else train[0]
        img, depth, _ = load_source(by_id[sheet_src], cfg.crop, cfg.depth_proxy)
        write_image(build / "contact_sheet.png", contact_sheet(img, depth, cfg, sheet_src))
        split_of = {sid: "sdir-heldout" for sid in reserved} | {sid: "test" for sid in test} | \
            {sid: "train" for sid in train}
        n_train_pairs = sum(r["split"] == "train" for r in rows)
        n_test = sum(r["split"] == "test" for r in rows)
        import cv2
        import PIL
        import skimage

        meta = {
            "data_root": str(data_root) if data_root is not None else None,
            "source_kind": "data_root" if data_root is not None else "skimage",
            # The embedded photos' folder lies inside the virtual environment: record what it is, not where,
            # so that meta.json (and DVC's hash of the dataset) is the same in every checkout.
            "source_base": str(base) if data_root is not None else f"skimage.data (scikit-image {skimage.__version__})",
            "profile": profile,
            "params": {**asdict(cfg), "patch": patch},
            "combinations": list(COMBINATIONS),
            "counts": {
                "sources_found": len(sources),
                "sources_usable": len(good),
                "sources_skipped": len(skipped),
                "test_sources": len(test),
                "train_sources": len(train),
                "test_images": n_test,
                "train_pairs": n_train_pairs,
                "requested": {"test_sources": cfg.max_test_sources, "train_sources": cfg.max_train_sources},
                "shortfall": {
                    "test_sources": max(0, cfg.max_test_sources - len(test)),
                    "train_sources": max(0, cfg.max_train_sources - len(train)),
                },
                "unused_sources": len(good) - len(test) - len(train),
                "sdir_heldout_sources": len({sid for sid, g in zip(ids, groups)
                                             if g in {group_of[r] for r in reserved}} - set(test)),
            },
            "sources": [
                {"id": c["id"], "file": _rel(by_id[c["id"]].path, base), "sha256": c["sha256"],
                 "depth": _rel(by_id[c["id"]].depth, base) if by_id[c["id"]].depth else c["depth"],
                 "group": group_of[c["id"]], "split": split_of.get(c["id"], "unused"), "size_hw": c["crop"],
                 "clean_sha256": clean_sha.get(c["id"])}
                for c in good
            ],
            "skipped": [{"id": s["id"], "file": _rel(Path(s["file"]), base), "reason": s["reason"]} for s in skipped],
            "contact_sheet_source": sheet_src,
            "sdir_sets": {name: len(pairs) for name, (_, pairs) in sdir_sets.items()},
            "versions": {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
                         "pillow": PIL.__version__},
        }
        write_text(build / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _rel(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)
