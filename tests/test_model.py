"""High-level API: SDModel and the one-call functions, real engine on forged models."""

from __future__ import annotations

import hashlib
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache.testing import forge

KW = dict(width=64, height=64, steps=2, cfg_scale=1.0)


@pytest.fixture(scope="module")
def model(tiny_model, taesd_model):
    # sdcpp on purpose: these tests hold its exact behaviour (a batch's second image equals
    # the single image of the next seed bit for bit); "auto" now picks torch for tiny UNets
    # (tests/test_fast_path.py covers that engine).
    with g.SDModel(tiny_model, taesd=taesd_model, engine="sdcpp") as m:
        yield m


def px(im: Image.Image) -> np.ndarray:
    return np.asarray(im).astype(np.int16)


def test_generate_result_fields(model):
    res = model.generate("a cube", seed=5, **KW)
    assert isinstance(res, g.GenerationResult)
    assert len(res.images) == 1 and res.images[0].size == (64, 64) and res.images[0].mode == "RGB"
    assert res.seeds == [5]
    assert res.parameters["steps"] == 2 and res.parameters["width"] == 64 and res.parameters["family"] == model.family
    assert "Steps: 2" in res.infotexts[0] and "Seed: 5" in res.infotexts[0] and "Size: 64x64" in res.infotexts[0]
    assert {"load", "prepare", "sample", "decode", "total"} <= set(res.timings)
    again = model.generate("a cube", seed=5, **KW)
    assert np.array_equal(px(res.images[0]), px(again.images[0]))


def test_random_seed_is_resolved_and_reproducible(model):
    res = model.generate("a cube", seed=-1, **KW)
    (seed,) = res.seeds
    assert 0 <= seed < 2**32
    same = model.generate("a cube", seed=seed, **KW)
    assert np.array_equal(px(res.images[0]), px(same.images[0]))


def test_batch_seeds(model):
    res = model.generate("a cube", seed=10, batch=2, **KW)
    assert res.seeds == [10, 11] and len(res.images) == 2 and len(res.infotexts) == 2
    single = model.generate("a cube", seed=11, **KW)
    assert np.array_equal(px(res.images[1]), px(single.images[0]))


def test_size_not_multiple_of_64_is_exact_and_reported(model):
    res = model.generate("a cube", seed=1, width=100, height=70, steps=1, cfg_scale=1.0)
    assert res.images[0].size == (100, 70)
    assert "128x128" in res.parameters["size_policy"] and "100x70" in res.parameters["size_policy"]


def test_img2img_letterboxes_other_aspect(model):
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
    other = Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
    res = model.generate("a cube", init_image=init, strength=0.5, seed=2, width=64, height=64, steps=4, cfg_scale=1.0)
    assert res.images[0].size == (64, 64)
    assert "letterboxed" in res.parameters["size_policy"] and "128x64" in res.parameters["size_policy"]
    res2 = model.generate("a cube", init_image=other, strength=0.5, seed=2, width=64, height=64, steps=4, cfg_scale=1.0)
    assert np.abs(px(res.images[0]) - px(res2.images[0])).mean() > 0.5  # the init image matters


def test_init_image_sets_size_and_accepts_arrays(model):
    arr = np.random.default_rng(0).random((64, 128, 3)).astype(np.float32)
    res = model.generate("a cube", init_image=arr, strength=0.6, seed=3, steps=2, cfg_scale=1.0)
    assert res.images[0].size == (128, 64)


def test_inpaint_mask_limits_change(model):
    init = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    a, b = (model.generate("x", init_image=init, mask=mask, strength=1.0, seed=s, **KW).images[0] for s in (1, 2))
    d = np.abs(px(a) - px(b)).mean(axis=2)
    assert d[:, 48:].mean() > 5 * d[:, :16].mean() + 1


def test_lora_tags_resolve_against_lora_dir(tiny_model, taesd_model, tmp_path):
    (tmp_path / "styles").mkdir()
    shutil.copy(forge.lora_sd1_tiny(), tmp_path / "styles" / "MyStyle.safetensors")
    with g.SDModel(tiny_model, taesd=taesd_model, lora_dir=tmp_path) as m:
        base = m.generate("a cube", seed=4, **KW)
        zero = m.generate("a cube <lora:MyStyle:0>", seed=4, **KW)
        one = m.generate("a cube <lora:styles/MyStyle:1.0>", seed=4, **KW)
        named = m.generate("a cube", loras=[("MyStyle", 1.0)], seed=4, **KW)
    assert zero.parameters["prompt"] == "a cube <lora:MyStyle:0>"  # A1111 keeps the tags in the prompt
    assert named.parameters["prompt"] == "a cube <lora:MyStyle:1>"  # LoRAs given as arguments become tags
    assert np.abs(px(base.images[0]) - px(zero.images[0])).mean() < 0.5
    assert np.abs(px(base.images[0]) - px(one.images[0])).mean() > 1
    assert np.array_equal(px(one.images[0]), px(named.images[0]))
    short = hashlib.sha256((tmp_path / "styles" / "MyStyle.safetensors").read_bytes()).hexdigest()  # whole file
    data = (tmp_path / "styles" / "MyStyle.safetensors").read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()[:12]  # A1111: tensor data
    assert addnet != short[:12]
    assert f'Lora hashes: "styles/MyStyle: {addnet}"' in one.infotexts[0]  # A1111 quotes values with ':'
    assert one.infotexts[0].startswith("a cube <lora:styles/MyStyle:1.0>\n")


