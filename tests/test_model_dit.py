"""High-level API and CLI on the DiT families: Flux (image) and Wan 2.1 (video)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache.testing import forge

pytestmark = [pytest.mark.forge_large, pytest.mark.slow]


@pytest.fixture(scope="module")
def wan():
    with g.SDModel(diffusion_model=forge.wan21_t2v_gguf(), taesd=forge.taehv()) as m:
        yield m


def test_wan_family_and_video(wan, tmp_path):
    assert wan.family == "wan2.1"
    v = wan.generate_video("a wave", width=16, height=16, frames=5, steps=1, cfg_scale=1.0, seed=3)
    assert len(v.frames) == 5 and v.frames[0].size == (16, 16) and v.seed == 3
    again = wan.generate_video("a wave", width=16, height=16, frames=5, steps=1, cfg_scale=1.0, seed=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(v.frames, again.frames))
    path = v.save(tmp_path / "wave.webp", fps=8)
    with Image.open(path) as im:
        assert im.n_frames == 5


def test_wan_frame_counts_other_than_4k_plus_1_are_trimmed(wan):
    """Wan makes 4k+1 frames: 6 are generated as 9 and the first 6 returned, the same frames
    as the first 6 of a 9-frame video with the same seed."""
    six = wan.generate_video("a wave", width=16, height=16, frames=6, steps=1, cfg_scale=1.0, seed=4)
    nine = wan.generate_video("a wave", width=16, height=16, video_frames=9, steps=1, cfg_scale=1.0, seed=4)
    assert len(six.frames) == 6 and six.parameters["frames"] == 6 and len(nine.frames) == 9
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(six.frames, nine.frames))
    with pytest.raises(g.InvalidInputError, match="frames= or video_frames="):
        wan.generate_video("a wave", frames=5, video_frames=5)


def test_flux_through_sdmodel():
    with g.SDModel(diffusion_model=forge.flux(), vae=forge.flux_vae(), clip_l=forge.clip_l()) as m:
        assert m.family == "flux"
        a = m.generate("a cube", width=64, height=64, steps=2, seed=1)
        b = m.generate("a cube", width=64, height=64, steps=2, seed=2)
    assert a.parameters["cfg_scale"] == 1.0  # Flux default: distilled guidance, cfg 1
    assert np.abs(np.asarray(a.images[0], np.int16) - np.asarray(b.images[0], np.int16)).mean() > 1


def test_flux_without_text_encoder_refused():
    with pytest.raises(g.InvalidInputError, match="text encoder"):
        g.SDModel(diffusion_model=forge.flux(), vae=forge.flux_vae())


def test_cli_video(tmp_path):
    out = tmp_path / "wave.gif"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "gouache",
            "video",
            "--diffusion-model",
            str(forge.wan21_t2v_gguf()),
            "--taesd",
            str(forge.taehv()),
            "a wave",
            "-o",
            str(out),
            "-W",
            "16",
            "-H",
            "16",
            "--frames",
            "5",
            "--steps",
            "1",
            "--cfg-scale",
            "1",
            "--fps",
            "8",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["outputs"][0]["frames"] == 5
    with Image.open(out) as im:
        assert im.n_frames == 5
