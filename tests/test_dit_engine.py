"""Real engine runs of the forged DiT families: Flux (txt2img) and Wan 2.1 T2V 1.3B (video).

One context per model (module fixtures: closed when this module is done); Flux at 64x64 with
2 steps, Wan at its minimum size (16x16: VAE factor 8 x patch 2) with 5 frames (2 latent frames) and 1 step.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import gouache as g
from gouache._modelfiles import architecture
from gouache._modelfiles import headers as _modelfile
from gouache.testing import forge

from .conftest import run_isolated

pytestmark = [pytest.mark.forge_large, pytest.mark.slow]

FLUX_SIZE = 64
WAN_SIZE = 16
WAN_FRAMES = 5


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _load(params: g.SDContextParams) -> tuple[g.SDContext, str]:
    """A context and the engine's log (DEBUG and up) of its creation."""
    logger = logging.getLogger("gouache.engine")
    handler, old_level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        ctx = g.SDContext(params)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return ctx, "\n".join(handler.lines)


def _assert_clean_load(log: str) -> None:
    assert "unknown tensor" not in log
    assert "not in model file" not in log
    assert "wrong shape" not in log


@pytest.fixture(scope="module")
def flux_files():
    return {"diffusion_model_path": forge.flux(), "clip_l_path": forge.clip_l(), "vae_path": forge.flux_vae()}


@pytest.fixture(scope="module")
def flux_ctx(flux_files):
    ctx, log = _load(g.SDContextParams(**flux_files))
    ctx.load_log = log
    with ctx:
        yield ctx


@pytest.fixture(scope="module")
def wan_ctx():
    ctx, log = _load(g.SDContextParams(diffusion_model_path=forge.wan21_t2v_gguf(), taesd_path=forge.taehv()))
    ctx.load_log = log
    with ctx:
        yield ctx


def pixels(images) -> np.ndarray:
    return np.stack([im.to_numpy() for im in images]).astype(np.int16)


# --------------------------------------------------------------------------- Flux


def flux_image(ctx, seed):
    (image,) = ctx.generate_image(
        g.SDImageGenParams(
            prompt="a red cube on a table",
            width=FLUX_SIZE,
            height=FLUX_SIZE,
            seed=seed,
            sample_params=g.SDSampleParams(sample_steps=2, txt_cfg=1.0),
        )
    )
    return image


def test_flux_loads_as_flux(flux_ctx):
    log = flux_ctx.load_log
    assert "Version: Flux" in log
    assert "flux: depth = 1, depth_single_blocks = 1, guidance_embed = true, context_in_dim = 4096," in log
    assert "hidden_size = 256, num_heads = 2" in log
    assert "vae decoder: ch = 128" in log
    # CLIP-L only: the engine warns and conditions on zeros in place of T5-XXL
    assert "t5xxl text encoder not found" in log
    _assert_clean_load(log)
    assert flux_ctx.supports_image_generation


def test_flux_txt2img_deterministic(flux_ctx):
    a = flux_image(flux_ctx, 7)
    b = flux_image(flux_ctx, 7)
    assert a.size == (FLUX_SIZE, FLUX_SIZE) and a.channels == 3
    assert a == b
    p = a.to_numpy()
    assert p.std() > 5.0, "a random-weight Flux should still give a varied image"


def test_flux_seeds_differ(flux_ctx):
    a = pixels([flux_image(flux_ctx, 1)])
    b = pixels([flux_image(flux_ctx, 2)])
    assert np.abs(a - b).mean() > 2.0


def test_flux_without_text_encoder_is_refused(flux_files):
    """Without any text encoder the engine would crash (NULL conditioner); gouache refuses."""
    model, vae = str(flux_files["diffusion_model_path"]), str(flux_files["vae_path"])
    res = run_isolated(
        f"""
import json, gouache as g

try:
    g.SDContext(g.SDContextParams(diffusion_model_path={model!r}, vae_path={vae!r}))
except g.InvalidInputError as exc:
    print(json.dumps({{"raised": True, "message": str(exc)}}))
else:
    print(json.dumps({{"raised": False}}))
"""
    )
    assert res.returncode == 0, (
        f"exit code {res.returncode}\nstdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["raised"], "no InvalidInputError was raised"
    assert "Flux" in out["message"] and "t5xxl_path" in out["message"] and "clip_l_path" in out["message"]


# --------------------------------------------------------------------------- Wan 2.1


def wan_video(ctx, seed, **kw):
    params = dict(
        prompt="a red cube on a table",
        width=WAN_SIZE,
        height=WAN_SIZE,
        seed=seed,
        video_frames=WAN_FRAMES,
        sample_params=g.SDSampleParams(sample_steps=1, txt_cfg=1.0),
    )
    params.update(kw)
    return ctx.generate_video(g.SDVideoGenParams(**params))


def test_wan_gguf_file():
    tensors = _modelfile.read_tensors(forge.wan21_t2v_gguf())
    assert architecture.wan_block_count(tensors) == 30
    assert tensors["blocks.0.self_attn.q.weight"].dtype == "Q4_0"


def test_wan_loads_as_wan21_t2v_1_3b(wan_ctx):
    log = wan_ctx.load_log
    assert "Version: Wan 2.x" in log
    assert "Wan2.1-T2V-1.3B" in log
    assert "using TAE for encoding / decoding" in log
    # no UMT5: the engine warns and conditions on zeros
    assert "No text encoders provided" in log
    _assert_clean_load(log)
    assert wan_ctx.supports_video_generation


def test_wan_video_frames_and_determinism(wan_ctx):
    a = wan_video(wan_ctx, 3)
    b = wan_video(wan_ctx, 3)
    assert len(a) == WAN_FRAMES  # 2 latent frames -> TAEHV decodes 4 * 2 - 3
    assert all(f.size == (WAN_SIZE, WAN_SIZE) and f.channels == 3 for f in a)
    assert a == b
    v = pixels(a)
    assert v.std() > 2.0


def test_wan_seeds_differ(wan_ctx):
    a = pixels(wan_video(wan_ctx, 1))
    b = pixels(wan_video(wan_ctx, 2))
    assert np.abs(a - b).mean() > 1.0


def test_wan_frame_count_rounds_down_to_4n_plus_1(wan_ctx):
    assert len(wan_video(wan_ctx, 1, video_frames=6)) == 5
    assert len(wan_video(wan_ctx, 1, video_frames=1)) == 1
