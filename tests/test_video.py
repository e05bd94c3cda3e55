"""save_video / load_video_frames: formats, timing, padding, overwrite and failure atomicity."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gouache._errors import GouacheError, InvalidInputError, MissingDependencyError
from gouache._image import SDImage
from gouache._pipeline import video as _video
from gouache._pipeline.video import load_video_frames, save_video

FORMATS = (".gif", ".webp", ".mp4")


def make_frames(count: int = 6, width: int = 48, height: int = 32) -> list[np.ndarray]:
    """Distinct frames (a moving bar over a gradient), so no encoder merges them."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    frames = []
    for i in range(count):
        arr = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()
        arr[:, (i * 5) % width : (i * 5) % width + 4] = (255, 40, 40)
        frames.append(arr)
    return frames


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("ext", FORMATS)
def test_round_trip_frame_count_and_size(tmp_path, ext):
    frames = make_frames()
    out = save_video(frames, tmp_path / f"clip{ext}", fps=12)
    assert out == tmp_path / f"clip{ext}"
    back = load_video_frames(out)
    assert len(back) == len(frames)
    assert all(im.size == (48, 32) and im.mode == "RGB" for im in back)
    assert listing(tmp_path) == [f"clip{ext}"]  # no temporary file left


@pytest.mark.parametrize("ext", (".gif", ".webp"))
def test_lossless_enough_content(tmp_path, ext):
    frames = make_frames()
    back = load_video_frames(save_video(frames, tmp_path / f"c{ext}", quality=100))
    for src, got in zip(frames, back):
        assert np.abs(np.asarray(got, dtype=np.int16) - src).mean() < 8


def test_mixed_input_types(tmp_path):
    base = make_frames(4)
    frames = [
        Image.fromarray(base[0]),
        base[1],
        base[2].astype(np.float32) / 255.0,
        SDImage.from_numpy(base[3]),
        Image.fromarray(base[0]).convert("L"),
        np.dstack([base[1], np.full((32, 48), 128, np.uint8)]),  # RGBA: alpha dropped
    ]
    back = load_video_frames(save_video(frames, tmp_path / "mixed.webp"))
    assert len(back) == 6 and back[0].size == (48, 32)


def frame_durations(path: Path) -> list[int]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            out.append(im.info["duration"])
        return out


@pytest.mark.parametrize("fps", [16, 10, 24, 7.5])
def test_gif_timing(tmp_path, fps):
    path = save_video(make_frames(8), tmp_path / "t.gif", fps=fps)
    durations = frame_durations(path)
    assert len(durations) == 8
    assert all(abs(d - 1000 / fps) <= 10 for d in durations)  # GIF stores centiseconds
    assert abs(sum(durations) - 8 * 1000 / fps) <= 5  # rounding does not accumulate


@pytest.mark.parametrize("fps", [16, 10, 24, 7.5])
def test_webp_timing(tmp_path, fps):
    path = save_video(make_frames(8), tmp_path / "t.webp", fps=fps)
    durations = frame_durations(path)
    assert len(durations) == 8
    assert all(abs(d - 1000 / fps) <= 1 for d in durations)
    assert abs(sum(durations) - 8 * 1000 / fps) <= 0.5


@pytest.mark.parametrize("ext", (".gif", ".webp"))
@pytest.mark.parametrize("loop", [0, 3])
def test_loop_is_stored(tmp_path, ext, loop):
    path = save_video(make_frames(3), tmp_path / f"l{ext}", loop=loop)
    with Image.open(path) as im:
        assert im.info.get("loop") == loop


def test_webp_quality_changes_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    small = save_video(frames, tmp_path / "lo.webp", quality=5).stat().st_size
    big = save_video(frames, tmp_path / "hi.webp", quality=95).stat().st_size
    assert small < big


def test_mp4_stream_properties(tmp_path):
    import av  # in the test extra

    path = save_video(make_frames(10), tmp_path / "p.mp4", fps=16)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 16
        assert stream.frames == 10


