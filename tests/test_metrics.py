"""Metric calibration: closed forms, scikit-image (MATLAB convention) and pyiqa (reference backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import color, data, filters
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from pipelines.engine.metrics import Scorer, gaussian_1d, psnr, psnr_closed_form, rgb_to_y, ssim_fast, ssim_per_channel

pytestmark = pytest.mark.calibration


def _t(a: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float (1,3,H,W) in [0,1]."""
    return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, distorted, reference) uint8 pairs: noise, blur, rain-like streaks, flat, saturated, odd size."""
    rng = np.random.default_rng(0)
    out = []
    for name, img in (("astronaut", data.astronaut()), ("coffee", data.coffee()), ("chelsea", data.chelsea())):
        ref = img[40:136, 60:188]  # 96 x 128
        noisy = np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255).round().astype(np.uint8)
        blur = (filters.gaussian(ref, sigma=2, channel_axis=-1, preserve_range=True)).round().astype(np.uint8)
        out += [(f"{name}-noise", noisy, ref), (f"{name}-blur", blur, ref)]
    ref = data.astronaut()[100:153, 200:237]  # odd size 53 x 37
    streaks = ref.copy()
    streaks[:, ::5] = np.clip(streaks[:, ::5].astype(int) + 80, 0, 255)
    out.append(("odd-streaks", streaks, ref))
    flat = np.full((32, 40, 3), 128, np.uint8)
    out.append(("flat-vs-noise", np.clip(flat + rng.normal(0, 5, flat.shape), 0, 255).astype(np.uint8), flat))
    sat = np.zeros((32, 32, 3), np.uint8)
    sat[:, 16:] = 255
    out.append(("saturated", np.clip(sat.astype(int) + rng.integers(-3, 4, sat.shape), 0, 255).astype(np.uint8),
                sat))
    return out


PAIRS = _pairs()


@pytest.fixture(scope="module")
def scorers() -> dict[str, Scorer]:
    return {"fast": Scorer(backend="fast"), "pyiqa": Scorer(backend="pyiqa")}


def _y_matlab(a: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma on uint8 input, rounded to integers as MATLAB's uint8 output."""
    return np.round(color.rgb2ycbcr(a)[..., 0])


def test_psnr_is_pyiqas_bit_for_bit() -> None:
    from pyiqa.archs.psnr_arch import psnr as pyiqa_psnr

    g = torch.Generator().manual_seed(3)
    for data_range in (1.0, 255.0):
        x = torch.round(torch.rand(3, 3, 37, 29, generator=g) * 255) / 255 * data_range
        y = torch.round(torch.rand(3, 3, 37, 29, generator=g) * 255) / 255 * data_range
        for a, b in ((x, y), (x, x), (y, x)):
            assert torch.equal(psnr(a, b, data_range=data_range),
                               pyiqa_psnr(a, b, test_y_channel=False, data_range=data_range))


def test_stage_imports_skip_pyiqa_and_torchvision() -> None:
    """What every train and evaluate process loads (the registry with every model, the fast scorer) imports neither
    pyiqa nor torchvision, which pulls torch._dynamo: 2.5 s per process."""
    import subprocess
    import sys

    code = ("import sys, torch; from interir.registry import create_model, list_models; "
            "from pipelines.engine.metrics import Scorer; "
            "[create_model(m, 'smoke') for m in list_models() if m == 'airnet']; "
            "Scorer()(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)); "
            "print(len(list_models()) > 10, sorted(m for m in ('pyiqa', 'torchvision') if m in sys.modules))")
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "True []"


@pytest.mark.parametrize("backend", ["fast", "pyiqa"])
def test_psnr_matches_closed_form(scorers: dict[str, Scorer], backend: str) -> None:
    rng = np.random.default_rng(1)
    ref = rng.integers(10, 246, (40, 56, 3)).astype(np.uint8)
    delta = rng.choice([-3, 0, 2], ref.shape)
    dist = (ref.astype(int) + delta).astype(np.uint8)
    mse = float(np.mean((delta / 255.0) ** 2))
    got = scorers[backend](_t(dist), _t(ref))
    assert got["psnr"].item() == pytest.approx(psnr_closed_form(mse), abs=1e-4)  # pyiqa's eps = 1e-8 included
    # Without the eps: 10 log10(1 + eps/mse) = 6.6e-4 dB here (at 41.8 dB); it grows with PSNR.
    assert got["psnr"].item() == pytest.approx(10 * math.log10(1.0 / mse), abs=1e-3)
    same = scorers[backend](_t(ref), _t(ref))
    assert same["psnr"].item() == pytest.approx(80.0, abs=1e-4)  # eps cap, range 1
    assert same["psnr_y"].item() == pytest.approx(psnr_closed_form(0.0, 255.0), abs=1e-3)  # 128.13 dB
    assert same["ssim"].item() == pytest.approx(1.0, abs=1e-6) and same["ssim_y"].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("backend", ["fast", "pyiqa"])
@pytest.mark.parametrize("name", [p[0] for p in PAIRS])
def test_matches_matlab_convention_via_skimage(scorers: dict[str, Scorer], backend: str, name: str) -> None:
    dist, ref = next((d, r) for n, d, r in PAIRS if n == name)
    got = scorers[backend](_t(dist), _t(ref))
    yd, yr = _y_matlab(dist), _y_matlab(ref)
    ssim_kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert got["psnr_y"].item() == pytest.approx(peak_signal_noise_ratio(yr, yd, data_range=255), abs=1e-3)
    assert got["ssim_y"].item() == pytest.approx(structural_similarity(yr, yd, **ssim_kw), abs=1e-3)
    # RGB PSNR is on the [0,1] scale, where pyiqa's eps (1e-8) is visible above ~40 dB: compare with it included.
    mse = mean_squared_error(ref / 255.0, dist / 255.0)
    assert got["psnr"].item() == pytest.approx(psnr_closed_form(mse), abs=1e-3)
    assert psnr_closed_form(mse, eps=0.0) == pytest.approx(peak_signal_noise_ratio(ref, dist, data_range=255))
    ssim_rgb = structural_similarity(ref.astype(np.float64), dist.astype(np.float64), channel_axis=-1, **ssim_kw)
    assert got["ssim"].item() == pytest.approx(ssim_rgb, abs=1e-3)


