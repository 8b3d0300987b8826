"""``interir-bench profile``: JSON fields, counter agreement, FFT/conv handles, stage mode."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d  # imported here: its first import calls ops no counting mode can see

from pipelines.common.env import UserError
from pipelines.engine import profiling as profile
from pipelines.stages import profile as profile_stage

FIELDS = {"params", "gmacs", "gmacs_fft", "gmacs_flopcounter", "latency_s", "convention"}


def _run(argv, capsys) -> dict:
    assert profile_stage.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _dead_gmacs(model: str, size: int) -> float:
    """MACs of DeepSN-Net's unused prox derivative in its multiplier step (official forward: computed, never used):
    FlopCounterMode counts them (they run), fvcore's JIT trace drops them as dead code."""
    from baselines.deepsn_net import MultiplierUpdate
    from interir.registry import create_model

    with torch.device("meta"):
        net = create_model(model, "smoke")
    positions = (size // net.stride) ** 2
    return sum(conv.in_channels * conv.out_channels * positions for m in net.modules()
               if isinstance(m, MultiplierUpdate) for conv in m.aux.deriv.body if isinstance(conv, nn.Conv2d)) / 1e9


@pytest.mark.parametrize("model", ["interir", "nafnet", "interir_arconv", "deepsn_net"])
def test_cli_json_fields_and_counters_agree(model, capsys):
    """fvcore and FlopCounterMode agree: ARConv's grid sampling (interpolation MACs) and DeepSN-Net's
    BatchNorm (a norm: not counted) are where they used to differ; DeepSN-Net's dead prox derivative is the
    one known difference."""
    res = _run([model, "--preset", "smoke", "--size", "64", "--repeats", "1", "--json"], capsys)
    assert FIELDS <= set(res)
    assert res["params"] > 0 and res["latency_s"] > 0 and res["gmacs"] > 0
    assert res["gmacs"] == res["gmacs_flopcounter"]  # the headline is what the model executes
    assert abs(res["gmacs_fvcore"] + _dead_gmacs(model, 64) - res["gmacs"]) <= 0.01 * res["gmacs"]  # cross-check
    assert "256" in res["convention"] or "SIZE" in res["convention"]


def test_counter_gap_is_explained(capsys):
    """DeepSN-Net computes a prox derivative it never uses: fvcore's trace drops it, the headline counts it,
    and the JSON says why the counters differ (one headline, the same in the CLI and the report)."""
    res = _run(["deepsn_net", "--preset", "smoke", "--size", "64", "--no-latency", "--json"], capsys)
    assert res["gmacs_fvcore"] < res["gmacs"] and res["counter_rel_diff"] > 0
    assert "never used" in res["counter_note"]
    nafnet = _run(["nafnet", "--preset", "smoke", "--size", "64", "--no-latency", "--json"], capsys)
    assert "counter_note" not in nafnet


def test_interir_conv_counted():
    """The explainable conv's functional grouped conv is counted: same MACs as the plain-conv model."""
    from interir.registry import create_model

    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    xc = profile.macs_fvcore(create_model("interir", "smoke"), x)["total"]
    pl = profile.macs_fvcore(create_model("interir", "smoke", conv="plain"), x)["total"]
    assert xc == pl > 0


class _Tricky(nn.Module):
    """Ops fvcore skips by default: padding='same', functional grouped conv, FFTs, pixel shuffles."""

    def __init__(self) -> None:
        super().__init__()
        self.same = nn.Conv2d(3, 8, 3, padding="same")
        self.w = nn.Parameter(torch.randn(8, 4, 3, 3))

    def forward(self, x):
        y = self.same(x)  # 8*3*9 MACs per output pixel
        b, c, h, w = y.shape
        y = F.conv2d(y.reshape(1, b * c, h, w), self.w, padding=1, groups=b * 2).reshape(b, 8, h, w)
        y = torch.fft.irfft2(torch.fft.rfft2(y), s=(h, w))
        y = torch.fft.fft2(y).abs()  # fft2 of a real tensor: torch runs c2c, counted as complex
        return F.pixel_shuffle(F.pixel_unshuffle(y, 2), 2)


def test_handles_count_what_fvcore_skips():
    x = torch.randn(1, 3, 16, 16)
    m = _Tricky()
    fv = profile.macs_fvcore(m, x)
    fc = profile.macs_flopcounter(m, x)
    conv = 16 * 16 * (8 * 27 + 8 * 4 * 9)
    fft = 2 * profile.fft_macs(256, 8, real=True) + profile.fft_macs(256, 8, real=False)
    assert fv["by_operator"]["conv"] == conv == fc["macs"]
    assert fv["by_operator"]["fft"] == pytest.approx(fft, abs=2) and fc["fft"] == pytest.approx(fft)
    assert not any("conv" in op or "fft" in op or "shuffle" in op for op in fv["skipped"])


def test_fft_convention():
    assert profile.fft_macs(1024, 1, real=False) == 2.5 * 1024 * 10
    assert profile.fft_macs(1024, 3, real=True) == 1.25 * 1024 * 10 * 3
    assert profile.fft_macs(1, 5, real=False) == 0
    assert math.isclose(profile.fft_macs(256 * 256, 1, False), 2.5 * 65536 * 16)


def test_unknown_model_is_user_error():
    with pytest.raises(UserError, match="unknown model"):
        profile_stage.main(["nope"])


def test_stage_mode_writes_json(tmp_path, capsys):
    import yaml

    raw = yaml.safe_load(open("params.yaml").read())
    raw.update(profile="smoke", models=["interir", "nafnet"])
    raw["profiling"].update(size=64, paper_preset=True, paper_full=False, sizing_models=["vlunet_sizing"])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    out = tmp_path / "res" / "profile.json"
    assert profile_stage.main(["--stage", "--params", str(params), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"interir", "nafnet", "vlunet_sizing"}  # sizing-only models are profiled, not trained
    for entry in res.values():
        assert set(entry) == {"smoke", "paper"}
        assert FIELDS - {"latency_s"} <= set(entry["smoke"])
        assert "latency_s" not in entry["smoke"] and "machine" not in entry["smoke"]  # no timings: byte-stable
        assert entry["smoke"]["gmacs"] == entry["smoke"]["gmacs_flopcounter"]  # the headline counts what runs
        assert entry["paper"]["params"] > entry["smoke"]["params"]
        assert entry["paper"]["gmacs"] > entry["smoke"]["gmacs"] > 0
    assert 0.95 * 27e6 <= res["interir"]["paper"]["params"] <= 1.05 * 27e6
    first = out.read_bytes()
    assert profile_stage.main(["--stage", "--params", str(params), "--out", str(out)]) == 0
    assert out.read_bytes() == first


class _Deform(nn.Module):
    """A modulated deformable conv (torchvision), which neither fvcore nor FlopCounterMode counts by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Conv2d(4, 27, 3, padding=1)
        self.w = nn.Parameter(torch.randn(6, 4, 3, 3))

    def forward(self, x):
        om = self.offset(x)
        return deform_conv2d(x, om[:, :18], self.w, padding=1, mask=om[:, 18:].sigmoid())


def test_deformable_conv_counted_by_both_counters():
    x = torch.randn(1, 4, 12, 10)
    m = _Deform()
    fv = profile.macs_fvcore(m, x)
    fc = profile.macs_flopcounter(m, x)
    offset = 12 * 10 * 27 * 4 * 9
    deform = 12 * 10 * 6 * 4 * 9 + 4 * 4 * 9 * 12 * 10  # dense conv + 4 MACs per bilinear sample
    assert fv["by_operator"]["deform_conv"] == deform == fc["deform"]
    assert fv["total"] == offset + deform == fc["macs"]
    res = profile.profile_model("airnet", "paper", fvcore=False, latency=False)  # torchvision's op at paper
    assert res["flopcounter_device"] == "meta"
    assert res["gmacs_deform"] == pytest.approx(50 * (64 * 64 * 9 + 4 * 64 * 9) * 256 * 256 / 1e9)