@pytest.mark.parametrize("size", [(47, 33), (48, 33), (47, 32)])
def test_mp4_odd_size_is_padded_by_edge_replication(tmp_path, size):
    width, height = size
    frames = make_frames(4, width=width, height=height)
    for f in frames:
        f[:, -1] = (0, 200, 0)  # distinctive last column / row
        f[-1, :] = (0, 0, 200)
    back = load_video_frames(save_video(frames, tmp_path / "odd.mp4", quality=100))
    assert len(back) == 4
    assert back[0].size == (width + width % 2, height + height % 2)
    got = np.asarray(back[0], dtype=np.int16)
    if width % 2:
        assert np.abs(got[: height - 1, -1] - got[: height - 1, -2]).mean() < 12
    if height % 2:
        assert np.abs(got[-1, : width - 1] - got[-2, : width - 1]).mean() < 12


def test_mp4_through_imageio_ffmpeg(tmp_path, monkeypatch):
    import imageio_ffmpeg  # noqa: F401 - in the test extra

    monkeypatch.setattr(_video, "_mp4_backend", lambda: "imageio-ffmpeg")
    path = save_video(make_frames(5, width=31, height=17), tmp_path / "f.mp4", fps=8)
    back = load_video_frames(path)
    assert len(back) == 5 and back[0].size == (32, 18)
    assert listing(tmp_path) == ["f.mp4"]


