"""params.yaml -> frozen dataclasses.

Layout of ``params.yaml``: a top-level ``profile`` (smoke | small | paper) and one section
per stage. Inside a section, a key is either common to all profiles or given under each
profile's sub-mapping (``train.smoke.iters``), never both: every value is written once,
so ``dvc exp run -S train.smoke.iters=500`` is unambiguous. All three profiles are
validated on every load, so a typo in the ``paper`` block fails a smoke run too.
Unknown and missing keys are errors naming the key; derived values are properties. Every number is checked
against the range in its field's metadata (:func:`_in`) by :func:`build`, so a value out of range (``batch: -4``,
``lr: .nan``, ``beta1: 5``) is a one-line error naming the key before any stage does work; NaN and inf are never
accepted.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from interir.presets import PRESETS
from pipelines.common.env import UserError
from pipelines.common.paths import PARAMS as DEFAULT_PARAMS

PROFILES = PRESETS  # a profile runs every model at the preset of the same name
SCHEDULES = ("cosine", "wsd", "linear")


class ConfigError(UserError):
    """A params file that does not match the schema (message names the key)."""


COUNT_MAX = 10**9  # upper bound of step and item counts: beyond it a value is a typo, not a plan
SEED_MAX = 2**63 - 1  # seeds feed numpy (SeedSequence: no negatives) and torch.manual_seed (64 bits)


@dataclass(frozen=True)
class Range:
    """Allowed values of a number (or of every element of a tuple): ``lo <= v <= hi``, ends optional or open."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v: float) -> bool:
        return (isinstance(v, int) or math.isfinite(v)) and (
            self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)) and (
            self.hi is None or (v < self.hi if self.hi_open else v <= self.hi))

    def __str__(self) -> str:
        num = lambda x: str(x) if isinstance(x, int) else f"{x:g}"  # noqa: E731
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        return "finite"


def _in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Any:
    """A required dataclass field whose value :func:`build` checks against ``Range(lo, hi, ...)``."""
    return field(metadata={"range": Range(lo, hi, lo_open, hi_open)})


