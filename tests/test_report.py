"""Tests of the report stage: tables, figures, HTML (rendered in headless Chromium), claims verdicts.

The report runs once (module fixture) on a TEST FIXTURE of results: fake but structurally real
per_image.csv files, a profile.json, saved samples, a tiny manifest with real images, untrained
smoke-preset checkpoints and an MLflow SQLite store in a temporary directory. The fixture's
numbers are invented; only the report's handling of them is tested.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.data.manifest import COMBINATIONS
from pipelines.reporting import claims
from pipelines.reporting.inputs import difference
from pipelines.reporting.stats import Estimate, bootstrap, score_matrix, units_of

REPO = Path(__file__).resolve().parents[1]
# Models of the fixture: four with results, one listed without results ("not run").
WITH_RESULTS = {"interir": 1.0, "deepsn_net": 0.0, "deepsn_xconv": 0.5, "fdtanet": -0.5}
NOT_RUN_MODEL = "interir_como"
SOURCES = 10  # 10 source photos, each under every combination (claims.MIN_UNITS is 5)
INPUT_OFFSET = -3.0  # the degraded inputs score below every model: the claims are decidable
MLFLOW_UI = "http://mlflow.example:5000"


def _write_manifest(root: Path) -> list[dict]:
    from skimage import data

    from pipelines.data.imageio import write_image
    from pipelines.data.manifest import MANIFEST_COLUMNS

    photo = data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    rows = []
    for s in range(SOURCES):
        clean = photo[40 * s: 40 * s + 32, 100:132]
        write_image(root / f"clean/src{s}.png", clean)
        for comb in COMBINATIONS:
            f = f"test/{comb.replace('+', '_')}/src{s}.png"
            write_image(root / f, np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1))
            rows.append({"file": f, "target": f"clean/src{s}.png", "source": f"src{s}", "split": "test",
                         "combination": comb, "haze": 100.0 if "haze" in comb else 0.0,
                         "rain": float(rng.uniform(50, 300)) if "rain" in comb else 0.0,
                         "noise": float(rng.uniform(0, 50)) if "noise" in comb else 0.0, "seed": s,
                         "sha256": hashlib.sha256((root / f).read_bytes()).hexdigest(),
                         "target_sha256": hashlib.sha256((root / f"clean/src{s}.png").read_bytes()).hexdigest()})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


def _write_results(base: Path, manifest: list[dict]) -> None:
    import torch

    from interir.registry import create_model, model_args
    from pipelines.data.imageio import write_image
    from pipelines.engine import checkpoint

    rng = np.random.default_rng(1)
    profile = {}
    for model, offset in {**WITH_RESULTS, "input": INPUT_OFFSET}.items():
        rows = []
        for r in manifest:
            base_psnr = 20 + 2 * COMBINATIONS.index(r["combination"]) / 7 + rng.normal(0, 0.3)
            rows.append({"image": r["file"], "set": "MDIR", "combination": r["combination"], "haze": r["haze"],
                         "rain": r["rain"], "noise": r["noise"], "psnr": base_psnr + offset,
                         "ssim": 0.7 + offset / 100, "psnr_y": base_psnr + offset + 1, "ssim_y": 0.75,
                         "runtime_s": 0.01})
        for i in range(6):  # an SDIR set as the evaluate stage names it
            rows.append({"image": str(i + 1), "set": "rain100h", "combination": "", "haze": 0, "rain": 0, "noise": 0,
                         "psnr": 25 + offset, "ssim": 0.8, "psnr_y": 26 + offset + rng.normal(0, 0.2),
                         "ssim_y": 0.82, "runtime_s": 0.01})
        out = base / "results/eval" / (model if model == "input" else f"{model}-s0")
        out.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(out / "per_image.csv", index=False)
        if model == "input":
            continue
        mdir = pd.DataFrame([r for r in rows if r["set"] == "MDIR"])  # two budgets: half the final gain, then all
        pd.concat([mdir.assign(budget=10, psnr=mdir["psnr"] - offset / 2), mdir.assign(budget=20)]).to_csv(
            out / "trajectory.csv", index=False)
        for i in range(len(COMBINATIONS)):  # what the evaluate stage keeps: the first image of each combination
            write_image(out / "samples" / f"MDIR_{i:03d}.png", np.full((32, 32, 3), 0.1 * (i + 1), np.float32))
        profile[model] = {"smoke": {"params": 1000, "gmacs": 0.1, "latency_s": 0.01},
                          "paper": {"params": 24e6 + 3e6 * offset, "gmacs": 86.0 - 60 * offset}}
        if model in ("interir", "deepsn_net"):  # real (untrained) smoke checkpoints for t-SNE, masks, iterates
            torch.manual_seed(0)
            net = create_model(model, "smoke")
            ckpt = base / "results/train" / f"{model}-s0" / "model.pt"
            ckpt.parent.mkdir(parents=True)
            checkpoint.save(ckpt, {"model": model, "model_args": model_args(model, "smoke"), "step": 0,
                                   "model_state": net.state_dict()})
            (ckpt.parent / "curve.csv").write_text("step,loss,lr\n" + "".join(
                f"{10 * s},{1.0 / s:.6f},1e-3\n" for s in range(1, 6)))
    (base / "results/profile.json").write_text(json.dumps(profile))
    latency = {"protocol": "CPU, batch 1, 1x3x256x256, 1 intra-op thread(s)", "machine": {"cpu": "Fixture CPU"},
               "seconds": {"interir": {"paper": 0.5, "smoke": 0.01}}}
    (base / "latency.json").write_text(json.dumps(latency))


def _write_mlflow_runs() -> None:
    import mlflow

    from pipelines.common import tracking

    for model in ("interir", "deepsn_net"):
        tags = tracking.run_tags(model, "smoke", 0, "fixture")
        with tracking.tracked_run("smoke", tracking.run_name(model, "smoke", 0), tags):
            for step in range(1, 6):
                mlflow.log_metric("train/loss", 1.0 / step, step=step * 10)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the report once on the fixture; return paths and the summary."""
    base = tmp_path_factory.mktemp("report_fixture")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "INTERIR_DATA")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    os.environ.pop("INTERIR_DATA", None)
    cwd = os.getcwd()
    try:
        os.chdir(base)  # provenance reads dvc.lock/git from the working directory: none here
        manifest = _write_manifest(base / "datasets/mdir")
        _write_results(base, manifest)
        _write_mlflow_runs()
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw.update(profile="smoke", models=[*WITH_RESULTS, NOT_RUN_MODEL], seeds=[0])
        raw["data"]["root"] = ""
        raw["report"] = {"bootstrap": 200, "ci": 0.95, "mlflow_ui": MLFLOW_UI}
        (base / "params.yaml").write_text(yaml.safe_dump(raw))
        from pipelines.stages import report

        rc = report.main(["--params", "params.yaml", "--out", "reports", "--latency-json", "latency.json"])
        outputs = {p: p.read_bytes() for d in ("tables", "figures") for p in (base / "reports" / d).iterdir()}
        rerun = report.main(["--params", "params.yaml", "--out", "reports", "--latency-json", "latency.json"])
        from pipelines.reporting.paper_runs import log_paper_runs

        again = log_paper_runs("smoke")  # second call must not add runs
        import mlflow

        paper_runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.role = 'paper'")
        all_runs = mlflow.search_runs(search_all_experiments=True)
        rerun_same = rerun == 0 and outputs == {p: p.read_bytes() for p in outputs}
        yield {"base": base, "rc": rc, "out": base / "reports", "again": again, "paper_runs": paper_runs,
               "rerun_same": rerun_same,
               "all_runs": all_runs, "summary": json.loads((base / "reports/summary.json").read_text())}
    finally:
        os.chdir(cwd)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_report_writes_every_table_and_figure(built: dict) -> None:
    from pipelines.reporting.build import FIGURES, table_files

    assert built["rc"] == 0
    out = built["out"]
    for name in table_files():
        assert (out / "tables" / f"{name}.csv").is_file(), name
    magic = {".png": b"\x89PNG", ".jpg": b"\xff\xd8\xff"}
    for name in FIGURES:
        (fig,) = (out / "figures").glob(f"{name}.*")
        assert fig.read_bytes()[:len(magic[fig.suffix])] == magic[fig.suffix], name
    assert {f.suffix for f in (out / "figures").glob("visual_*")} == {".jpg"}  # photos as JPEG
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/') == len(list((out / "figures").iterdir()))
    assert 'src="http' not in page and "<script" not in page  # self-contained