def test_mp4_without_any_backend(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "gouache\[video\]"') as info:
        save_video(make_frames(2), tmp_path / "x.mp4")
    assert isinstance(info.value, ImportError) and isinstance(info.value, GouacheError)
    assert listing(tmp_path) == []


# -- refused inputs -----------------------------------------------------------------------


def test_unknown_extension(tmp_path):
    with pytest.raises(InvalidInputError, match=r"'\.avi'.*\.mp4, \.webp, \.gif"):
        save_video(make_frames(2), tmp_path / "x.avi")
    with pytest.raises(InvalidInputError, match=r"\.mp4, \.webp, \.gif"):
        save_video(make_frames(2), tmp_path / "noext")
    assert listing(tmp_path) == []


def test_empty_frames(tmp_path):
    with pytest.raises(InvalidInputError, match="empty"):
        save_video([], tmp_path / "x.gif")
    assert listing(tmp_path) == []


def test_mixed_sizes_name_the_frame(tmp_path):
    frames = make_frames(3) + make_frames(1, width=40, height=30)
    with pytest.raises(InvalidInputError, match=r"frame 3 is 40x30 but frame 0 is 48x32"):
        save_video(frames, tmp_path / "x.webp")
    assert listing(tmp_path) == []


def test_bad_frame_names_its_index(tmp_path):
    frames = make_frames(2) + [object()]
    with pytest.raises(InvalidInputError, match=r"frame 2"):
        save_video(frames, tmp_path / "x.gif")
    with pytest.raises(InvalidInputError, match=r"frame 1: .*\[0, 1\]"):
        save_video([make_frames(1)[0], np.full((32, 48, 3), 2.0)], tmp_path / "x.gif")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"fps": 0}, "fps"),
        ({"fps": -3}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": True}, "fps"),
        ({"fps": "16"}, "fps"),
        ({"quality": 101}, "quality"),
        ({"quality": 5.5}, "quality"),
        ({"loop": -1}, "loop"),
    ],
)
def test_bad_options(tmp_path, kwargs, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        save_video(make_frames(2), tmp_path / "x.gif", **kwargs)
    assert listing(tmp_path) == []


def test_frames_must_be_a_sequence(tmp_path):
    with pytest.raises(InvalidInputError, match="list of images"):
        save_video(make_frames(1)[0], tmp_path / "x.gif")


def test_missing_directory(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_video(make_frames(2), tmp_path / "nope" / "x.gif")


def test_generator_frames(tmp_path):
    back = load_video_frames(save_video((f for f in make_frames(3)), tmp_path / "g.gif"))
    assert len(back) == 3


def test_load_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        load_video_frames(tmp_path / "missing.mp4")
    with pytest.raises(InvalidInputError, match=r"\.mp4, \.webp, \.gif"):
        load_video_frames(tmp_path / "x.mkv")


# -- overwrite and atomicity --------------------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
def test_overwrite_refused_keeps_old_file(tmp_path, ext):
    path = tmp_path / f"v{ext}"
    path.write_bytes(b"precious bytes")
    with pytest.raises(InvalidInputError, match=r"exists.*overwrite=True"):
        save_video(make_frames(3), path)
    assert path.read_bytes() == b"precious bytes"
    assert listing(tmp_path) == [f"v{ext}"]


def test_overwrite_true_replaces(tmp_path):
    path = tmp_path / "v.gif"
    path.write_bytes(b"old")
    save_video(make_frames(3), path, overwrite=True)
    assert len(load_video_frames(path)) == 3
    assert listing(tmp_path) == ["v.gif"]


def test_file_appearing_during_encode_is_not_clobbered(tmp_path, monkeypatch):
    path = tmp_path / "race.gif"
    real = _video._WRITERS[".gif"]

    def writer(images, tmp, *args):
        real(images, tmp, *args)
        path.write_bytes(b"someone else")

    monkeypatch.setitem(_video._WRITERS, ".gif", writer)
    with pytest.raises(InvalidInputError, match="already exists"):
        save_video(make_frames(2), path)
    assert path.read_bytes() == b"someone else"
    assert listing(tmp_path) == ["race.gif"]


def test_output_gets_normal_permissions(tmp_path):
    path = save_video(make_frames(2), tmp_path / "perm.gif")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("ext", (".gif", ".webp"))
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, ext, existing):
    path = tmp_path / f"f{ext}"
    if existing:
        path.write_bytes(b"old video")
    seen: list[Path] = []

    def failing_writer(images, tmp, *args):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ext
        tmp.write_bytes(b"half a video")
        raise OSError("disk full")

    monkeypatch.setitem(_video._WRITERS, ext, failing_writer)
    with pytest.raises(OSError, match="disk full"):
        save_video(make_frames(3), path, overwrite=True)
    assert seen and not seen[0].exists()
    assert listing(tmp_path) == ([f"f{ext}"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old video"


def test_pillow_encoder_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Image.Image.convert

    def convert(self, *args, **kwargs):  # Pillow's GIF writer converts each frame to "P"
        if args and args[0] == "P":
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("encoder broke")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", convert)
    with pytest.raises(RuntimeError, match="encoder broke"):
        save_video(make_frames(4), tmp_path / "p.gif")
    assert listing(tmp_path) == []


def test_mp4_av_failure_mid_stream_leaves_nothing(tmp_path, monkeypatch):
    import av  # in the test extra

    monkeypatch.setattr(_video, "_mp4_backend", lambda: "av")
    real = av.VideoFrame.from_ndarray
    calls = {"n": 0}

    def from_ndarray(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("frame 4 cannot be encoded")
        return real(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", from_ndarray)
    with pytest.raises(RuntimeError, match="cannot be encoded"):
        save_video(make_frames(8), tmp_path / "m.mp4")
    assert calls["n"] == 5
    assert listing(tmp_path) == []


def test_mp4_ffmpeg_failure_mid_stream_leaves_nothing(tmp_path, monkeypatch):
    import imageio_ffmpeg  # noqa: F401 - in the test extra

    monkeypatch.setattr(_video, "_mp4_backend", lambda: "imageio-ffmpeg")
    real = _video._even_rgb
    calls = {"n": 0}

    def even_rgb(image):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(image)

    monkeypatch.setattr(_video, "_even_rgb", even_rgb)
    with pytest.raises(KeyboardInterrupt):
        save_video(make_frames(8), tmp_path / "m.mp4")
    assert listing(tmp_path) == []


def test_mp4_ffmpeg_error_exit_is_reported(tmp_path, monkeypatch):
    import imageio_ffmpeg  # in the test extra

    monkeypatch.setattr(_video, "_mp4_backend", lambda: "imageio-ffmpeg")
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    with pytest.raises(GouacheError, match=r"exit 1.*Unknown encoder"):
        save_video(make_frames(50, width=256, height=256), tmp_path / "m.mp4")
    assert listing(tmp_path) == ["fake-ffmpeg"]
