"""``interir-bench restore`` and the tiling behind it: input kinds, sizes, names, tiling, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import cli
from pipelines.engine.inference import pad_to_stride, restore_tensor
from tests.test_evaluate import save_checkpoint


@pytest.fixture
def ckpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return save_checkpoint(tmp_path / "deepsn.pt", "deepsn_dmum")  # stride 4: exercises the padding


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    from skimage import data

    top, left = np.random.default_rng(seed).integers(0, 200, 2)
    return data.astronaut()[top : top + h, left : left + w].copy()


def _restore(ckpt: Path, out: Path, *images: Path, extra: tuple[str, ...] = ()) -> int:
    return cli.main(["restore", "--checkpoint", str(ckpt), *map(str, images), "-o", str(out), *extra])


def _read(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_grayscale_rgba_16bit_odd_sizes(ckpt: Path, tmp_path: Path) -> None:
    rgb = _photo(37, 53)
    gray = rgb[..., 1]
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rgb).save(src / "rgb.png")
    Image.fromarray(np.repeat(gray[..., None], 3, 2)).save(src / "gray_as_rgb.png")
    Image.fromarray(gray).save(src / "gray.png")  # mode L
    Image.fromarray(np.dstack([rgb, np.full(gray.shape, 77, np.uint8)])).save(src / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(src / "gray16.png")  # mode I;16, v*257/65535 == v/255
    Image.fromarray(_photo(29, 30, 1)).save(src / "photo.jpg")
    names = ["rgb.png", "gray_as_rgb.png", "gray.png", "rgba.png", "gray16.png", "photo.jpg"]
    assert _restore(ckpt, tmp_path / "out", *(src / n for n in names)) == 0
    out = {n: _read(tmp_path / "out" / (Path(n).stem + ".png")) for n in names}
    assert {n: a.shape for n, a in out.items()} == {**{n: (37, 53, 3) for n in names[:5]}, "photo.jpg": (29, 30, 3)}
    # The documented rules: grayscale is replicated to RGB, alpha is dropped, 16-bit is scaled by 1/65535.
    np.testing.assert_array_equal(out["gray.png"], out["gray_as_rgb.png"])
    np.testing.assert_array_equal(out["rgba.png"], out["rgb.png"])
    np.testing.assert_array_equal(out["gray16.png"], out["gray_as_rgb.png"])


class _Local(torch.nn.Module):
    """Three 3x3 convolutions: receptive-field radius 3."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(),
                                       torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.GELU(),
                                       torch.nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


@pytest.mark.parametrize("size", [(70, 101), (64, 64), (33, 150)])
def test_tiled_equals_untiled_within_receptive_field(size: tuple[int, int]) -> None:
    x = torch.from_numpy(_photo(*size)).permute(2, 0, 1)[None].float() / 255
    model = _Local().eval()
    whole = restore_tensor(model, x, stride=4)
    tiled = restore_tensor(model, x, stride=4, tile=32, overlap=8)  # margin 4 >= radius 3
    assert tiled.shape == whole.shape == x.shape
    assert torch.allclose(tiled, whole, atol=1e-6)
    coarse = restore_tensor(model, x, stride=4, tile=32, overlap=2)  # margin 1 < radius 3: seams show
    if min(size) > 32:
        assert (coarse - whole).abs().max() > 1e-4


def test_pad_to_stride_reflects_and_crops_back() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    xp, (h, w) = pad_to_stride(x, 4)
    assert xp.shape[-2:] == (8, 8) and (h, w) == (5, 6)
    assert torch.equal(xp[..., :5, :6], x) and torch.equal(xp[..., 5, :6], x[..., 3, :])  # reflect
    out = restore_tensor(torch.nn.Identity(), x / x.max(), stride=4)
    assert torch.equal(out, x / x.max())


def test_corrupt_input_writes_nothing(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(_photo(20, 20)).save(good)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert _restore(ckpt, tmp_path / "out", good, bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interir-bench restore: error: ") and str(bad) in err[0]
    assert not (tmp_path / "out").exists()  # not even created: the inputs are checked first


def test_existing_output_is_kept_without_overwrite(ckpt: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo(20, 20)).save(src)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"mine")
    assert _restore(ckpt, tmp_path / "out", src) == 2
    assert str(tmp_path / "out" / "a.png") in capsys.readouterr().err
    assert (tmp_path / "out" / "a.png").read_bytes() == b"mine"
    assert _restore(ckpt, tmp_path / "out", src, extra=("--overwrite",)) == 0
    assert _read(tmp_path / "out" / "a.png").shape == (20, 20, 3)


def test_unwritable_output_and_bad_checkpoint(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo(20, 20)).save(src)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _restore(ckpt, blocker / "out", src) == 2
    assert str(blocker / "out") in capsys.readouterr().err
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert _restore(ckpt, tmp_path / "out", src) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ckpt) in err[0]
    assert not (tmp_path / "out").exists()  # not even created: the inputs are checked first


def test_tiled_cli_keeps_size(ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "big.png"
    Image.fromarray(_photo(45, 71)).save(src)
    assert _restore(ckpt, tmp_path / "out", src, extra=("--tile", "32", "--overlap", "8")) == 0
    assert _read(tmp_path / "out" / "big.png").shape == (45, 71, 3)


def test_read_image_values_are_exact_levels(tmp_path: Path) -> None:
    """8-bit RGB and grayscale read as v / 255 and 16-bit as v / 65535, in float32, bit for bit."""
    from pipelines.data.imageio import read_image

    rgb = _photo(21, 34)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    got = read_image(tmp_path / "rgb.png")
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, rgb.astype(np.float32) / np.float32(255))
    gray = np.repeat(rgb[..., :1].astype(np.float32) / np.float32(255), 3, axis=2)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), gray)
    np.testing.assert_allclose(read_image(tmp_path / "gray16.png"), gray, atol=1e-7)