def test_quality_tables_show_the_unrestored_input_and_what_intervals_resample(built: dict) -> None:
    """Tables 1-5 carry the "no restoration" row (the degraded inputs' own scores); every interval names its
    unit; Table 4 carries the deepsn_all control row."""
    from pipelines.reporting import specs

    for spec in specs.reported_tables():
        df = pd.read_csv(built["out"] / "tables" / f"{spec.csv}.csv", keep_default_na=False)
        assert "ci_unit" in df.columns
        with_ci = df[df["ci_low"] != ""]
        assert (with_ci["ci_unit"] != "").all(), spec.id
        rows = df[df["method"] == specs.INPUT_LABEL]
        assert rows.empty != spec.with_input_row, spec.id
        if spec.kind in (specs.MDIR, specs.GAIN):
            assert set(rows["status"]) == {"reproduced"} and set(rows["model"]) == {"input"}
    t1 = pd.read_csv(built["out"] / "tables/table1_mdir.csv", keep_default_na=False)
    avg = t1[(t1["method"] == specs.INPUT_LABEL) & (t1["key"] == "average") & (t1["metric"] == "psnr")].iloc[0]
    inter = t1[(t1["method"] == "InterIR") & (t1["key"] == "average") & (t1["metric"] == "psnr")].iloc[0]
    assert float(inter["ours"]) - float(avg["ours"]) == pytest.approx(1.0 - INPUT_OFFSET, abs=0.1)
    assert avg["ci_unit"] == "source photo" and int(avg["n_units"]) == SOURCES
    t4 = pd.read_csv(built["out"] / "tables/table4_ablation.csv", keep_default_na=False)
    assert set(t4[t4["model"] == "deepsn_all"]["status"]) == {"not run"}  # registered, no results in the fixture


