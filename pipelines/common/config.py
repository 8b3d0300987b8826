"""params.yaml -> frozen dataclasses.

Layout of ``params.yaml``: a top-level ``profile`` (smoke | small | paper) and one section
per stage. Inside a section, a key is either common to all profiles or given under each
profile's sub-mapping (``train.smoke.iters``), never both: every value is written once,
so ``dvc exp run -S train.smoke.iters=500`` is unambiguous. All three profiles are
validated on every load, so a typo in the ``paper`` block fails a smoke run too.
Unknown and missing keys are errors naming the key; derived values are properties.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DataConfig:
    root: str  # "" = $INTERIR_DATA, else the scikit-image photos


@dataclass(frozen=True)
class SynthesizeConfig:
    seed: int
    workers: int  # 0 = all cores
    test_fraction: float
    haze_range: tuple[float, float]  # visibility in metres (TANet reading), 0 = off
    rain_range: tuple[float, float]  # TANet streak-seed density
    noise_range: tuple[float, float]  # Gaussian sigma on the 0-255 scale
    depth_proxy: str
    max_train_sources: int  # 0 = all available
    max_test_sources: int
    train_pairs_per_source: int
    crop: int  # sources are centre-cropped to at most crop x crop (0 = keep size)


@dataclass(frozen=True)
class TrainConfig:
    iters: int
    batch: int  # global batch (split across processes under torchrun)
    patch: int
    lr: float
    lr_min: float
    warmup_iters: int
    beta1: float
    beta2: float
    fft_weight: float
    grad_clip: float
    log_every: int
    ckpt_every: int
    num_workers: int
    amp_bf16: bool
    channels_last: bool
    # Intra-op threads of each training process. Fixed here, not guessed from the machine: float sums
    # depend on the thread count, and the weights must not (interir-bench repro runs cores // threads jobs).
    threads: int
    schedule: str  # cosine | wsd | linear (pipelines.engine.loop.lr_at)
    decay_fraction: float  # wsd: the last fraction of a budget decays linearly to lr_min
    # Shorter training budgets branched off the run (wsd only): each gets a checkpoint equal to a separate run
    # of that many steps, so claims can be followed over budget (snapshots/, trajectory.csv).
    budgets: tuple[int, ...]
    optimizer: str  # adam | adamw
    weight_decay: float
    loss: str  # interir.losses.LOSSES
    # shared: every model with the recipe above (equal budgets, the default on the CPU profiles); original:
    # each baseline with its published recipe from its model card (optimiser, rates, schedule, loss, clipping;
    # batch, patch and iterations at the paper profile only)
    recipe: str

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError(f"params key train.threads must be >= 1, got {self.threads}")
        if self.recipe not in ("shared", "original"):
            raise ConfigError(f"params key train.recipe must be shared or original, got {self.recipe!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"params key train.optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"params key train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"params key train.decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.budgets and self.schedule != "wsd":
            raise ConfigError("params key train.budgets needs train.schedule: wsd (only its runs share their "
                              "steps up to each budget's decay)")
        if any(not 0 < b < self.iters for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ConfigError(f"params key train.budgets must be increasing step counts below train.iters "
                              f"({self.iters}), got {list(self.budgets)}")


@dataclass(frozen=True)
class EvaluateConfig:
    tile: int  # 0 = whole image
    tile_overlap: int
    save_images: int  # how many restored images per set to keep for the report
    batch: int  # test pairs per chunk (one forward pass per size); 0 = the model card's eval_batch
    workers: int  # threads that each read, restore and score whole chunks (the rows do not depend on it)
    threads: int  # intra-op threads of each worker (fixed: float sums depend on it)

    def __post_init__(self) -> None:
        if self.batch < 0:
            raise ConfigError(f"params key evaluate.batch must be 0 (the card's) or positive, got {self.batch}")
        for key in ("workers", "threads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"params key evaluate.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class ProfilingConfig:
    size: int  # square input side for MACs and latency (paper: 256)
    paper_preset: bool  # also count params and MACs at the paper preset (meta device, no allocation)
    paper_full: bool  # ... and the fvcore cross-check at the paper preset (real tensors; slow)
    sizing_models: tuple[str, ...]  # profiled beside `models` but never trained (cards with trainable=False)


@dataclass(frozen=True)
class ReportConfig:
    bootstrap: int  # bootstrap resamples of every interval
    ci: float  # interval level
    mlflow_ui: str  # base URL of the MLflow UI the report's run ids link to (`interir-bench ui` serves it)


@dataclass(frozen=True)
class ClusterConfig:
    """Default SLURM resources of ``interir-bench cluster submit`` (its flags override them). No stage reads
    this section, so editing it reruns nothing."""

    partition: str  # "" = the cluster's default partition
    cpus_per_job: int
    gpus_per_job: int  # 0 = CPU jobs; G >= 2 trains under torchrun with G processes (one per GPU)
    mem_gb: int  # 0 = the cluster's default
    time_min: int  # wall-time limit of one job; a training job that reaches it is requeued and resumes
    requeues: int  # how many times a job that ran out of time is requeued (submitit's max_num_timeout)

    def __post_init__(self) -> None:
        for key in ("cpus_per_job", "time_min"):
            if getattr(self, key) < 1:
                raise ConfigError(f"params key cluster.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("gpus_per_job", "mem_gb", "requeues"):
            if getattr(self, key) < 0:
                raise ConfigError(f"params key cluster.{key} must be >= 0, got {getattr(self, key)}")


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


def _coerce(value: Any, typ: Any, where: str) -> Any:
    typ_s = str(typ)
    if typ_s.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = typ.__args__[0] if hasattr(typ, "__args__") else float
        return tuple(_coerce(v, inner, where) for v in value)
    if typ in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML reads 1e-4 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if typ in (str, "str"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def build(cls: type[T], raw: dict[str, Any], where: str, paths: dict[str, str] | None = None) -> T:
    """Instantiate dataclass ``cls`` from ``raw``; unknown or missing keys are errors.

    ``paths`` maps a key to the dotted path it was read from, for error messages.
    """
    paths = paths or {}
    path = lambda k: paths.get(k, f"{where}.{k}")  # noqa: E731
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown params key {path(unknown[0])} (known: {', '.join(fields)})")
    missing = [n for n in fields if n not in raw]
    if missing:
        raise ConfigError(f"missing params key {where}.{missing[0]}")
    hints = _type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], path(k)) for k, v in raw.items()})


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
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    top = {"profile", "models", "seeds", *_SECTIONS}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(f"unknown params key {unknown[0]} in {path} (known: {', '.join(sorted(top))})")
    missing = sorted(top - set(raw))
    if missing:
        raise ConfigError(f"missing params key {missing[0]} in {path}")
    prof = profile or raw["profile"]
    if prof not in PROFILES:
        raise ConfigError(f"unknown profile {prof!r} (choose one of {', '.join(PROFILES)})")
    models = raw["models"]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not models:
        raise ConfigError(f"params key models: expected a non-empty list of model names, got {models!r}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise ConfigError(f"params key seeds: expected a non-empty list of integers, got {seeds!r}")
    sections = {name: resolve_section(cls, raw[name], prof, name) for name, cls in _SECTIONS.items()}
    return Params(profile=prof, models=tuple(models), seeds=tuple(seeds), **sections)
