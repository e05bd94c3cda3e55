"""The torch engine (PyTorch + diffusers) behind the same API, on the forged SD1.x checkpoint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache.testing import forge

pytestmark = [pytest.mark.torch, pytest.mark.slow]

KW = dict(width=64, height=64, steps=2, cfg_scale=7.0)


def px(im: Image.Image) -> np.ndarray:
    return np.asarray(im).astype(np.int16)


def diff(a, b) -> float:
    return float(np.abs(px(a) - px(b)).mean())


@pytest.fixture(scope="module")
def torch_model(full_model):
    with g.SDModel(full_model, engine="torch", control_net=forge.controlnet_sd1()) as m:
        yield m


def test_engine_and_precision_are_chosen(torch_model):
    from gouache._engines.torch.runtime import cpu_has_bf16

    assert torch_model.engine_name == "torch"
    eng = torch_model._engine
    assert eng.dtype_name == ("bf16" if cpu_has_bf16() else "fp32")
    import torch

    assert eng.base.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_determinism_and_seeds(torch_model):
    a = torch_model.generate("a cube", seed=3, **KW)
    b = torch_model.generate("a cube", seed=3, **KW)
    c = torch_model.generate("a cube", seed=4, **KW)
    assert a.images[0].size == (64, 64)
    assert diff(a.images[0], b.images[0]) == 0
    assert diff(a.images[0], c.images[0]) > 1


def test_batch_matches_single_seeds(torch_model):
    batch = torch_model.generate("a cube", seed=10, batch=2, **KW)
    single = torch_model.generate("a cube", seed=11, **KW)
    assert batch.seeds == [10, 11]
    assert diff(batch.images[1], single.images[0]) < 1.0  # same noise; batched math may differ in the last bit


def _distinct(images: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    names = sorted(images)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if np.array_equal(images[a], images[b])]


def test_every_sampler_runs_and_gives_its_own_image(torch_model):
    """Each sampler the torch engine lists gives its own image at the same seed and schedule."""
    images = {}
    for sampler in torch_model._engine_cls.samplers():
        res = torch_model.generate("a cube", seed=1, sampler=sampler, width=64, height=64, steps=3, cfg_scale=1.0)
        images[sampler] = np.asarray(res.images[0])
        assert images[sampler].std() > 1, sampler
    assert _distinct(images) == []


def test_every_schedule_gives_its_own_image(torch_model):
    images = {}
    for scheduler in torch_model._engine_cls.schedulers():
        if scheduler == "lcm":
            continue  # the LCM sampler's own schedule (refused with other samplers, see below)
        res = torch_model.generate(
            "a cube", seed=1, sampler="euler", scheduler=scheduler, width=64, height=64, steps=3, cfg_scale=1.0
        )
        images[scheduler] = np.asarray(res.images[0])
    assert len(images) >= 4 and _distinct(images) == []


def test_unsupported_sampler_and_combination_listed(torch_model):
    with pytest.raises(g.InvalidInputError, match="dpm\\+\\+2m"):
        torch_model.generate("a cube", sampler="ipndm", **KW)
    with pytest.raises(g.InvalidInputError, match="cannot use scheduler"):
        torch_model.generate("a cube", sampler="lcm", scheduler="karras", **KW)
    with pytest.raises(g.InvalidInputError, match="lcm schedule"):
        torch_model.generate("a cube", sampler="euler", scheduler="lcm", **KW)


def test_img2img_inpaint_controlnet_lora_change_output(torch_model):
    base = torch_model.generate("a cube", seed=2, **KW).images[0]
    init = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    i2i = torch_model.generate(
        "a cube", init_image=init, strength=0.6, seed=2, width=64, height=64, steps=4, cfg_scale=7.0
    )
    assert diff(i2i.images[0], base) > 1
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    inp = [
        torch_model.generate("a cube", init_image=init, mask=mask, strength=1.0, seed=s, **KW).images[0] for s in (1, 2)
    ]
    d = np.abs(px(inp[0]) - px(inp[1])).mean(axis=2)
    assert d[:, 48:].mean() > 3 * d[:, :16].mean() + 1
    control = np.zeros((64, 64, 3), np.uint8)
    control[16:48, 16:48] = 255
    cn = torch_model.generate("a cube", control_image=control, control_strength=1.0, seed=2, **KW).images[0]
    assert diff(cn, base) > 0.5
    lora = torch_model.generate("a cube", loras=[(forge.lora_sd1(naming="kohya"), 1.0)], seed=2, **KW).images[0]
    zero = torch_model.generate("a cube", loras=[(forge.lora_sd1(naming="kohya"), 0.0)], seed=2, **KW).images[0]
    assert diff(lora, base) > 1 and diff(zero, base) < 1


def test_progress_and_preview(torch_model):
    steps, previews = [], []
    torch_model.generate(
        "a cube",
        seed=1,
        width=64,
        height=64,
        steps=3,
        cfg_scale=1.0,
        callback=lambda s, t, e: steps.append((s, t)),
        preview=lambda s, ims: previews.append(ims),
    )
    assert [s for s, _ in steps] == [1, 2, 3] and previews and previews[0][0].size == (8, 8)


def test_fp32_path_runs(full_model):
    with g.SDModel(full_model, engine="torch", options=g.EngineOptions(precision="fp32")) as m:
        assert m._engine.dtype_name == "fp32"
        res = m.generate("a cube", seed=3, **KW)
    assert np.asarray(res.images[0]).std() > 1


def test_auto_engine_selection(tiny_model, full_model):
    from gouache._engines.registry import select_engine
    from gouache._engines.requests import ModelFiles

    assert select_engine("auto", "sd1", ModelFiles(model=full_model))[0] == "torch"
    assert select_engine("auto", "sd1_tiny", ModelFiles(model=tiny_model))[0] == "torch"  # the fast path
    assert select_engine("auto", "sd1", ModelFiles(model=forge.gguf()))[0] == "sdcpp"
    assert select_engine("auto", "flux", ModelFiles(diffusion_model=forge.flux()))[0] == "sdcpp"


def test_unsupported_family_refused():
    with pytest.raises(g.InvalidInputError, match="does not support flux"):
        g.SDModel(forge.flux(), engine="torch")


def test_without_torch_the_error_says_what_to_install(full_model):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import gouache as g\n"
        f"try:\n    g.SDModel({str(full_model)!r}, engine='torch')\n"
        "except g.MissingDependencyError as e:\n    print('OK', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.startswith("OK") and "gouache[torch]" in res.stdout, res.stderr[-2000:]


#: sampler -> largest mean abs difference (0-255) allowed between the engines at the same seed.
#: Measured: euler 0.17, euler_a 0.18, heun 0.17, dpm++2m 2.0 (diffusers' DPM-Solver++ and
#: k-diffusion's differ in the last-step formulation), against ~39 between different seeds.
CROSS_ENGINE = {"euler": 1.0, "euler_a": 1.0, "heun": 1.0, "dpm++2m": 4.0}


def test_cross_engine_same_weights_same_seed(full_model, capsys):
    """sdcpp with its CPU RNG (a port of torch's CPU randn) against torch's CPU generator: same
    weights, seed, sampler and schedule give the same image up to float error, while another seed
    gives a different one; ancestral samplers agree too (both draw step noise from the one RNG)."""
    kw = dict(width=64, height=64, steps=4, cfg_scale=7.0, scheduler="discrete")
    out: dict[tuple[str, str, int], Image.Image] = {}
    for engine, opts in (("sdcpp", g.EngineOptions(rng="cpu")), ("torch", g.EngineOptions(precision="fp32"))):
        with g.SDModel(full_model, engine=engine, options=opts) as m:
            for sampler in CROSS_ENGINE:
                for seed in (123, 124) if engine == "torch" else (123,):  # sdcpp's 123 against both
                    out[engine, sampler, seed] = m.generate(
                        "a red cube on a table", sampler=sampler, seed=seed, **kw
                    ).images[0]
    lines = []
    for sampler, limit in CROSS_ENGINE.items():
        same = diff(out["sdcpp", sampler, 123], out["torch", sampler, 123])
        other = diff(out["sdcpp", sampler, 123], out["torch", sampler, 124])
        lines.append(f"{sampler}: same seed {same:.2f}, other seed {other:.2f}")
        assert same < limit and other > 10 * same, lines[-1]
    with capsys.disabled():
        print("\ncross-engine mean abs diff (0-255): " + "; ".join(lines))


def test_read_checkpoint_streams_and_casts(tmp_path):
    """The torch engine's own safetensors reader: same tensors as safetensors' loader, cast as read."""
    import torch
    from safetensors.torch import load_file, save_file

    from gouache._engines.torch.loading import read_checkpoint

    src = {
        "a": torch.randn(3, 4, dtype=torch.float16),
        "b": torch.arange(5, dtype=torch.int64),
        "c": torch.randn(2, 2, 2),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "m.safetensors"
    save_file(src, str(path))
    got = read_checkpoint(path, torch.bfloat16)
    ref = load_file(str(path))
    assert set(got) == set(ref)
    assert got["a"].dtype == got["c"].dtype == torch.bfloat16 and got["b"].dtype == torch.int64
    assert torch.equal(got["a"], ref["a"].to(torch.bfloat16)) and torch.equal(got["b"], ref["b"])
    assert got["empty"].shape == (0, 3)
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:-8])
    with pytest.raises(g.InvalidInputError, match="truncated"):
        read_checkpoint(bad, torch.bfloat16)


# --------------------------------------------------------------------------- every keyword reaches the pipeline call


class CallRecorder:
    """Wraps the torch engine's pipeline call: keeps the keyword arguments diffusers receives and
    the state the call runs with (scheduler, VAE tiling, LoRA scales), then runs it."""

    def __init__(self, engine) -> None:
        self.real = engine._run
        self.calls: list[dict] = []
        engine._run = self

    def __call__(self, pipe, kwargs):
        from peft.tuners.tuners_utils import BaseTunerLayer

        scales = {}
        for module in pipe.unet.modules():
            if isinstance(module, BaseTunerLayer) and getattr(module, "scaling", None):
                scales = {n: float(module.scaling[n]) for n in module.active_adapters if n in module.scaling}
                break
        self.calls.append(
            {
                **kwargs,
                "_scheduler": pipe.scheduler,
                "_vae_tiling": pipe.vae.use_tiling,
                "_lora_scales": scales,
                "_pipeline": type(pipe).__name__,
            }
        )
        return self.real(pipe, kwargs)


@pytest.fixture(scope="module")
def recorded(torch_model):
    rec = CallRecorder(torch_model._engine)
    rng = np.random.default_rng(5)
    init = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    control = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    lora = forge.lora_sd1(naming="kohya")
    torch_model.generate(
        "a red cube",
        negative_prompt="blurry, dark",
        width=72,
        height=64,
        steps=3,
        cfg_scale=2.5,
        sampler="heun",
        scheduler="karras",
        seed=1234,
        batch=2,
        clip_skip=2,
        loras=[(lora, 0.5)],
        control_image=control,
        control_strength=0.6,
        control_guidance=(0.2, 0.8),
        init_image=init,
        strength=0.55,
        mask=mask,
        vae_tiling=True,
        eta=0.4,
    )
    call = rec.calls[-1]
    torch_model.generate("a red cube", loras=[(lora, 1.0)], seed=1, **KW)
    return call, rec.calls[-1], (init, mask, control)


def test_wiring_prompt_size_sampling_seed_batch(recorded):
    kw, _, _ = recorded
    assert kw["_pipeline"] == "StableDiffusionControlNetInpaintPipeline"
    assert kw["prompt"] == "a red cube" and kw["negative_prompt"] == "blurry, dark"
    assert (kw["width"], kw["height"]) == (128, 64)  # 72 wide: the next multiple of 64, cropped back
    assert kw["num_inference_steps"] == 3 and kw["guidance_scale"] == pytest.approx(2.5)
    assert type(kw["_scheduler"]).__name__ == "HeunDiscreteScheduler" and kw["_scheduler"].config.use_karras_sigmas
    assert [gen.initial_seed() for gen in kw["generator"]] == [1234, 1235] and kw["num_images_per_prompt"] == 2
    assert kw["clip_skip"] == 1  # sd.cpp's clip_skip 2 is diffusers' 1
    assert kw["eta"] == pytest.approx(0.4)


def test_wiring_images_strengths_control_guidance(recorded):
    kw, _, (init, mask, control) = recorded
    assert np.array_equal(np.asarray(kw["image"])[:, 32:96], init) and kw["strength"] == pytest.approx(0.55)
    assert np.array_equal(np.asarray(kw["mask_image"])[:, 32:96], mask)
    assert np.array_equal(np.asarray(kw["control_image"])[:, 32:96], control)
    assert kw["controlnet_conditioning_scale"] == pytest.approx(0.6)
    assert (kw["control_guidance_start"], kw["control_guidance_end"]) == (pytest.approx(0.2), pytest.approx(0.8))


def test_wiring_loras_and_vae_tiling(recorded):
    half, full, _ = recorded
    assert half["_vae_tiling"] is True and full["_vae_tiling"] is False
    ((name, scale_half),) = half["_lora_scales"].items()
    assert full["_lora_scales"][name] == pytest.approx(2 * scale_half)  # the weight reached the LoRA layers


def test_wiring_callbacks(torch_model):
    steps, previews = [], []
    torch_model.generate(
        "a cube",
        seed=1,
        width=64,
        height=64,
        steps=4,
        cfg_scale=1.0,
        callback=lambda s, t, e: steps.append(s),
        preview=lambda s, ims: previews.append(s),
        preview_options=g.PreviewSpec("proj", 2),
    )
    assert steps == [1, 2, 3, 4] and previews == [2, 4]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(ref_images=[np.zeros((64, 64, 3), np.uint8)]), "ref_images"),
        (dict(hires=g.Hires()), "hires"),
        (dict(cache=g.Cache()), "cache"),
        (dict(guidance=g.Guidance(image_cfg_scale=1.5)), "guidance"),
    ],
)
def test_wiring_what_torch_cannot_run_is_refused(torch_model, kwargs, name):
    with pytest.raises(g.InvalidInputError, match=name):
        torch_model.generate("a cube", **KW, **kwargs)


#: Keywords of SDModel.generate and the torch test that covers each (photo_maker: SDModel refuses it
#: without a PhotoMaker file, and the torch engine refuses PhotoMaker like ref_images).
TORCH_COVERED = {
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "sampler",
    "scheduler",
    "seed",
    "batch",
    "clip_skip",
    "loras",
    "control_image",
    "control_strength",
    "control_guidance",
    "init_image",
    "strength",
    "mask",
    "ref_images",
    "photo_maker",
    "hires",
    "cache",
    "vae_tiling",
    "guidance",
    "eta",
    "callback",
    "preview",
    "preview_options",
}


def test_wiring_every_keyword_is_covered():
    import inspect

    assert set(inspect.signature(g.SDModel.generate).parameters) - {"self"} == TORCH_COVERED


# --------------------------------------------------------------------------- LCM-LoRA, merged into the weights


def test_lcm_lora_reaches_every_layer_merged_or_not(torch_model, monkeypatch):
    """The LCM-LoRA's 278 layers (convs, time embeddings, samplers, attention) all take it; in fp32
    the engine merges it into the weights, which gives the adapters' image, and unmerging gives
    the plain model back."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    eng = torch_model._engine
    lcm = forge.lcm_lora_sd1()
    kw = dict(width=64, height=64, steps=2, cfg_scale=1.0, sampler="lcm", seed=2)
    plain = torch_model.generate("a cube", **kw).images[0]
    monkeypatch.setattr(eng, "fuse_loras", False)
    adapters = torch_model.generate("a cube", loras=[(lcm, 1.0)], **kw).images[0]
    name = eng._adapters[str(lcm.resolve())]
    layers = [m for m in eng.base.unet.modules() if isinstance(m, BaseTunerLayer) and name in m.lora_A]
    assert len(layers) == 278 and not any(m.merged for m in layers)
    monkeypatch.setattr(eng, "fuse_loras", True)
    merged = torch_model.generate("a cube", loras=[(lcm, 1.0)], **kw).images[0]
    assert all(m.merged for m in layers) == (eng.dtype_name == "fp32")
    assert diff(merged, plain) > 5
    assert np.abs(px(merged) - px(adapters)).max() <= 1  # the same sum, up to float rounding
    again = torch_model.generate("a cube", loras=[(lcm, 0.0)], **kw).images[0]
    assert np.abs(px(again) - px(plain)).max() <= 1  # unmerged: the plain weights are back