def test_tables_mark_paper_only_and_not_run(built: dict) -> None:
    t1 = pd.read_csv(built["out"] / "tables/table1_mdir.csv", keep_default_na=False)
    assert set(t1[t1["method"] == "Defusion"]["status"]) == {"paper only"}
    assert set(t1[t1["method"] == "Restormer"]["status"]) == {"not run"}  # a harness model without results here
    inter = t1[(t1["method"] == "InterIR") & (t1["metric"] == "psnr")]
    assert set(inter["status"]) == {"reproduced"} and len(inter) == 8
    avg = inter[inter["key"] == "average"].iloc[0]
    assert float(avg["ci_low"]) < float(avg["ours"]) < float(avg["ci_high"])
    assert float(avg["delta"]) == pytest.approx(float(avg["ours"]) - 32.51)
    t7 = pd.read_csv(built["out"] / "tables/table7_conv_alternatives.csv", keep_default_na=False)
    assert set(t7[t7["model"] == NOT_RUN_MODEL]["status"]) == {"not run"}
    t3 = pd.read_csv(built["out"] / "tables/table3_derain_y.csv", keep_default_na=False)
    r100h = t3[(t3["method"] == "InterIR") & (t3["key"] == "Rain100H") & (t3["metric"] == "psnr")].iloc[0]
    assert r100h["status"] == "reproduced" and int(r100h["n_images"]) == 6 and "subset" in r100h["note"]
    assert set(t3[(t3["method"] == "InterIR") & (t3["key"] == "Test100")]["status"]) == {"not available"}
    t2 = pd.read_csv(built["out"] / "tables/table2_dehaze.csv", keep_default_na=False)
    assert set(t2[t2["method"] == "InterIR"]["status"]) == {"not available"}  # no SOTS rows in the fixture
    t8 = pd.read_csv(built["out"] / "tables/table8_resources.csv", keep_default_na=False)
    params = t8[(t8["method"] == "InterIR") & (t8["metric"] == "params_m")].iloc[0]
    assert float(params["ours"]) == pytest.approx(27.0)
    time_s = t8[(t8["method"] == "InterIR") & (t8["metric"] == "time_s")].iloc[0]  # from the latency file
    assert float(time_s["ours"]) == pytest.approx(0.5) and "Fixture CPU" in time_s["note"]


def test_outputs_are_byte_stable(built: dict) -> None:
    """The stage's DVC outputs (tables, figures) are the same bytes on a second run; what changes between runs
    (run ids, time, commit) is only in the files DVC does not hash."""
    assert built["rerun_same"]
    assert (built["out"] / "runs.csv").is_file() and not (built["out"] / "tables" / "runs.csv").exists()


def test_claims_ledger_on_fixture(built: dict) -> None:
    ledger = pd.read_csv(built["out"] / "tables/claims.csv", keep_default_na=False).set_index("id")
    assert ledger.loc["t4_all", "verdict"] == claims.HOLDS  # interir is +1 dB over deepsn_net in the fixture
    assert ledger.loc["t1_fdtanet", "verdict"] == claims.HOLDS
    assert ledger.loc["t7_como", "verdict"] == claims.NOT_RUN
    assert ledger.loc["t8_interir_params", "verdict"] == claims.MATCHED  # 27 M: what the preset was tuned to
    assert ledger.loc["t4_all", "ci_unit"] == "source photo" and ledger.loc["t8_interir_params", "ci_unit"] == ""
    assert ledger.loc["t8_perceive_time", "internal_consistency"] == claims.INCONSISTENT  # 50.2% vs 49.0%
    assert float(ledger.loc["t8_perceive_time", "paper_tables_value"]) == pytest.approx(100 * 0.334 / 0.682)


