"""Where each registered model appears in the paper: used for MLflow tags and the report.

Maps a model name to the (table, row label) pairs under which the paper reports it; the
row labels match the reference CSVs in ``pipelines/reference/``.
"""

from __future__ import annotations

PAPER_ROWS: dict[str, tuple[tuple[str, str], ...]] = {
    "interir": (
        ("table1", "InterIR"),
        ("table2", "InterIR"),
        ("table3", "InterIR"),
        ("table4", "InterIR (all modules)"),
        ("table7", "explainable conv"),
        ("table8", "InterIR"),
    ),
    "deepsn_net": (
        ("table1", "DeepSN-Net"),
        ("table3", "DeepSN-Net"),
        ("table4", "DeepSN-Net baseline"),
        ("table5", "DeepSN-Net"),
        ("table8", "DeepSN-Net"),
    ),
    "deepsn_xconv": (("table4", "baseline + explainable conv"), ("table5", "DeepSN-Net + explainable conv")),
    "deepsn_resm": (("table4", "baseline + RESM"),),
    "deepsn_dmum": (("table4", "baseline + DMUM and MUM"),),
    "fdtanet": (("table1", "FDTANet"), ("table5", "FDTANet")),
    "fdtanet_xconv": (("table5", "FDTANet + explainable conv"),),
    "interir_como": (("table7", "CoMo"),),
    "interir_arconv": (("table7", "ARConv"),),
}


def tables_for(model: str) -> str:
    """Comma-separated paper tables a model appears in ("" if none)."""
    return ",".join(t for t, _ in PAPER_ROWS.get(model, ()))


def rows_for(model: str) -> str:
    return "; ".join(f"{t}:{r}" for t, r in PAPER_ROWS.get(model, ()))
