"""The MDIR degradation operators: identities, calibrations, monotonicity, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.common.env import UserError
from pipelines.data.degradations import (
    AIRLIGHT_RGB,
    D_FAR,
    D_NEAR,
    Levels,
    add_haze,
    add_noise,
    add_rain,
    dark_channel_depth,
    degrade,
    ground_plane_depth,
    load_depth,
    proxy_depth,
    rain_layer,
    transmission,
)

REPO = Path(__file__).resolve().parents[1]


def _real_data() -> Path | None:
    cand = Path(os.environ.get("INTERIR_DATA") or REPO.parent / "shared" / "data")
    return cand if (cand / "depth").is_dir() else None


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.float32) / 255.0)


def _depth_samples() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB image, depth in metres): the real RGB-D samples when present, else a synthetic ramp."""
    from pipelines.data.imageio import read_image

    root = _real_data()
    if root is None:
        h, w = 64, 80
        ramp = np.linspace(D_NEAR, D_FAR, h, dtype=np.float32)[:, None].repeat(w, 1)
        return [("synthetic-ramp", _photo(h, w), ramp)]
    d = root / "depth"
    return [
        ("sample", read_image(d / "sample_rgb.png"), load_depth(d / "sample_depth.png")),
        ("motorcycle", read_image(d / "motorcycle_left.png"), load_depth(d / "motorcycle_disp.npz")),
    ]


# ----------------------------------------------------------------------------- identity at level 0


def test_each_operator_is_exactly_the_identity_at_level_0():
    img = _photo()
    depth = ground_plane_depth(*img.shape[:2])
    rng = np.random.default_rng(0)
    for out in (add_haze(img, 0, depth), add_rain(img, 0, rng), add_noise(img, 0, rng),
                degrade(img, Levels(0, 0, 0), None, seed=7)):
        assert out.dtype == img.dtype and np.array_equal(out, img)
    # and a non-zero level really changes the image (so the identity above is not vacuous)
    assert not np.array_equal(add_noise(img, 1, rng), img)
    assert not np.array_equal(add_haze(img, 150, depth), img)


def test_level_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="rain level"):
        Levels(rain=301).validate()
    with pytest.raises(UserError, match="noise level"):
        Levels(noise=-1).validate()
    with pytest.raises(UserError, match="haze level"):
        Levels(haze=float("nan")).validate()


# ----------------------------------------------------------------------------- noise


@pytest.mark.parametrize("level", [5, 15, 25, 50])
def test_noise_sigma_matches_level_on_flat_grey(level):
    flat = np.full((256, 256, 3), 0.5, dtype=np.float32)
    out = add_noise(flat, level, np.random.default_rng(level))
    measured = float((out - flat).std())
    assert abs(measured - level / 255) <= 0.05 * level / 255, (measured * 255, level)
    assert abs(float((out - flat).mean())) < 0.01 * level / 255 + 1e-3
    assert out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------------- haze


def test_haze_contrast_falls_monotonically_with_visibility():
    for name, img, depth in _depth_samples():
        contrasts = [float(add_haze(img, v, depth).std()) for v in (400, 150, 120, 90, 60, 30)]
        assert all(a > b for a, b in zip(contrasts, contrasts[1:])), (name, contrasts)
        assert contrasts[0] < float(img.std())


def test_transmission_is_lower_where_depth_is_larger():
    for name, _, depth in _depth_samples():
        t = transmission(depth, 90.0)
        near = depth <= np.percentile(depth, 20)
        far = depth >= np.percentile(depth, 80)
        assert t[far].mean() < t[near].mean(), name
        order = np.argsort(depth, axis=None)
        assert np.all(np.diff(t.ravel()[order]) <= 1e-7), name  # non-increasing in depth, pixel by pixel
        # on a black scene the output is airlight (1 - t): brighter where farther
        black = np.zeros(depth.shape + (3,), np.float32)
        hazy = add_haze(black, 90.0, depth)
        assert hazy[far].mean() > hazy[near].mean()
        np.testing.assert_allclose(hazy[far].mean(axis=0) / hazy[far].mean(), AIRLIGHT_RGB / AIRLIGHT_RGB.mean(),
                                   rtol=1e-4)


