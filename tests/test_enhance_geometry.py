"""gouache.enhance: input loading, the Letterbox working-size geometry, alpha compositing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gouache import InvalidInputError, SDImage
from gouache.enhance import Letterbox, composite_alpha, load_depth, load_image, load_mask


def smooth_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth float image in [0, 1] (sums of low-frequency waves)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w] / max(h, w)
    planes = []
    for _ in range(channels):
        fx, fy, ph = rng.uniform(0.5, 2.5, 3)
        planes.append(0.5 + 0.4 * np.sin(2 * np.pi * (fx * u + fy * v) + ph))
    return np.stack(planes, axis=2).astype(np.float32)


def centroid(plane: np.ndarray) -> tuple[float, float]:
    w = np.clip(plane - plane.max() * 0.5, 0, None)
    v, u = np.mgrid[0 : plane.shape[0], 0 : plane.shape[1]]
    return float((w * u).sum() / w.sum()), float((w * v).sum() / w.sum())


# --------------------------------------------------------------------------- inputs


def test_load_image_from_pil_modes_arrays_and_paths(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    rgb, alpha = load_image(Image.fromarray(rgba))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.float32 and np.all(rgb[..., 0] == 1.0)
    assert alpha is not None and np.allclose(alpha, 128 / 255)
    assert load_image(Image.fromarray(rgba[..., :3]))[1] is None

    gray16 = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000
    path = tmp_path / "g16.png"
    Image.fromarray(gray16).save(path)
    rgb, alpha = load_image(path)
    assert alpha is None and np.allclose(rgb[..., 1], gray16 / 65535.0, atol=1e-6)
    assert np.allclose(load_image(str(path))[0], rgb)

    assert np.allclose(load_image(gray16)[0][..., 2], gray16 / 65535.0, atol=1e-6)
    assert np.allclose(load_image(np.full((3, 3, 1), 0.25))[0], 0.25)
    assert np.all(load_image(np.ones((2, 2), bool))[0] == 1.0)
    assert load_image(SDImage.from_numpy(rgba))[1] is not None
    assert load_image(Image.new("P", (3, 3)))[0].shape == (3, 3, 3)


def test_load_image_errors_name_the_argument():
    with pytest.raises(InvalidInputError, match=r"init_image float values must lie in \[0, 1\].*1\.5"):
        load_image(np.full((2, 2, 3), 1.5), name="init_image")
    with pytest.raises(InvalidInputError, match=r"image must have shape .*got an array of shape \(2, 2, 5\)"):
        load_image(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(InvalidInputError, match="empty"):
        load_image(np.zeros((0, 3, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="not found"):
        load_image("/no/such/file.png")
    with pytest.raises(InvalidInputError, match="got int"):
        load_image(3)
    with pytest.raises(InvalidInputError, match="dtype"):
        load_image(np.zeros((2, 2), np.int32))


def test_load_depth_keeps_values(tmp_path):
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    path = tmp_path / "depth16.png"
    Image.fromarray(raw).save(path)
    depth = load_depth(path)
    assert depth.dtype == np.float32 and depth.shape == (3, 4) and np.array_equal(depth, raw)
    assert np.array_equal(load_depth(np.arange(6, dtype=np.uint8).reshape(2, 3)), [[0, 1, 2], [3, 4, 5]])
    assert load_depth(np.ones((3, 4, 1), np.float64) * 7.5).shape == (3, 4)
    gray_rgb = np.repeat(np.arange(6, dtype=np.uint8).reshape(2, 3, 1), 3, axis=2)
    assert np.array_equal(load_depth(gray_rgb), gray_rgb[..., 0])
    assert np.array_equal(load_depth(Image.fromarray(np.full((2, 2), 3.5, np.float32))), np.full((2, 2), 3.5))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5), r"2-D depth map .*shape \(5,\)"),
        (np.zeros((2, 2, 2, 1)), "2-D depth map"),
        (np.zeros((0, 4)), "empty"),
        (np.array([[1.0, np.nan]]), "1 NaN or infinite"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
        (np.dstack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))]), "channels differ"),
        (np.zeros((2, 2), bool), "dtype bool"),
    ],
)
def test_load_depth_rejects(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        load_depth(bad, name="depth")


def test_load_mask_conventions():
    assert np.array_equal(load_mask(np.array([[True, False]])), [[1.0, 0.0]])
    assert np.allclose(load_mask(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, [255, 0]  # white, but the second pixel is transparent
    assert np.allclose(load_mask(rgba), [[1.0, 0.0]])
    assert np.allclose(load_mask(Image.new("RGB", (2, 1), (255, 255, 255))), 1.0)
    with pytest.raises(InvalidInputError, match=r"mask float values must lie in \[0, 1\]"):
        load_mask(np.array([[2.0]]))


# --------------------------------------------------------------------------- Letterbox geometry


@pytest.mark.parametrize(
    "size, content, canvas, offset",
    [
        ((512, 256), (1024, 512), (1024, 512), (0, 0)),
        ((300, 200), (1024, 683), (1024, 704), (0, 10)),
        ((200, 300), (683, 1024), (704, 1024), (10, 0)),
        ((1024, 1024), (1024, 1024), (1024, 1024), (0, 0)),
        ((4000, 3000), (1024, 768), (1024, 768), (0, 0)),
    ],
)
def test_fit_scales_long_side_keeps_aspect_and_centres(size, content, canvas, offset):
    lb = Letterbox.fit(*size)
    assert (lb.content_width, lb.content_height) == content
    assert lb.canvas_size == canvas and lb.offset == offset
    assert lb.canvas_width % 64 == 0 and lb.canvas_height % 64 == 0
    assert abs(content[0] / content[1] - size[0] / size[1]) < 1.0 / min(content)


def test_fit_validates():
    with pytest.raises(InvalidInputError, match="width must be a positive integer; got 0"):
        Letterbox.fit(0, 10)
    with pytest.raises(InvalidInputError, match="multiple"):
        Letterbox.fit(10, 10, multiple=-64)


@pytest.mark.parametrize(
    "size, target", [((512, 256), 1024), ((256, 128), 1024), ((100, 60), 300), ((1000, 600), 1000), ((640, 480), 1280)]
)
def test_round_trip_exact_for_integer_scale_factors(size, target):
    w, h = size
    lb = Letterbox.fit(w, h, target=target)
    assert lb.content_width % w == 0  # integer factor (1 = padding only)
    img = smooth_image(h, w)
    img[h // 3, w // 4] = [1.0, 0.0, 1.0]  # sharp details survive too
    img[h // 2 :, w // 2] = 0.0
    assert np.abs(lb.restore(lb.apply_image(img)) - img).max() < 1e-5
    u8 = np.rint(img * 255).astype(np.uint8)
    assert np.array_equal(lb.restore(lb.apply_image(u8)), u8)
    depth = 1.0 + 9.0 * img[..., 0]
    assert np.abs(lb.restore(lb.apply_depth(depth), kind="depth") - depth).max() < 1e-4
    mask = (img[..., 1] > 0.5).astype(np.float32)
    assert np.abs(lb.restore(lb.apply_mask(mask), kind="mask") - mask).max() < 1e-5


@pytest.mark.parametrize("size", [(300, 200), (341, 200), (2000, 1500), (97, 131)])
def test_round_trip_within_interpolation_error_otherwise(size):
    w, h = size
    lb = Letterbox.fit(w, h)
    img = smooth_image(h, w, seed=1)
    back = lb.restore(lb.apply_image(img))
    assert back.shape == img.shape and back.dtype == np.float32
    assert np.abs(back - img).mean() < 0.01 and np.abs(back - img).max() < 0.06
    depth = 2.0 + img[..., 0]
    assert np.abs(lb.restore(lb.apply_depth(depth), kind="depth") - depth).max() < 0.06


def test_marker_lands_on_the_same_pixel_in_image_and_depth():
    lb = Letterbox.fit(300, 200)
    img = np.zeros((200, 300, 3), np.float32)
    depth = np.ones((200, 300), np.float32)
    img[133, 77] = 1.0
    depth[133, 77] = 5.0
    ci = centroid(lb.apply_image(img)[..., 0])
    cd = centroid(lb.apply_depth(depth) - 1.0)
    cm = centroid(lb.apply_mask(img[..., 0]))
    s, (ox, oy) = lb.scale, lb.offset
    want = ((77 + 0.5) * s - 0.5 + ox, (133 + 0.5) * lb.content_height / 200 - 0.5 + oy)
    for got in (ci, cd, cm):
        assert abs(got[0] - want[0]) < 0.3 and abs(got[1] - want[1]) < 0.3, (got, want)


def test_depth_and_mask_of_another_size_are_resampled_onto_the_image():
    lb = Letterbox.fit(300, 200)
    img = np.zeros((200, 300), np.float32)
    img[132:134, 76:78] = 1.0  # a 2x2 block = one pixel of a half-size map
    half = np.zeros((100, 150), np.float32)
    half[66, 38] = 1.0
    ci = centroid(lb.apply_image(img))
    for got in (centroid(lb.apply_depth(half)), centroid(lb.apply_mask(half))):
        assert abs(got[0] - ci[0]) < 0.5 and abs(got[1] - ci[1]) < 0.5, (got, ci)
    with pytest.raises(InvalidInputError, match="aspect ratios differ"):
        lb.apply_depth(np.zeros((200, 200), np.float32))


def test_no_stretch_for_non_square_inputs():
    lb = Letterbox.fit(300, 150)
    v, u = np.mgrid[0:150, 0:300]
    disc = ((u - 200) ** 2 + (v - 70) ** 2 <= 30**2).astype(np.float32)
    out = lb.apply_mask(disc) > 0.5
    rows, cols = np.nonzero(out)
    assert abs((cols.max() - cols.min()) - (rows.max() - rows.min())) <= 1


def test_padding_fill_rules():
    lb = Letterbox.fit(300, 200)  # pads 10 rows above and 11 below
    img = np.full((200, 300, 3), 0.5, np.float32)
    assert np.all(lb.apply_image(img)[:10] == 0.0)
    assert np.allclose(lb.apply_image(img, fill=(1.0, 0.0, 0.25))[0, 0], [1.0, 0.0, 0.25])
    assert np.allclose(lb.apply_image(img, fill="edge")[:10], 0.5)
    u8 = lb.apply_image(np.full((200, 300, 3), 128, np.uint8), fill=1.0)
    assert u8.dtype == np.uint8 and np.all(u8[:10] == 255) and np.all(u8[20:-20] == 128)
    ramp = np.tile(np.linspace(1.0, 3.0, 200, dtype=np.float32)[:, None], (1, 300))
    d = lb.apply_depth(ramp)
    assert np.allclose(d[:10], d[10]) and np.allclose(d[-11:], d[-12])  # edge values, no step
    assert np.all(lb.apply_mask(np.ones((200, 300), np.float32))[:10] == 0.0)
    with pytest.raises(InvalidInputError, match="fill"):
        lb.apply_image(img, fill=(1.0, 0.0))
    with pytest.raises(InvalidInputError, match="fill"):
        lb.apply_image(img, fill="mirror")
    with pytest.raises(InvalidInputError, match="image is 200x300; this Letterbox was made for 300x200"):
        lb.apply_image(np.zeros((300, 200, 3), np.float32))


def test_restore_accepts_scaled_results_and_gray_images():
    lb = Letterbox.fit(300, 200)
    img = smooth_image(200, 300, channels=1)[..., 0]
    canvas = lb.apply_image(img)
    assert canvas.shape == (704, 1024)
    big = np.asarray(Image.fromarray(canvas).resize((2048, 1408), Image.Resampling.BICUBIC))
    back = lb.restore(np.clip(big, 0, 1))
    assert back.shape == (200, 300) and np.abs(back - img).mean() < 0.01
    with pytest.raises(InvalidInputError, match="canvas size 1024x704"):
        lb.restore(np.zeros((704, 704), np.float32))
    with pytest.raises(InvalidInputError, match="kind"):
        lb.restore(canvas, kind="normals")


# --------------------------------------------------------------------------- compositing


def test_composite_alpha():
    fg = np.full((4, 4, 3), 1.0, np.float32)
    bg = np.zeros((4, 4, 3), np.uint8)
    alpha = np.array([[0.0, 0.5, 1.0, 1.0]] * 4, np.float32)
    out = composite_alpha(fg, bg, alpha)
    assert out.dtype == np.float32 and out.shape == (4, 4, 3)
    assert np.allclose(out[:, :, 0], alpha)
    with pytest.raises(InvalidInputError, match="same size"):
        composite_alpha(fg, bg, np.ones((3, 4), np.float32))