def check_seed(seed: int, what: str = "--seed") -> int:
    """A seed for numpy and torch, or a one-line error naming ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{what} must be an integer in [0, {SEED_MAX}], got {_show(seed)}")
    return seed


@dataclass(frozen=True)
class DataConfig:
    root: str  # "" = $INTERIR_DATA, else the scikit-image photos


@dataclass(frozen=True)
class SynthesizeConfig:
    seed: int = _in(0, SEED_MAX)
    workers: int = _in(0, 1024)  # 0 = all cores
    test_fraction: float = _in(0, 1, hi_open=True)
    haze_range: tuple[float, float] = _in(0, 1e6)  # visibility in metres (TANet reading), 0 = off
    rain_range: tuple[float, float] = _in(0, 300)  # TANet streak-seed density
    noise_range: tuple[float, float] = _in(0, 255)  # Gaussian sigma on the 0-255 scale
    depth_proxy: str
    max_train_sources: int = _in(0, COUNT_MAX)  # 0 = all available
    max_test_sources: int = _in(0, COUNT_MAX)
    train_pairs_per_source: int = _in(0, 100_000)
    crop: int = _in(0, COUNT_MAX)  # sources are centre-cropped to at most crop x crop (0 = keep size)

    def __post_init__(self) -> None:
        for key in ("haze_range", "rain_range", "noise_range"):
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1] or (key == "haze_range" and value[0] <= 0):
                lo = "0 < lo" if key == "haze_range" else "0 <= lo"
                raise ConfigError(f"params key synthesize.{key} must be [lo, hi] with {lo} <= hi, got {list(value)}")


@dataclass(frozen=True)
class TrainConfig:
    iters: int = _in(1, COUNT_MAX)
    batch: int = _in(1, 4096)  # global batch (split across processes under torchrun)
    patch: int = _in(8, 4096)
    lr: float = _in(0, 1, lo_open=True)
    lr_min: float = _in(0, 1)
    warmup_iters: int = _in(0, COUNT_MAX)
    beta1: float = _in(0, 1, hi_open=True)
    beta2: float = _in(0, 1, hi_open=True)
    fft_weight: float = _in(0, 1e3)
    grad_clip: float = _in(0, 1e6)  # 0 = off
    log_every: int = _in(1, COUNT_MAX)
    ckpt_every: int = _in(1, COUNT_MAX)
    num_workers: int = _in(0, 256)
    amp_bf16: bool
    channels_last: bool
    # Intra-op threads of each training process. Fixed here, not guessed from the machine: float sums
    # depend on the thread count, and the weights must not (interir-bench repro runs cores // threads jobs).
    threads: int = _in(1, 1024)
    schedule: str  # cosine | wsd | linear (pipelines.engine.loop.lr_at)
    decay_fraction: float = _in(0, 1, lo_open=True)  # wsd: the last fraction of a budget decays linearly to lr_min
    # Shorter training budgets branched off the run (wsd only): each gets a checkpoint equal to a separate run
    # of that many steps, so claims can be followed over budget (snapshots/, trajectory.csv).
    budgets: tuple[int, ...] = _in(1, COUNT_MAX)
    optimizer: str  # adam | adamw
    weight_decay: float = _in(0, 1e3)
    loss: str  # interir.losses.LOSSES
    # shared: every model with the recipe above (equal budgets, the default on the CPU profiles); original:
    # each baseline with its published recipe from its model card (optimiser, rates, schedule, loss, clipping;
    # batch, patch and iterations at the paper profile only)
    recipe: str

    def __post_init__(self) -> None:
        if self.lr_min > self.lr:
            raise ConfigError(f"params key train.lr_min ({self.lr_min:g}) must not exceed train.lr ({self.lr:g})")
        if self.recipe not in ("shared", "original"):
            raise ConfigError(f"params key train.recipe must be shared or original, got {self.recipe!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"params key train.optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"params key train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.budgets and self.schedule != "wsd":
            raise ConfigError("params key train.budgets needs train.schedule: wsd (only its runs share their "
                              "steps up to each budget's decay)")
        if any(not 0 < b < self.iters for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ConfigError(f"params key train.budgets must be increasing step counts below train.iters "
                              f"({self.iters}), got {list(self.budgets)}")


@dataclass(frozen=True)
class EvaluateConfig:
    tile: int = _in(0, COUNT_MAX)  # 0 = whole image
    tile_overlap: int = _in(0, COUNT_MAX)
    save_images: int = _in(0, 10_000)  # how many restored images per set to keep for the report
    batch: int = _in(0, 4096)  # test pairs per chunk (one forward pass per size); 0 = the model card's eval_batch
    workers: int = _in(1, 256)  # threads that each read, restore and score whole chunks (rows do not depend on it)
    threads: int = _in(1, 1024)  # intra-op threads of each worker (fixed: float sums depend on it)
    # SDIR sets found under the data root that evaluate and score_inputs leave out (names as in
    # pipelines.data.sdir: rain100h, sots-indoor, ...); synthesis still holds their targets out of training.
    skip_sdir: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.skip_sdir:  # checked here, before anything is trained: a typo would otherwise fail at evaluate
            from pipelines.data.sdir import DEHAZE_SETS, DERAIN_SETS  # the owner of the set names

            known = (*DERAIN_SETS, *DEHAZE_SETS)
            unknown = [s for s in self.skip_sdir if s not in known]
            if unknown:
                raise ConfigError(f"params key evaluate.skip_sdir: unknown SDIR set {unknown[0]!r} "
                                  f"(known: {', '.join(known)})")


@dataclass(frozen=True)
class ProfilingConfig:
    size: int = _in(8, 4096)  # square input side for MACs and latency (paper: 256)
    paper_preset: bool  # also count params and MACs at the paper preset (meta device, no allocation)
    paper_full: bool  # ... and the fvcore cross-check at the paper preset (real tensors; slow)
    sizing_models: tuple[str, ...]  # profiled beside `models` but never trained (cards with trainable=False)


@dataclass(frozen=True)
class ReportConfig:
    bootstrap: int = _in(1, 1_000_000)  # bootstrap resamples of every interval
    ci: float = _in(0, 1, lo_open=True, hi_open=True)  # interval level
    mlflow_ui: str  # base URL of the MLflow UI the report's run ids link to (`interir-bench ui` serves it)


@dataclass(frozen=True)
class ClusterConfig:
    """Default SLURM resources of ``interir-bench cluster submit`` (its flags override them). No stage reads
    this section, so editing it reruns nothing."""

    partition: str  # "" = the cluster's default partition
    cpus_per_job: int = _in(1, 1024)
    gpus_per_job: int = _in(0, 64)  # 0 = CPU jobs; G >= 2 trains under torchrun with G processes (one per GPU)
    mem_gb: int = _in(0, 1_000_000)  # 0 = the cluster's default
    time_min: int = _in(1, COUNT_MAX)  # wall-time limit of one job; a job that reaches it is requeued and resumes
    requeues: int = _in(0, 1000)  # how many times a job that ran out of time is requeued (max_num_timeout)


@dataclass(frozen=True)
class Params:
    profile: str
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    data: DataConfig
    synthesize: SynthesizeConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    profiling: ProfilingConfig
    report: ReportConfig
    cluster: ClusterConfig

    @property
    def preset(self) -> str:
        """Model preset used by the pipeline: the profile's name (derived)."""
        return self.profile

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


