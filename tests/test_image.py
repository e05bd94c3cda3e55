import numpy as np
import pytest
from PIL import Image

from gouache import InvalidInputError, SDImage


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_from_numpy_uint8_roundtrip(shape):
    arr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    img = SDImage.from_numpy(arr)
    assert (img.height, img.width) == shape[:2]
    assert img.channels == (shape[2] if len(shape) == 3 else 1)
    out = img.to_numpy()
    assert out.shape == (shape[0], shape[1], img.channels)
    assert np.array_equal(out.reshape(arr.shape), arr)
    out[0, 0, 0] ^= 0xFF  # to_numpy returns a copy
    assert not np.array_equal(out, img.to_numpy())


def test_from_numpy_float_scaled_and_rounded():
    arr = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)
    assert SDImage.from_numpy(arr).to_numpy().tolist() == [[[0, 128, 255]]]


def test_from_numpy_copies_input():
    arr = np.zeros((4, 4, 3), np.uint8)
    img = SDImage.from_numpy(arr)
    arr[:] = 9
    assert img.to_numpy().max() == 0


@pytest.mark.parametrize(
    "arr, fragment",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 3), np.int32), "dtype"),
        (np.full((4, 4, 3), 1.5, np.float32), "[0, 1]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_from_numpy_rejects(arr, fragment):
    with pytest.raises(ValueError) as exc:
        SDImage.from_numpy(arr)
    assert fragment in str(exc.value)


def test_from_numpy_rejects_non_array():
    with pytest.raises(InvalidInputError, match="list"):
        SDImage.from_numpy([[1, 2]])


@pytest.mark.parametrize(
    "mode, channels", [("L", 1), ("RGB", 3), ("RGBA", 4), ("LA", 4), ("P", 3), ("CMYK", 3), ("I;16", 1), ("1", 1)]
)
def test_from_pil_modes(mode, channels):
    im = Image.new(mode, (6, 3))
    img = SDImage.from_pil(im)
    assert img.size == (6, 3) and img.channels == channels


def test_pil_roundtrip_and_file(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    img = SDImage.from_numpy(arr)
    pil = img.to_pil()
    assert pil.mode == "RGB" and pil.size == (9, 8)
    path = tmp_path / "x.png"
    pil.save(path)
    assert SDImage.open(path) == img
    assert SDImage.coerce(str(path)) == img
    assert SDImage.from_numpy(arr[:, :, 0]).to_pil().mode == "L"


def test_sixteen_bit_scaled():
    im = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert SDImage.from_pil(im).to_numpy().max() == 255


def test_open_missing(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        SDImage.open(tmp_path / "nope.png")