def test_real_depth_files_are_read_with_invalid_pixels_filled():
    root = _real_data()
    if root is None:
        pytest.skip("real depth samples not found (set INTERIR_DATA or place ../shared/data)")
    from PIL import Image

    raw_mm = np.asarray(Image.open(root / "depth/sample_depth.png")).astype(np.float64)
    z = load_depth(root / "depth/sample_depth.png")
    assert z.shape == raw_mm.shape and np.isfinite(z).all() and z.min() >= D_NEAR and z.max() <= D_FAR
    valid = raw_mm > 0
    assert (~valid).any()  # the sample does hold invalid pixels, and they were filled
    assert np.corrcoef(raw_mm[valid], z[valid])[0, 1] > 0.95  # depth kept up to scale

    disp = np.load(root / "depth/motorcycle_disp.npz")["arr_0"]
    zm = load_depth(root / "depth/motorcycle_disp.npz")
    ok = np.isfinite(disp)
    assert (~ok).any() and np.isfinite(zm).all()
    assert np.corrcoef(1.0 / disp[ok], zm[ok])[0, 1] > 0.95  # depth ~ 1 / disparity
    assert zm[ok][disp[ok] > np.percentile(disp[ok], 90)].mean() < zm[ok][disp[ok] < np.percentile(disp[ok], 10)].mean()


def test_ground_plane_proxy_grows_towards_the_top_and_hazes_the_top_more():
    img = _photo(128, 96)
    d = proxy_depth(img, "ground_plane")
    col = d[:, 0]
    assert np.all(np.diff(col) <= 0) and col[0] == D_FAR and 1.5 < col[-1] < 3.0
    assert np.all(d == col[:, None])
    hazy = add_haze(img, 60, d)
    dist = np.abs(hazy - AIRLIGHT_RGB).mean(axis=(1, 2))
    assert dist[:20].mean() < dist[-20:].mean()  # top rows are closer to the airlight


def test_dark_channel_proxy_spans_the_depth_range():
    d = dark_channel_depth(_photo())
    assert d.min() == pytest.approx(D_NEAR, abs=1e-4) and d.max() == pytest.approx(D_FAR, abs=1e-3)
    with pytest.raises(UserError, match="depth proxy"):
        proxy_depth(_photo(), "monocular_net")


# ----------------------------------------------------------------------------- rain


def test_rain_changes_more_pixels_at_300_than_at_50():
    img = _photo(160, 240)
    changed = {}
    for level in (50, 300):
        counts = [int((np.abs(add_rain(img, level, np.random.default_rng(s)) - img) > 2 / 255).any(axis=2).sum())
                  for s in range(3)]
        changed[level] = np.mean(counts)
    assert changed[300] > 1.5 * changed[50] > 0, changed


def test_rain_layer_seed_density_follows_tanet_threshold():
    # seeds are kept where u ~ U(0,256) >= 256 - level/100: about level/25600 of the pixels
    r300 = rain_layer((400, 400), 300, np.random.default_rng(0))
    assert r300.min() == 0.0 and r300.max() == pytest.approx(1.0)
    streak_300 = float((r300 > 0.2).mean())
    streak_50 = float((rain_layer((400, 400), 50, np.random.default_rng(0)) > 0.2).mean())
    assert streak_300 > 2 * streak_50 > 0


def test_rain_blend_brightens_towards_the_streak_opacity():
    dark = np.zeros((64, 64, 3), np.float32)
    out = add_rain(dark, 300, np.random.default_rng(1))
    assert out.max() == pytest.approx(0.8, abs=1e-5) and out.min() == 0.0
    assert np.array_equal(out[..., 0], out[..., 1])  # streaks are achromatic


# ----------------------------------------------------------------------------- composition


def test_degrade_is_deterministic_per_seed_and_in_range():
    img = _photo()
    depth = ground_plane_depth(*img.shape[:2])
    lv = Levels(90, 200, 25)
    a, b = degrade(img, lv, depth, 3), degrade(img, lv, depth, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, degrade(img, lv, depth, 4))
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_degrade_order_is_haze_then_rain_then_noise():
    img = _photo()
    depth = ground_plane_depth(*img.shape[:2])
    seed = 11
    rain_ss, noise_ss = np.random.SeedSequence(seed).spawn(2)
    manual = add_noise(add_rain(add_haze(img, 80, depth), 150, np.random.default_rng(rain_ss)), 20,
                       np.random.default_rng(noise_ss))
    assert np.array_equal(degrade(img, Levels(80, 150, 20), depth, seed), manual)
    swapped = add_haze(add_rain(img, 150, np.random.default_rng(rain_ss)), 80, depth)
    assert not np.allclose(degrade(img, Levels(80, 150, 0), depth, seed), swapped)