T = TypeVar("T")
_SECTIONS = {
    "data": DataConfig,
    "synthesize": SynthesizeConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "profiling": ProfilingConfig,
    "report": ReportConfig,
    "cluster": ClusterConfig,
}


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error stays one short line whatever was written."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce(value: Any, typ: Any, where: str) -> Any:
    typ_s = str(typ)
    if typ_s.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        inner = typ.__args__[0] if hasattr(typ, "__args__") else float
        return tuple(_coerce(v, inner, where) for v in value)
    if typ in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        try:
            return float(value)  # YAML reads 1e-4 (no dot) as a string
        except (ValueError, OverflowError):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}") from None
    if typ in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if typ in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {_show(value)}")
        return value
    if typ in (str, "str"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    return value


def build(cls: type[T], raw: dict[str, Any], where: str, paths: dict[str, str] | None = None) -> T:
    """Instantiate dataclass ``cls`` from ``raw``; unknown or missing keys are errors.

    ``paths`` maps a key to the dotted path it was read from, for error messages.
    """
    paths = paths or {}
    path = lambda k: paths.get(k, f"{where}.{k}")  # noqa: E731
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"unknown params key {path(unknown[0])} (known: {', '.join(fields)})")
    missing = [n for n in fields if n not in raw]
    if missing:
        raise ConfigError(f"missing params key {where}.{missing[0]}")
    hints = _type_hints(cls)
    values = {k: _coerce(v, hints[k], path(k)) for k, v in raw.items()}
    for k, v in values.items():
        rng = fields[k].metadata.get("range", Range())
        numbers = [e for e in (v if isinstance(v, tuple) else (v,)) if isinstance(e, (int, float))
                   and not isinstance(e, bool)]
        if not all(rng.holds(e) for e in numbers):
            shown = list(v) if isinstance(v, tuple) else v
            raise ConfigError(f"params key {path(k)} must be {rng}{' (each)' if isinstance(v, tuple) else ''}, "
                              f"got {_show(shown)}")
    return cls(**values)


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def resolve_section(cls: type[T], raw: dict[str, Any], profile: str, where: str) -> T:
    """Merge the common keys of a section with one profile's block, validating every profile."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    common = {k: v for k, v in raw.items() if k not in PROFILES}
    chosen = None
    for p in PROFILES:
        block = raw.get(p) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{where}.{p}: expected a mapping")
        both = sorted(set(block) & set(common))
        if both:
            raise ConfigError(f"params key {where}.{both[0]} is written twice (common and {where}.{p}.{both[0]})")
        # Name a bad key where it is written: `train.lr` (common) or `train.smoke.lr` (profile block).
        paths = {k: f"{where}.{p}.{k}" for k in block}
        cfg = build(cls, {**common, **block}, where, paths)
        if p == profile:
            chosen = cfg
    assert chosen is not None
    return chosen


def load_params(path: str | os.PathLike = DEFAULT_PARAMS, profile: str | None = None) -> Params:
    """Load and validate ``params.yaml``; ``profile`` overrides the file's top-level one."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"{path}: cannot read the params file ({why})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    top = {"profile", "models", "seeds", *_SECTIONS}
    unknown = sorted(set(raw) - top, key=str)
    if unknown:
        raise ConfigError(f"unknown params key {unknown[0]} in {path} (known: {', '.join(sorted(top))})")
    missing = sorted(top - set(raw))
    if missing:
        raise ConfigError(f"missing params key {missing[0]} in {path}")
    prof = profile or raw["profile"]
    if prof not in PROFILES:
        raise ConfigError(f"unknown profile {_show(prof)} (choose one of {', '.join(PROFILES)})")
    models = raw["models"]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not models:
        raise ConfigError(f"params key models: expected a non-empty list of model names, got {_show(models)}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and 0 <= s <= SEED_MAX for s in seeds):
        raise ConfigError(f"params key seeds: expected a non-empty list of integers in [0, {SEED_MAX}], "
                          f"got {_show(seeds)}")
    sections = {name: resolve_section(cls, raw[name], prof, name) for name, cls in _SECTIONS.items()}
    return Params(profile=prof, models=tuple(models), seeds=tuple(seeds), **sections)
