"""The torch engine with a tiny autoencoder (TAESD) on every pipeline variant, in its own module
so that its model is not loaded while tests/test_torch_engine.py's module model is alive."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache.testing import forge

pytestmark = [pytest.mark.torch, pytest.mark.slow]

KW = dict(width=64, height=64, steps=2, cfg_scale=7.0)


def test_taesd_decodes_every_pipeline_variant(full_model):
    """With a tiny autoencoder every pipeline (txt2img, img2img, inpaint, ControlNet) decodes
    with it: diffusers' ``from_pipe`` drops an AutoencoderTiny unless it is passed on."""
    control = np.zeros((64, 64, 3), np.uint8)
    control[16:48, 16:48] = 255
    init = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with g.SDModel(full_model, engine="torch", taesd=forge.taesd(), control_net=forge.controlnet_sd1()) as m:
        m.generate("a cube", seed=2, **KW)
        m.generate("a cube", init_image=init, strength=0.6, seed=2, **KW)
        m.generate("a cube", init_image=init, mask=np.full((64, 64), 255, np.uint8), strength=1.0, seed=2, **KW)
        cn = m.generate("a cube", control_image=control, control_strength=1.0, seed=2, **KW).images[0]
        assert cn.size == (64, 64)
        kinds = {k: type(p.vae).__name__ for k, p in m._engine._variants.items()}
    assert len(kinds) == 4 and set(kinds.values()) == {"AutoencoderTiny"}, kinds
