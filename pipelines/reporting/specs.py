"""The paper's tables, one :class:`TableSpec` each, in :data:`TABLES` (the report's order).

Everything that iterates over the paper's tables iterates over :data:`TABLES`: the report's
tables (:func:`pipelines.reporting.tables.build_all`), their HTML, the MLflow paper runs
(:func:`pipelines.reporting.paper_runs.paper_metrics`), the reference hash, the claims'
generated consistency checks and ``interir-bench models NAME``. Adding a paper table of an
existing kind is one reference CSV in ``reference/`` plus one entry here (docs/report.md).

Which registered model a row label stands for comes from the model cards
(``ModelCard.paper_rows``, in each model's own module): :func:`model_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# Kinds: the table shapes the builders know (pipelines.reporting.tables.BUILDERS).
MDIR = "mdir"  # methods x the seven combinations + average, PSNR/SSIM (Table 1)
SDIR = "sdir"  # methods x real single-degradation test sets (Tables 2, 3)
GAIN = "gain"  # a PSNR column with gains of rows over baseline rows (Tables 4, 5, 7)
RESOURCES = "resources"  # time, parameters, MACs and quality per method (Table 8)
REFERENCE = "reference"  # quoted for the data and the claims, not reported (Table 6)

# HTML layouts (the macros of templates/report.html.j2).
WIDE = "wide"  # per method a paper line and ours / delta / CI lines; one column per key
QUANTITIES = "quantities"  # WIDE with one column per metric; notes listed under the table
LONG = "long"  # one row per (method, metric)

INPUT_LABEL = "no restoration (degraded input)"
DEEPSN_ALL_LABEL = "baseline + all three modules (harness control)"  # the row of the degraded inputs' own scores

# Our SDIR set names (lower case, as pipelines.data.sdir names them) -> the paper's test-set label.
SDIR_LABELS = {"sots-indoor": "SOTS-Indoor", "sots-outdoor": "SOTS-Outdoor", "rain100h": "Rain100H",
               "rain100l": "Rain100L", "test100": "Test100", "test1200": "Test1200"}


@dataclass(frozen=True)
class TableSpec:
    """One paper table: where its numbers are, its shape and what the builder of its kind needs.

    ``metrics`` pairs a paper column with the metric key we compute for it (``psnr_y`` for a Y-channel
    table); ``baseline_of`` pairs a row label with the label of the row its gain is measured against;
    ``quantities`` pairs a resources column with its ``profile.json`` key; ``harness_rows`` adds rows the
    paper does not have, as (label, model) pairs (their paper numbers are empty; a label in ``baseline_of``
    gets its gain row too). MDIR, SDIR and GAIN tables also get the "no restoration" row: the degraded inputs
    scored against their targets (:data:`INPUT_LABEL`).
    """

    id: str  # "table4": the id model cards use in paper_rows
    csv: str  # reference CSV stem in reference/, also the report's table file name and HTML anchor
    title: str
    kind: str
    layout: str = LONG
    label_col: str = "method"  # the reference CSV's row-label column
    metrics: tuple[tuple[str, str], ...] = (("psnr", "psnr"), ("ssim", "ssim"))  # MDIR, SDIR, RESOURCES
    subset_note: str = ""  # SDIR: note on our subset, formatted with n = its number of images
    combination: str = ""  # GAIN: the MDIR combination of the PSNR column, or "average"
    baseline_of: tuple[tuple[str, str], ...] = ()  # GAIN
    gain_col: str = ""  # GAIN: the paper's gain column, also the metric name of our gain rows
    extra_params: bool = False  # GAIN: rows with extra_params_m get ours from the paper-preset counts
    quantities: tuple[tuple[str, str], ...] = ()  # RESOURCES
    harness_rows: tuple[tuple[str, str], ...] = ()  # MDIR, SDIR, GAIN: (label, model) rows not in the paper

    @property
    def name(self) -> str:
        """The table's name in the paper's words, e.g. ``Table 4`` (for messages)."""
        return f"Table {self.id.removeprefix('table')}"

    @property
    def key_col(self) -> str:
        """The reference CSV's column of per-row keys: the MDIR combination or the SDIR test set ("" otherwise)."""
        return {MDIR: "combination", SDIR: "testset"}.get(self.kind, "")

    @property
    def with_input_row(self) -> bool:
        """Whether the table gets the "no restoration" row (the quality tables; not resources or reference)."""
        return self.kind in (MDIR, SDIR, GAIN)

    @property
    def reported(self) -> bool:
        """Whether the report builds this table (reference-only tables are quoted, not reported)."""
        return self.kind != REFERENCE


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        id="table1", csv="table1_mdir", kind=MDIR, layout=WIDE,
        title="Table 1: MDIR, seven degradation combinations and their average (PSNR dB / SSIM, RGB)",
    ),
    TableSpec(
        id="table2", csv="table2_dehaze", kind=SDIR, layout=WIDE,
        title="Table 2: dehazing, SOTS (PSNR dB / SSIM, RGB)",
        subset_note="{n}-image subset of SOTS-indoor (500 in the paper); trained on MDIR, not on ITS",
    ),
    TableSpec(
        id="table3", csv="table3_derain_y", kind=SDIR, layout=WIDE,
        title="Table 3: deraining (PSNR dB / SSIM on the Y channel)",
        metrics=(("psnr", "psnr_y"), ("ssim", "ssim_y")),
        subset_note="{n}-image subset of Rain100H (100 in the paper); trained on MDIR, not on the rain sets",
    ),
    TableSpec(
        id="table4", csv="table4_ablation", kind=GAIN, label_col="variant",
        title="Table 4: ablation ladder on DeepSN-Net (PSNR dB, haze+rain+noise column of Table 1)",
        combination="haze+rain+noise", gain_col="gain_db",
        baseline_of=(("baseline + explainable conv", "DeepSN-Net baseline"),
                     ("baseline + RESM", "DeepSN-Net baseline"),
                     ("baseline + DMUM and MUM", "DeepSN-Net baseline"),
                     ("InterIR (all modules)", "DeepSN-Net baseline"),
                     (DEEPSN_ALL_LABEL, "DeepSN-Net baseline")),
        # The control the ladder lacks: the three modules on, nothing else changed (claims t4_modules and
        # t4_architecture separate it from what the rest of InterIR's architecture adds).
        harness_rows=((DEEPSN_ALL_LABEL, "deepsn_all"),),
    ),
    TableSpec(
        id="table5", csv="table5_transplant", kind=GAIN,
        title="Table 5: the explainable convolution transplanted (PSNR dB, haze+rain+noise column)",
        combination="haze+rain+noise", gain_col="gain_db",
        baseline_of=(("FDTANet + explainable conv", "FDTANet"), ("DeepSN-Net + explainable conv", "DeepSN-Net")),
    ),
    TableSpec(
        id="table6", csv="table6_mdir_levels", kind=REFERENCE, label_col="combination",
        title="Table 6: degradation levels of the MDIR set",
    ),
    TableSpec(
        id="table7", csv="table7_conv_alternatives", kind=GAIN, label_col="conv",
        title="Table 7: alternatives to the explainable convolution (PSNR dB, 7-combination average; extra "
              "parameters in M)",
        combination="average", gain_col="delta_db", extra_params=True,
        baseline_of=(("CoMo", "explainable conv"), ("ARConv", "explainable conv")),
    ),
    TableSpec(
        id="table8", csv="table8_resources", kind=RESOURCES, layout=QUANTITIES,
        title="Table 8: time, parameters, MACs, PSNR, SSIM (7-combination average)",
        quantities=(("time_s", "latency_s"), ("params_m", "params"), ("gflops", "gmacs")),
    ),
)


def spec(table: str) -> TableSpec:
    """The spec with id ``table`` (``table4``)."""
    for s in TABLES:
        if s.id == table:
            return s
    raise KeyError(f"no paper table {table!r}; known: {', '.join(s.id for s in TABLES)}")


def reported_tables() -> tuple[TableSpec, ...]:
    """The tables the report builds, in order."""
    return tuple(s for s in TABLES if s.reported)


@cache
def _rows_index() -> dict[tuple[str, str], str]:
    """(table id, row label) -> registered model, from every model card's ``paper_rows``."""
    from interir.registry import get_card, list_models

    return {row: name for name in list_models() for row in get_card(name).paper_rows}


def model_for(table: str, label: str) -> str:
    """The harness model the paper reports under ``label`` in table ``table`` (id); "" if the harness lacks it."""
    return _rows_index().get((table, label), "")