def test_fast_backend_equals_pyiqa(scorers: dict[str, Scorer]) -> None:
    worst = dict.fromkeys(("psnr", "ssim", "psnr_y", "ssim_y"), 0.0)
    for _, dist, ref in PAIRS:
        a = scorers["fast"](_t(dist), _t(ref))
        b = scorers["pyiqa"](_t(dist), _t(ref))
        for k in worst:
            worst[k] = max(worst[k], abs(a[k].item() - b[k].item()))
    assert all(v <= 1e-4 for v in worst.values()), worst
    # Batched calls give per-image values equal to single calls (outputs in [0,1] that are not yet quantised).
    torch.manual_seed(0)
    y = torch.rand(3, 3, 48, 64)
    x = (y + 0.1 * torch.randn_like(y)).clamp(-0.1, 1.1)
    batched = scorers["fast"](x, y)
    for i in range(3):
        single = scorers["fast"](x[i : i + 1], y[i : i + 1])
        ref = scorers["pyiqa"](x[i : i + 1], y[i : i + 1])
        for k in worst:
            assert batched[k][i].item() == pytest.approx(single[k].item(), abs=1e-6)
            assert batched[k][i].item() == pytest.approx(ref[k].item(), abs=1e-4)


def test_gaussian_window_is_matlab_fspecial() -> None:
    from pyiqa.matlab_utils import fspecial

    g = gaussian_1d()
    assert torch.allclose(torch.outer(g, g).float(), fspecial(11, 1.5)[0, 0], atol=1e-8)


def test_ssim_fast_rejects_too_small_images_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        ssim_fast(torch.zeros(1, 1, 10, 20), torch.zeros(1, 1, 10, 20))
    with pytest.raises(ValueError, match="shape mismatch"):
        Scorer()(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))


def test_rgb_to_y_equals_pyiqa_on_every_uint8_colour() -> None:
    """The per-channel luma equals pyiqa's matmul-based ``to_y_channel`` on all 2^24 colours, except where the
    exact luma is a rounding tie (x.5 to float32 precision): there the CPU's matmul kernel decides the last bit of
    pyiqa's sum, so either neighbour is pyiqa's answer on some machine (a few dozen of the 2^24 colours)."""
    from pyiqa.utils.color_util import to_y_channel

    levels = torch.arange(256, dtype=torch.float32) / 255.0
    ties = 0
    for r in range(0, 256, 32):  # 8 slabs of 32 x 256 x 256 colours (bounded memory)
        rr, gg, bb = torch.meshgrid(levels[r : r + 32], levels, levels, indexing="ij")
        img = torch.stack((rr, gg, bb)).reshape(1, 3, 32 * 256, 256)
        ours, ref = rgb_to_y(img), to_y_channel(img, 255.0, "ycbcr")
        exact = (img.double() * torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64).view(1, 3, 1, 1)
                 ).sum(dim=1, keepdim=True) + 16.0
        tie = (exact - exact.floor() - 0.5).abs() < 1e-4
        assert torch.equal(ours[~tie], ref[~tie]), int((ours != ref)[~tie].sum())
        assert (ours - ref).abs().max() <= 1
        ties += int(tie.sum())
    assert ties < 2**24 // 1000  # the exception covers a sliver of the colours (3,330 here)


@pytest.mark.parametrize("shape", [(2, 4, 64, 48), (1, 1, 11, 11), (1, 3, 37, 53)])
def test_ssim_cpu_and_torch_paths_agree(shape: tuple[int, ...]) -> None:
    """The OpenCV per-channel SSIM (CPU default) and the batched torch one (GPU default) agree."""
    g = torch.Generator().manual_seed(sum(shape))
    y = torch.round(torch.rand(shape, generator=g) * 255)
    x = torch.clamp(torch.round(y + 25 * torch.randn(shape, generator=g)), 0, 255)
    x[..., :5, :] = 255.0  # a saturated band: the clip of the contrast-structure term is exercised
    a, b = ssim_per_channel(x, y, impl="cv2"), ssim_per_channel(x, y, impl="torch")
    assert a.shape == b.shape == shape[:2]
    assert torch.allclose(a, b.double(), atol=2e-6), (a - b.double()).abs().max()
    assert torch.allclose(ssim_per_channel(y, y, impl="cv2"), torch.ones(shape[:2], dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="unknown SSIM implementation"):
        ssim_per_channel(x, y, impl="fft")


def test_quantize_is_the_saved_png() -> None:
    """levels() and quantize(): clamp, then round to the 256 uint8 levels, exactly as a saved PNG reads back."""
    x = torch.tensor([[-0.2, 0.0, 0.4999 / 255, 0.5001 / 255, 0.3, 1.0, 1.7]])
    png = torch.from_numpy(np.clip(np.rint(np.clip(x.numpy(), 0, 1) * 255), 0, 255).astype(np.uint8))
    assert torch.equal(Scorer.levels(x), png.float())
    assert torch.equal(Scorer.quantize(x), png.float() / 255.0)
    assert x[0, 0] == -0.2  # the input is not modified in place
