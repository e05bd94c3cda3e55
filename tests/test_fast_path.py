"""The few-step fast path on the torch engine: the tiny and distilled UNet families from single files,
TAESD decode, ``engine="auto"`` choosing torch for them, prompt embeddings computed once per prompt,
and nothing rebuilt from one call to the next.  64x64, 1-2 steps: speed is the benchmark's
(``benchmarks/fast_path.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import gouache as g
from gouache.testing import forge

pytestmark = [pytest.mark.torch, pytest.mark.slow]

FAST = dict(width=64, height=64, steps=1, cfg_scale=1.0)


def diff(a, b) -> float:
    return float(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).mean())


@pytest.fixture(scope="module")
def sdxs_model():
    with g.SDModel(forge.sdxs()) as m:  # engine="auto"
        yield m


def test_auto_chooses_torch_for_the_tiny_families():
    from gouache._engines.registry import select_engine
    from gouache._engines.requests import ModelFiles

    for family, path in (("sd1_tiny", forge.sdxs()), ("sd1_tiny", forge.sd1_tiny()), ("sd2_tiny", forge.sdxs09())):
        assert select_engine("auto", family, ModelFiles(model=path))[0] == "torch", path


def test_sdxs_runs_on_torch_with_its_own_tiny_autoencoder(sdxs_model):
    from diffusers import AutoencoderTiny

    eng = sdxs_model._engine
    assert sdxs_model.engine_name == "torch" and eng.family == "sd1_tiny"
    assert isinstance(eng.base.vae, AutoencoderTiny)  # the checkpoint's first_stage_model is a TAESD
    assert eng.base.unet.mid_block is None and len(eng.base.unet.down_blocks) == 3
    a = sdxs_model.generate("a cube", seed=1, **FAST).images[0]
    b = sdxs_model.generate("a cube", seed=2, **FAST).images[0]
    assert a.size == (64, 64) and np.asarray(a).std() > 1
    assert diff(a, b) > 0  # another seed, another image (random weights: the decoder saturates most pixels)


def test_tiny_unet_blocks_land_where_sdcpp_reads_them():
    """The renumbered tiny UNet computes what stable-diffusion.cpp computes from the same file: same
    weights, seed and sampler give the same image on both engines, another seed does not."""
    model, taesd = forge.sd1_tiny(), forge.taesd()
    kw = dict(width=64, height=64, steps=2, cfg_scale=1.0, sampler="euler", scheduler="discrete")
    out = {}
    for engine, opts in (("sdcpp", g.EngineOptions(rng="cpu")), ("torch", g.EngineOptions(precision="fp32"))):
        with g.SDModel(model, taesd=taesd, engine=engine, options=opts) as m:
            for seed in (5, 6):
                out[engine, seed] = m.generate("a red cube", seed=seed, **kw).images[0]
    same = diff(out["sdcpp", 5], out["torch", 5])
    other = diff(out["sdcpp", 5], out["torch", 6])
    assert same < 1.5 and other > 5 * same, (same, other)


@pytest.mark.parametrize("name", ["sd1_tiny", "sd2_tiny", "sdxs09"])
def test_tiny_families_load_from_single_files(name):
    with g.SDModel(getattr(forge, name)(), taesd=forge.taesd(), engine="torch") as m:
        assert m._engine.base.unet.mid_block is None
        res = m.generate("a cube", seed=1, **FAST)
    assert res.parameters["engine"] == "torch" and np.asarray(res.images[0]).std() > 1


def test_taesd_decodes_on_torch():
    """``taesd=`` puts the tiny autoencoder in place of the checkpoint's VAE: another decoder, another image."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    model = forge.sd1_tiny()
    images = {}
    for taesd in (None, forge.taesd()):
        with g.SDModel(model, taesd=taesd, engine="torch") as m:
            assert isinstance(m._engine.base.vae, AutoencoderTiny if taesd else AutoencoderKL)
            images[taesd is None] = m.generate("a cube", seed=1, **FAST).images[0]
    assert diff(images[True], images[False]) > 5


class Counter:
    """Counts the calls of a module's forward (a forward pre-hook) or of a wrapped callable."""

    def __init__(self) -> None:
        self.n = 0

    def hook(self, module, args, kwargs=None):
        self.n += 1


def test_prompt_embeddings_are_computed_once_per_prompt(sdxs_model):
    eng = sdxs_model._engine
    encoder = Counter()
    handle = eng.base.text_encoder.register_forward_pre_hook(encoder.hook)
    try:
        first = sdxs_model.generate("a prompt seen once", seed=1, **FAST).images[0]
        again = sdxs_model.generate("a prompt seen once", seed=1, **FAST).images[0]
        assert encoder.n == 1  # the repeat did not reach the text encoder
        other = sdxs_model.generate("another prompt", seed=1, **FAST).images[0]
        assert encoder.n == 2
        with_cfg = sdxs_model.generate("another prompt", seed=1, width=64, height=64, steps=1, cfg_scale=2.0)
        assert encoder.n == 4  # CFG needs the negative prompt's embedding too: a new entry, both encoded
    finally:
        handle.remove()
    assert diff(first, again) == 0 and diff(first, other) > 0  # random weights: the text moves few pixels
    eng.prompts.clear()  # the cached embeddings give exactly what a fresh encoding gives
    fresh = sdxs_model.generate("a prompt seen once", seed=1, **FAST).images[0]
    assert diff(first, fresh) == 0
    assert with_cfg.images[0].size == (64, 64)


def test_no_per_call_reinitialisation(sdxs_model):
    """The second call reuses the first one's scheduler and never tokenizes the repeated prompt."""
    eng = sdxs_model._engine
    pipe = eng.base
    sdxs_model.generate("a cube", seed=1, **FAST)
    scheduler = pipe.scheduler
    calls = Counter()
    real = pipe.tokenizer.__class__.__call__

    def counting(tok, *args, **kwargs):
        calls.n += 1
        return real(tok, *args, **kwargs)

    pipe.tokenizer.__class__.__call__ = counting
    try:
        sdxs_model.generate("a cube", seed=2, **FAST)
    finally:
        pipe.tokenizer.__class__.__call__ = real
    assert pipe.scheduler is scheduler
    assert calls.n == 0
    sdxs_model.generate("a cube", seed=2, sampler="euler", **FAST)
    assert pipe.scheduler is not scheduler  # another sampler has its own scheduler ...
    sdxs_model.generate("a cube", seed=2, **FAST)
    assert pipe.scheduler is scheduler  # ... and the first one is kept


def test_lcm_lora_four_steps_on_a_tiny_unet():
    """LCM-LoRA's recipe (a LoRA, the lcm sampler, 4 steps, CFG 1) on the fast path: the LoRA's
    layers land in the tiny UNet and change the image; its weight 0 gives back the plain image."""
    lora = forge.lora_sd1_tiny(naming="kohya")
    kw = dict(width=64, height=64, steps=4, cfg_scale=1.0, sampler="lcm", seed=3)
    with g.SDModel(forge.sd1_tiny(), taesd=forge.taesd(), engine="torch") as m:
        plain = m.generate("a cube", **kw).images[0]
        with_lora = m.generate("a cube", loras=[(lora, 1.0)], **kw).images[0]
        off = m.generate("a cube", loras=[(lora, 0.0)], **kw).images[0]
    assert diff(plain, with_lora) > 0.5 and diff(plain, off) < 0.05