def test_progress_and_preview_callbacks(model):
    steps, previews = [], []
    model.generate(
        "a cube",
        seed=1,
        width=64,
        height=64,
        steps=3,
        cfg_scale=1.0,
        callback=lambda s, t, e: steps.append((s, t, e)),
        preview=lambda s, ims: previews.append(ims),
        preview_options=g.PreviewSpec("proj", 1),
    )
    assert [s for s, _, _ in steps] == [1, 2, 3] and all(t == 3 for _, t, _ in steps)
    assert all(b[2] >= a[2] for a, b in zip(steps, steps[1:]))
    assert previews and isinstance(previews[-1][0], Image.Image)


def test_cfg_one_negative_prompt_warns(model, caplog):
    with caplog.at_level(logging.WARNING, logger="gouache"):
        model.generate("a cube", negative_prompt="blurry", seed=1, **KW)
    assert any("negative prompt has no effect" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sampler="bogus"), "euler_a"),
        (dict(scheduler="nope"), "karras"),
        (dict(steps=0), "steps"),
        (dict(width=-5), "width"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(strength=2.0, init_image=np.zeros((8, 8, 3), np.uint8)), "strength"),
        (dict(mask=np.zeros((8, 8), np.uint8)), "init_image"),
        (dict(control_image=np.zeros((8, 8, 3), np.uint8)), "ControlNet"),
        (dict(loras=[("missing-lora", 1.0)]), "missing-lora"),
        (dict(seed=1.5), "seed"),
        (dict(batch=0), "batch"),
        (dict(init_image=np.zeros((8, 8, 2), np.uint8)), "init_image"),
        (dict(hires="yes"), "Hires"),
    ],
)
def test_check_inputs(model, kwargs, fragment):
    with pytest.raises(g.InvalidInputError, match=None) as exc:
        model.generate("a cube", **{**KW, **kwargs})
    assert fragment in str(exc.value)


def test_video_on_image_model_refused(model):
    with pytest.raises(g.InvalidInputError, match="cannot generate video"):
        model.generate_video("a wave")


def test_save_writes_parameters_and_never_overwrites(model, tmp_path):
    res = model.generate("a cube, red", negative_prompt="blurry", seed=8, batch=2, **KW)
    paths = res.save(tmp_path / "out.png")
    assert [p.name for p in paths] == ["out-1.png", "out-2.png"]
    info = g.read_parameters(paths[1])
    assert info["prompt"] == "a cube, red" and info["negative_prompt"] == "blurry" and info["seed"] == 9
    before = paths[0].read_bytes()
    with pytest.raises(g.InvalidInputError, match="exists"):
        res.save(tmp_path / "out.png")
    assert paths[0].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-1.png", "out-2.png"]


@pytest.mark.slow
def test_one_call_functions(tiny_model, taesd_model, tmp_path):
    mk = {"taesd": taesd_model}
    t2i = g.text_to_image(tiny_model, "a cube", seed=3, model_kwargs=mk, **KW)
    i2i = g.image_to_image(tiny_model, t2i.images[0], "a cube", strength=0.5, seed=3, model_kwargs=mk, **KW)
    mask = Image.new("L", (64, 64), 255)
    inp = g.inpaint(tiny_model, t2i.images[0], mask, "a cube", seed=3, model_kwargs=mk, **KW)
    assert t2i.images[0].size == i2i.images[0].size == inp.images[0].size == (64, 64)
    big = g.upscale(t2i.images[0], forge.esrgan_x4())
    assert big.size == (256, 256)


def test_model_family_and_defaults(model):
    assert model.family in ("sd1_tiny", "sd1")
    assert model.defaults.width > 0 and model.defaults.steps > 0


def test_closed_model(tiny_model, taesd_model):
    m = g.SDModel(tiny_model, taesd=taesd_model)
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(g.InvalidInputError, match="closed"):
        m.generate("x", **KW)


def test_missing_files_refused(tmp_path):
    with pytest.raises(g.InvalidInputError, match="not found"):
        g.SDModel(tmp_path / "nope.safetensors")
    with pytest.raises(g.InvalidInputError, match="model="):
        g.SDModel()
