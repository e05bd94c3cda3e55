"""Parameter objects: defaults mirror the engine's *_init, lowering keeps memory alive, enums parse engine names."""

import ctypes
import gc
import math

import numpy as np
import pytest

import gouache as g
from gouache._sdcpp import native as _native
from gouache._sdcpp.dispatch import lib


def _fields(struct) -> dict:
    out = {}
    for name, _ctype in struct._fields_:
        v = getattr(struct, name)
        if isinstance(v, ctypes.Structure):
            for k, vv in _fields(v).items():
                out[f"{name}.{k}"] = vv
        elif isinstance(v, ctypes._Pointer):
            out[name] = bool(v)
        else:
            out[name] = v
    return out


def _same(a, b) -> bool:
    if a in (None, b"") and b in (None, b""):  # the engine reads NULL text as ""
        return True
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-6
    return a == b


@pytest.mark.parametrize(
    "obj, struct, init, differ",
    [
        (g.SDContextParams(), _native.sd_ctx_params_t, "sd_ctx_params_init", {"free_params_immediately"}),
        (g.SDSampleParams(), _native.sd_sample_params_t, "sd_sample_params_init", set()),
        (g.SDImageGenParams(), _native.sd_img_gen_params_t, "sd_img_gen_params_init", set()),
        (g.SDVideoGenParams(), _native.sd_vid_gen_params_t, "sd_vid_gen_params_init", set()),
    ],
    ids=["ctx", "sample", "img_gen", "vid_gen"],
)
def test_defaults_match_engine_init(obj, struct, init, differ):
    ref = struct()
    getattr(lib(), init)(ctypes.byref(ref))
    mine = obj._lower().struct
    a, b = _fields(mine), _fields(ref)
    assert a.keys() == b.keys()
    mismatched = {k for k in a if not _same(a[k], b[k])}
    assert mismatched == differ


def test_small_struct_defaults_match_engine_init():
    for obj, struct, init in (
        (g.SDCacheParams(), _native.sd_cache_params_t, "sd_cache_params_init"),
        (g.SDHiresParams(), _native.sd_hires_params_t, "sd_hires_params_init"),
    ):
        ref = struct()
        getattr(lib(), init)(ctypes.byref(ref))
        mine = struct()
        obj._fill(mine, [])
        a, b = _fields(mine), _fields(ref)
        assert all(_same(a[k], b[k]) for k in a), obj


def test_lowered_struct_keeps_text_and_images_alive():
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    low = g.SDImageGenParams(
        prompt="prompt " + "x" * 1000,
        init_image=img,
        loras=[("a.safetensors", 0.5)],
        sample_params=g.SDSampleParams(custom_sigmas=[14.6, 1.0, 0.0], slg_layers=[7, 8]),
    )._lower()
    gc.collect()
    c = low.struct
    assert c.prompt == b"prompt " + b"x" * 1000
    assert c.lora_count == 1 and c.loras[0].path == b"a.safetensors" and c.loras[0].multiplier == 0.5
    data = np.ctypeslib.as_array(c.init_image.data, shape=(8 * 8 * 3,))
    assert np.array_equal(data.reshape(8, 8, 3), img)
    assert [c.sample_params.custom_sigmas[i] for i in range(3)] == pytest.approx([14.6, 1.0, 0.0])
    assert c.sample_params.guidance.slg.layer_count == 2 and c.sample_params.guidance.slg.layers[1] == 8


def test_context_params_paths_and_embeddings():
    low = g.SDContextParams(
        model_path="m.safetensors", embeddings={"style": "s.pt"}, wtype="q8_0", n_threads=3
    )._lower()
    c = low.struct
    assert c.model_path == b"m.safetensors" and c.n_threads == 3 and c.wtype == int(g.SDType.Q8_0)
    assert c.embedding_count == 1 and c.embeddings[0].name == b"style" and c.embeddings[0].path == b"s.pt"


@pytest.mark.parametrize(
    "cls, name, member",
    [
        (g.SampleMethod, "euler_a", g.SampleMethod.EULER_A),
        (g.SampleMethod, "dpm++2m", g.SampleMethod.DPMPP2M),
        (g.Scheduler, "karras", g.Scheduler.KARRAS),
        (g.SDType, "q8_0", g.SDType.Q8_0),
        (g.RNGType, "cpu", g.RNGType.CPU),
        (g.Prediction, "v", g.Prediction.V),
        (g.PreviewMode, "tae", g.PreviewMode.TAE),
        (g.LoraApplyMode, "at_runtime", g.LoraApplyMode.AT_RUNTIME),
        (g.HiresUpscaler, "lanczos", g.HiresUpscaler.LANCZOS),
        (g.CacheMode, "easycache", g.CacheMode.EASYCACHE),
        (g.LogLevel, "warn", g.LogLevel.WARN),
    ],
)
def test_enum_parse_engine_names(cls, name, member):
    assert cls.parse(name) is member
    assert cls.parse(member) is member
    assert cls.parse(int(member)) is member


def test_enum_engine_names_roundtrip():
    for cls in (
        g.SampleMethod,
        g.Scheduler,
        g.SDType,
        g.RNGType,
        g.Prediction,
        g.PreviewMode,
        g.LoraApplyMode,
        g.HiresUpscaler,
    ):
        for member in cls:
            assert cls.parse(member.engine_name) is member, (cls, member)


def test_enum_parse_unknown_lists_allowed():
    with pytest.raises(g.InvalidInputError) as exc:
        g.SampleMethod.parse("bogus")
    assert "'bogus'" in str(exc.value) and "euler_a" in str(exc.value) and "dpm++2m" in str(exc.value)
    with pytest.raises(ValueError):
        g.Scheduler.parse(99)


def test_repr_uses_engine_to_str():
    text = repr(g.SDSampleParams(sample_steps=7))
    assert text.startswith("SDSampleParams") and "sample_steps: 7" in text
    ctx_text = repr(g.SDContextParams(model_path="model.gguf"))
    assert "model.gguf" in ctx_text
    assert "a horse" in repr(g.SDImageGenParams(prompt="a horse"))