def test_paper_runs_logged_once(built: dict) -> None:
    runs = built["paper_runs"]
    assert len(runs) == len(built["again"]) and runs["tags.model"].is_unique
    inter = runs[runs["tags.model"] == "interir"].iloc[0]
    assert inter["metrics.MDIR/psnr"] == pytest.approx(32.51)
    assert inter["metrics.MDIR/haze_rain_noise/psnr"] == pytest.approx(30.22)


class _Links(HTMLParser):
    """Element ids, the table of contents' links (inside <nav>) and every other link of a page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.headings: list[str] = []
        self.toc: list[str] = []
        self.links: list[str] = []
        self._nav = 0
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
            if tag in ("h2", "h3", "figure"):
                self.headings.append(a["id"])
        self._nav += tag == "nav"
        if tag == "a" and a.get("href"):
            (self.toc if self._nav else self.links).append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        self._nav -= tag == "nav"


def test_html_contents_link_every_section(built: dict) -> None:
    from pipelines.reporting import specs

    page = _Links((built["out"] / "index.html").read_text())
    assert len(page.ids) == len(set(page.ids))  # anchors are unique
    targets = [h.removeprefix("#") for h in page.toc]
    assert all(h.startswith("#") for h in page.toc) and set(targets) <= set(page.ids)  # every entry lands
    assert set(page.headings) <= set(targets)  # every section, table and figure has an entry
    assert {s.csv for s in specs.reported_tables()} <= set(targets)
    assert {f"fig-{name}" for name in built["summary"]["figures"]} <= set(targets)


def test_run_ids_link_to_the_mlflow_ui(built: dict) -> None:
    runs = built["all_runs"]
    links = set(_Links((built["out"] / "index.html").read_text()).links)
    assert len(runs) == len(built["paper_runs"]) + 2  # the paper's rows and the two training runs
    for _, r in runs.iterrows():
        assert f"{MLFLOW_UI}/#/experiments/{r['experiment_id']}/runs/{r['run_id']}" in links, r["tags.mlflow.runName"]


def test_html_renders_in_chromium(built: dict, tmp_path: Path) -> None:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not on PATH (apt-get install chromium; .ci/run installs it)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (built["out"] / "index.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    from pipelines.reporting import specs

    tables = specs.reported_tables()
    for spec in tables:
        assert spec.name + ":" in dom, spec.title
    assert "Claims ledger" in dom and "not run" in dom and "paper only" in dom
    assert dom.count("<table") >= len(tables) + 4  # + provenance, claims, consistency, runs
    assert dom.count("<img") == len(built["summary"]["figures"])


# --------------------------------------------------------------------------- verdict logic (unit)


def _est(v: float, lo: float, hi: float) -> Estimate:
    return Estimate(v, lo, hi, 70, 1, 10, "source photo")


@pytest.mark.parametrize(("est", "paper", "expected"), [
    (_est(0.5, 0.2, 0.8), 0.72, claims.HOLDS),
    (_est(-0.5, -0.8, -0.2), 0.72, claims.FAILS),
    (_est(0.1, -0.2, 0.4), 0.72, claims.INCONCLUSIVE),
    (_est(-0.3, -0.5, -0.1), -0.38, claims.HOLDS),   # a loss claim (CoMo -0.38 dB)
    (_est(0.3, 0.1, 0.5), -0.38, claims.FAILS),
    (Estimate(float("nan"), float("nan"), float("nan"), 0, 0), 0.72, claims.NOT_RUN),
    (Estimate(0.4, float("nan"), float("nan"), 7, 1, 1), 0.72, claims.INCONCLUSIVE),  # one unit: no interval
    (Estimate(0.5, 0.2, 0.8, 70, 1, claims.MIN_UNITS - 1), 0.72, claims.INCONCLUSIVE),  # too few units
])
def test_verdict_gain(est: Estimate, paper: float, expected: str) -> None:
    assert claims.verdict_gain(est, paper) == expected


def test_verdict_all_and_count() -> None:
    assert claims.verdict_all([claims.HOLDS] * 7) == claims.HOLDS
    assert claims.verdict_all([claims.HOLDS] * 6 + [claims.INCONCLUSIVE]) == claims.INCONCLUSIVE
    assert claims.verdict_all([claims.HOLDS] * 6 + [claims.FAILS]) == claims.FAILS
    assert claims.verdict_all([claims.NOT_RUN] * 7) == claims.NOT_RUN
    assert claims.verdict_all([claims.HOLDS] * 6 + [claims.BELOW_INPUT]) == claims.BELOW_INPUT
    assert claims.verdict_count(10.4, 10.0, 0.25) == claims.HOLDS
    assert claims.verdict_count(10.4, 10.0, 0.25, by_construction=True) == claims.MATCHED
    assert claims.verdict_count(1.0, 10.0, 0.25, by_construction=True) == claims.FAILS
    assert claims.verdict_count(1.0, 10.0, 0.25) == claims.FAILS
    assert claims.verdict_count(float("nan"), 10.0, 0.25) == claims.NOT_RUN
    assert claims.verdict_control(_est(0.5, 0.2, 0.8)) == claims.CONTROL_UP
    assert claims.verdict_control(_est(-0.5, -0.8, -0.2)) == claims.CONTROL_DOWN
    assert claims.verdict_control(_est(0.1, -0.2, 0.4)) == claims.CONTROL_NULL


def _scored(offsets: dict[str, float], n_sources: int = 12) -> pd.DataFrame:
    """Per-image rows of models (and the input) on an MDIR-like set: source effects shared, constant offsets."""
    rng = np.random.default_rng(0)
    effect = rng.normal(20, 2, n_sources)
    return pd.DataFrame([{"model": m, "seed": 0, "set": "MDIR", "combination": c, "image": f"test/{c}/s{s}.png",
                          "unit": f"s{s}", "psnr": effect[s] + off + rng.normal(0, 0.05)}
                         for m, off in offsets.items() for c in COMBINATIONS for s in range(n_sources)])


def test_quality_claims_below_the_input_are_undecidable() -> None:
    """A comparison between models that do not beat the unrestored input says nothing about restoration: the
    ledger calls it undecidable, whichever way the difference points; above the input the usual rule applies."""
    ledger = claims.load_claims()
    t4 = ledger[ledger["id"] == "t4_all"]  # interir vs deepsn_net, haze+rain+noise, paper +1.11 dB
    below = _scored({"input": 0.0, "interir": -0.5, "deepsn_net": -1.5})  # interir "wins" but damages images
    row = claims.evaluate_claims(below, {}, 300, 0.95, t4).iloc[0]
    assert row["verdict"] == claims.BELOW_INPUT and "interir" in row["detail"] and row["ours"] > 0
    above = _scored({"input": 0.0, "interir": 2.0, "deepsn_net": 1.0})
    row = claims.evaluate_claims(above, {}, 300, 0.95, t4).iloc[0]
    assert row["verdict"] == claims.HOLDS and row["ci_unit"] == "source photo"
    one_below = _scored({"input": 0.0, "interir": 2.0, "deepsn_net": -0.2})
    assert claims.evaluate_claims(one_below, {}, 300, 0.95, t4).iloc[0]["verdict"] == claims.BELOW_INPUT
    no_inputs = above[above["model"] != "input"]  # inputs not scored: the rule cannot apply
    assert claims.evaluate_claims(no_inputs, {}, 300, 0.95, t4).iloc[0]["verdict"] == claims.HOLDS


def test_size_claims_tuned_by_construction_say_so() -> None:
    ledger = claims.load_claims().set_index("id")
    tuned = {"t8_interir_params", "t8_interir_macs", "t8_macs_ratio", "t8_deepsn_more", "t7_como_params",
             "t7_arconv_params"}
    assert {i for i, c in ledger["construction"].items() if c} == tuned
    profile = {"interir": {"paper": {"params": 27.0e6, "gmacs": 22.0}},
               "deepsn_net": {"paper": {"params": 22.7e6, "gmacs": 80.3}}}
    out = claims.evaluate_claims(pd.DataFrame(), profile, 10, 0.95).set_index("id")
    assert out.loc["t8_interir_params", "verdict"] == claims.MATCHED
    assert out.loc["t8_deepsn_params", "verdict"] == claims.HOLDS  # an independent match (official code)


def test_internal_checks_against_paper_tables() -> None:
    assert claims.internal_check("diff", "table4_ablation[variant=baseline + explainable conv].psnr",
                                 "table4_ablation[variant=DeepSN-Net baseline].psnr", 0.72, 0.011) \
        == (pytest.approx(0.72), claims.CONSISTENT)
    value, result = claims.internal_check("ratio_pct", "table8_resources[method=InterIR].time_s",
                                          "table8_resources[method=Perceive-IR].time_s", 50.2, 0.1)
    assert result == claims.INCONSISTENT and value == pytest.approx(48.97, abs=0.01)
    n, result = claims.internal_check("count_ge", "table3_derain_y[method=InterIR;testset!=average].psnr@testset",
                                      "table3_derain_y[method!=InterIR;testset!=average].psnr@testset", 4, 0)
    assert n == 3 and result == claims.INCONSISTENT  # Rain100H: 31.50 < EfDeRain+ 34.57
    checks = claims.consistency_checks()
    assert len(checks) > 40 and (checks["result"] == claims.CONSISTENT).all()  # averages agree within rounding
    with pytest.raises(ValueError):
        claims.select_paper("table1_mdir[method=Nobody].psnr")


def test_claims_csv_is_well_formed() -> None:
    from interir.registry import list_models

    df = claims.load_claims()
    assert df["id"].is_unique
    known = set(list_models()) | {""}
    assert set(df["model_a"]) <= known and set(df["model_b"]) <= known
    kinds = {"gain", "gain_all", "control", "params", "macs", "params_delta", "macs_ratio", "paper_only"}
    assert set(df["kind"]) <= kinds
    for r in df[df["paper_op"] != ""].itertuples():  # every paper selector resolves
        claims.internal_check(r.paper_op, r.paper_a, r.paper_b, float(r.paper_value), float(r.paper_tolerance))


def test_bootstrap_paired_and_over_seeds() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(25, 3, size=40)  # large spread between images, constant offset between models
    rows = []
    for model, off, seeds in (("a", 0.3, (0, 1, 2)), ("b", 0.0, (0,))):
        for s in seeds:
            for i, v in enumerate(base):
                rows.append({"model": model, "seed": s, "set": "MDIR", "combination": "noise", "image": f"i{i}",
                             "psnr": v + off + rng.normal(0, 0.05)})
    df = pd.DataFrame(rows)
    d = difference(df, "a", "b", "MDIR", "psnr", 500, 0.95)
    assert d.low > 0.1 and d.high < 0.5 and d.seeds == 1 and d.n == 40  # pairing removes the image spread
    assert d.units == 40 and d.resampled == "source photo"  # no unit column: each image is its own source
    a = df[df.model == "a"]
    unpaired = bootstrap([score_matrix(a, "psnr")], [1.0], units_of(a), 500, 0.95)
    assert unpaired.seeds == 3 and unpaired.high - unpaired.low > d.high - d.low
    assert claims.verdict_gain(d, 0.72) == claims.HOLDS


# --------------------------------------------------------------------------- the table-spec registry


def test_specs_name_real_reference_rows() -> None:
    """Every spec's CSV, columns and baseline labels exist; every kind and layout has a builder and a view."""
    from pipelines.reporting import page, paper_runs, specs, tables
    from pipelines.reporting.inputs import reference_table

    assert len({s.id for s in specs.TABLES}) == len(specs.TABLES)
    for s in specs.TABLES:
        ref = reference_table(s.csv)
        assert s.label_col in ref.columns and (not s.key_col or s.key_col in ref.columns), s.id
        if not s.reported:
            continue
        assert s.kind in tables.BUILDERS and s.kind in paper_runs.METRICS and s.layout in page.VIEWS, s.id
        columns = {c for c, _ in s.quantities} | ({s.gain_col, "psnr"} if s.kind == specs.GAIN else
                                                   {p for p, _ in s.metrics})
        assert columns <= set(ref.columns), s.id
        harness = {label for label, _ in s.harness_rows}
        assert {lbl for pair in s.baseline_of for lbl in pair} <= set(ref[s.label_col]) | harness, s.id


def test_card_paper_rows_are_reference_rows() -> None:
    """Model cards say where the paper reports them; model_for reads it back."""
    from interir.registry import get_card, list_models
    from pipelines.reporting import specs
    from pipelines.reporting.inputs import reference_table

    for name in list_models():
        for table, label in get_card(name).paper_rows:
            s = specs.spec(table)
            assert label in set(reference_table(s.csv)[s.label_col]), (name, table, label)
            assert specs.model_for(table, label) == name
    assert specs.model_for("table1", "Restormer") == "restormer"
    assert specs.model_for("table1", "Defusion") == ""  # a method the harness does not train


NEW_TABLE = """method,testset,psnr,ssim
NewNet,Rain100L,38.50,0.980
NewNet,Test100,31.00,0.910
NewNet,average,34.75,0.945
"""


def test_a_paper_table_is_one_csv_and_one_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a table of an existing kind the documented way (docs/report.md) reaches every consumer."""
    from pipelines.common.config import load_params
    from pipelines.reporting import build, inputs, page, paper_runs, specs, tables

    before = inputs.reference_hash()
    ref = tmp_path / "reference"  # a copy of the reference folder with the new CSV
    ref.mkdir()
    for f in inputs.reference_dir().iterdir():
        (ref / f.name).write_bytes(f.read_bytes())
    (ref / "table9_denoise.csv").write_text(NEW_TABLE)
    new = specs.TableSpec(id="table9", csv="table9_denoise", kind=specs.SDIR, layout=specs.WIDE,
                          title="Table 9: a new test table (PSNR dB / SSIM)")
    monkeypatch.setattr(inputs, "reference_dir", lambda: ref)
    monkeypatch.setattr(specs, "TABLES", (*specs.TABLES, new))

    assert inputs.reference_hash() != before
    per_image = inputs.load_per_image(tmp_path / "no_results", ["interir"], [0])
    tabs = tables.build_all(tables.Results(per_image, ["interir"], {}, "smoke", "cpu", 0, 0.95))
    t9 = tabs["table9_denoise"]
    paper_rows = t9[t9["method"] != specs.INPUT_LABEL]
    assert list(tabs)[-1] == "table9_denoise" and set(paper_rows["status"]) == {"paper only"}
    assert set(t9[t9["method"] == specs.INPUT_LABEL]["status"]) == {"not run"}  # no inputs scored here
    assert paper_rows[(paper_rows["key"] == "Rain100L") & (paper_rows["metric"] == "psnr")]["paper"].item() == 38.5
    assert "table9_denoise" in build.table_files()
    assert paper_runs.paper_metrics()["NewNet"] == {"rain100l/psnr": 38.5, "rain100l/ssim": 0.98,
                                                   "test100/psnr": 31.0, "test100/ssim": 0.91,
                                                   "average/psnr": 34.75, "average/ssim": 0.945}
    checks = claims.consistency_checks()
    assert "Table 9 NewNet: average PSNR = mean of the 2 test sets" in set(checks["check"])

    ledger = claims.evaluate_claims(per_image, {}, 0, 0.95)
    context = build.page_context(load_params(REPO / "params.yaml", "smoke"), {}, tabs, ledger, checks, {}, {},
                                 pd.DataFrame(), pd.DataFrame(columns=["run_id"]), [], ["interir"])
    html = page.render(context)
    links = _Links(html)
    assert "table9_denoise" in links.ids and "#table9_denoise" in links.toc and new.title in html


def test_claim_trajectories_trends_and_the_cost_of_deciding(built: dict) -> None:
    """Each MDIR quality claim is measured at every budget (the fixture's interir gains half its final margin over
    deepsn_net at the shorter budget); a claim still moving says which way; the figure is drawn."""
    traj = pd.read_csv(built["out"] / "tables/claim_trajectories.csv")
    t4 = traj[traj["claim"] == "t4_all"].set_index("budget")
    assert list(t4.index) == [10, 20] and set(t4["ci_unit"]) == {"source photo"}
    assert t4.loc[10, "delta"] == pytest.approx(0.5, abs=0.15) and t4.loc[20, "delta"] == pytest.approx(1.0, abs=0.15)
    ledger = pd.read_csv(built["out"] / "tables/claims.csv", keep_default_na=False).set_index("id")
    assert ledger.loc["t4_all", "trend"].startswith("still moving: up")
    assert (built["out"] / "figures/trajectories.png").is_file()


def test_trend_and_power_rules() -> None:
    from pipelines.reporting import trajectories

    traj = pd.DataFrame({"claim": ["c"] * 3, "budget": [1, 2, 4], "delta": [0.1, 0.5, 0.55],
                         "low": [0, 0.3, 0.35], "high": [0.2, 0.7, 0.75]})
    assert trajectories.trend(traj, "c") == "stable at this scale"  # moved 0.05 < half-width 0.2
    assert trajectories.trend(traj.iloc[:2], "c").startswith("still moving: up")
    # A 0.1 dB effect whose per-photo differences spread by 0.5 dB: 12 photos cannot decide it; about
    # (0.5 / (0.1 / 2.8))^2 = 196 photos would (at one seed, no seed spread).
    rng = np.random.default_rng(3)
    diff = 0.1 + rng.normal(0, 0.5, 12)
    diff = 0.1 + (diff - diff.mean()) / diff.std(ddof=1) * 0.5  # exactly mean 0.1, sd 0.5
    rows = [{"model": m, "seed": 0, "set": "MDIR", "combination": "haze+rain+noise", "image": f"s{u}.png",
             "unit": f"s{u}", "psnr": 20 + (diff[u] if m == "interir" else 0)}
            for m in ("interir", "deepsn_net") for u in range(12)]
    c = claims.load_claims().query("id == 't4_all'").assign(paper_value=0.1)
    need = trajectories.power(pd.DataFrame(rows), c).iloc[0]
    assert need["units_now"] == 12 and need["unit_sd"] == pytest.approx(0.5) and not need["decidable_now"]
    assert need["units_needed_at_these_seeds"] == pytest.approx((0.5 * trajectories.Z_DECIDE / 0.1) ** 2, abs=1.5)
    assert f"{need['units_needed_at_these_seeds']} source photos" in trajectories.power_text(need)
    assert pd.isna(need["seeds_needed_at_these_units"])  # one seed, no seed spread: seeds cannot help
    # (a row from a DataFrame carries NaN, not None, where a count is undefined: the text still reads)


def test_ledger_builds_when_no_claim_has_results() -> None:
    """One model run (no claim can be scored): power has no rows but its columns, and the ledger gets empty trend
    and cost columns instead of the report stage failing (the slow workflow test's one-model project)."""
    from pipelines.reporting import build, trajectories

    rows = [{"model": "nafnet", "seed": 0, "set": "MDIR", "combination": "haze", "image": f"s{u}.png",
             "unit": f"s{u}", "psnr": 20.0} for u in range(4)]
    need = trajectories.power(pd.DataFrame(rows), claims.load_claims())
    assert need.empty and "claim" in need.columns
    ledger = pd.DataFrame({"id": ["t4_all"], "verdict": [claims.INCONCLUSIVE]})
    out = build.with_trends_and_power(ledger, pd.DataFrame(), pd.DataFrame(rows))
    assert out.loc[0, "to_decide"] == "" and out.loc[0, "trend"] == ""


def test_level_figure_takes_any_number_of_models() -> None:
    """Eleven models and the input (the smoke pipeline's) each get their own colour."""
    from pipelines.reporting import figures

    rows = [{"model": f"m{i}", "set": "MDIR", "combination": "haze+rain+noise", "image": f"i{j}", "haze": 60 + j,
             "rain": 50 + j, "noise": j, "psnr": 20 + i + j / 10} for i in range(12) for j in range(4)]
    fig = figures.fig_levels(pd.DataFrame(rows))
    assert fig is not None
    assert figures.render(fig, "levels").data[:4] == b"\x89PNG"


def test_sensitivity_scores_each_claim_on_its_own_set_with_an_interval_of_the_shift() -> None:
    """A variant 0.3 dB better than interir everywhere shifts an interir-first claim by +0.3 and a claim with
    interir second by -0.3, each with an interval of the shift that excludes 0; a Rain100H claim is scored on
    Rain100H, not on MDIR (where the variant is no different here)."""
    from pipelines.reporting import claims, trajectories

    rng = np.random.default_rng(5)
    rows = []
    photo = rng.normal(20, 1, 12)  # a test image's difficulty is the same for every model and seed
    for s in range(3):
        for u in range(12):
            base = photo[u]
            for m, off in (("interir", 0.0), ("interir_xtau", 0.3), ("deepsn_net", -0.2), ("interir_como", 0.1)):
                noise = rng.normal(0, 0.02)
                rows.append({"model": m, "seed": s, "set": "MDIR", "combination": "haze+rain+noise",
                             "image": f"s{u}.png", "unit": f"s{u}", "psnr": base + off + noise, "psnr_y": base})
                rows.append({"model": m, "seed": s, "set": "rain100h", "combination": "", "image": f"r{u}.png",
                             "unit": f"r{u}", "psnr": base, "psnr_y": base + off + noise})
    c = claims.load_claims().query("id in ['t4_all', 't7_como', 't3_deepsn']")
    sens = trajectories.sensitivity(pd.DataFrame(rows), c, 300, 0.95).set_index(["claim", "variant"])
    first, second, rain = (sens.loc[(k, "interir_xtau")] for k in ("t4_all", "t7_como", "t3_deepsn"))
    assert first["shift"] == pytest.approx(0.3, abs=0.02) and first["low"] > 0 and first["high"] > first["shift"]
    assert second["shift"] == pytest.approx(-0.3, abs=0.02) and second["high"] < 0 and second["low"] < second["shift"]
    assert rain["shift"] == pytest.approx(0.3, abs=0.02) and rain["low"] > 0 and rain["ci_unit"].startswith("image")
