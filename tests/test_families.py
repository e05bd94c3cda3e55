"""Model family detection from file headers, few-step detection, per-family defaults, inspect()."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter

import pytest

from gouache._errors import InvalidInputError
from gouache._modelfiles.defaults import FamilyDefaults, defaults_for
from gouache._modelfiles.families import Family, detect_family, is_few_step
from gouache._modelfiles.headers import read_tensors
from gouache._modelfiles.inspect import ModelInfo, inspect
from gouache._sdcpp.native import SampleMethod, Scheduler
from gouache.testing import forge

DM = "model.diffusion_model."
CLIP_L = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4}


def write_header(path, shapes: dict, *, dtype: str = "F16", metadata: dict | None = None):
    """A header-only safetensors file: real names and shapes, no tensor data (detection reads headers only)."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, tensors: dict, kv: dict):
    """A header-only GGUF v3: string/uint32/array key-values and tensor infos (dtype ids per ggml)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, value in kv.items():
        out += _gguf_string(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + _gguf_string(value)
        elif isinstance(value, list):  # array of strings
            out += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_gguf_string(v) for v in value)
        else:
            out += struct.pack("<II", 4, value)
    for name, (ggml_type, shape) in tensors.items():
        out += _gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape)) + struct.pack("<IQ", ggml_type, 0)
    path.write_bytes(out)
    return path


def family_of(tmp_path, shapes: dict, name: str = "model.safetensors", **kw) -> ModelInfo:
    return inspect(write_header(tmp_path / name, shapes, **kw))


# --------------------------------------------------------------------------- layouts


def unet_layout(kind: str = "sd1", *, in_ch: int | None = None, width: int | None = None) -> dict:
    """A forge layout (real SD1 / tiny / SDXS names and shapes) with the input channels or the
    text-encoder width changed (SD2 is SD1's layout with a 1024-wide OpenCLIP embedding here)."""
    shapes = dict(forge._layout(kind))
    if in_ch is not None:
        w = shapes[DM + "input_blocks.0.0.weight"]
        shapes[DM + "input_blocks.0.0.weight"] = (w[0], in_ch, *w[2:])
    if width is not None:
        shapes[CLIP_L] = (49408, width)
    return shapes


def sdxl_layout(*, in_ch: int = 4, mid: bool = True, out311: bool = True, encoders: bool = True) -> dict:
    """The tensors SDXL detection keys on, with SDXL's shapes."""
    shapes = {
        DM + "input_blocks.0.0.weight": (320, in_ch, 3, 3),
        DM + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        DM + "label_emb.0.0.weight": (1280, 2816),
        DM + "output_blocks.0.0.in_layers.2.weight": (1280, 2560, 3, 3),
    }
    if mid:
        shapes[DM + "middle_block.1.proj_in.weight"] = (1280, 1280)
    if out311:
        shapes[DM + "output_blocks.3.1.transformer_blocks.1.attn1.to_k.weight"] = (640, 640)
    if encoders:
        shapes["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 768)
        shapes["conditioner.embedders.1.model.token_embedding.weight"] = (49408, 1280)
    return shapes


def flux_layout(*, prefix: str = DM, in_width: int = 64, guidance: bool = True, chroma: bool = False) -> dict:
    shapes = {
        prefix + "img_in.weight": (3072, in_width),
        prefix + "double_blocks.0.img_attn.qkv.weight": (9216, 3072),
        prefix + "single_blocks.37.linear1.weight": (21504, 3072),
    }
    if guidance:
        shapes[prefix + "guidance_in.in_layer.weight"] = (3072, 256)
    if chroma:
        shapes[prefix + "distilled_guidance_layer.in_proj.weight"] = (5120, 64)
    return shapes


def wan_layout(*, dim: int = 1536, in_ch: int = 16, img_emb: bool = False, prefix: str = DM) -> dict:
    shapes = {
        prefix + "patch_embedding.weight": (dim, in_ch, 1, 2, 2),
        prefix + "blocks.0.cross_attn.norm_k.weight": (dim,),
        prefix + "blocks.29.cross_attn.norm_k.weight": (dim,),
    }
    if img_emb:
        shapes[prefix + "img_emb.proj.0.weight"] = (1280,)
    return shapes


def sd3_layout(depth: int, *, attn2: bool = False) -> dict:
    shapes = {DM + f"joint_blocks.{i}.x_block.attn.qkv.weight": (64 * depth * 3, 64 * depth) for i in range(depth)}
    if attn2:
        shapes[DM + "joint_blocks.0.x_block.attn2.qkv.weight"] = (64 * depth * 3, 64 * depth)
    return shapes


CASES = {
    # name: (shapes, family, variant)
    "sd1": (unet_layout(), Family.SD1, None),
    "sd1_inpaint": (unet_layout(in_ch=9), Family.SD1_INPAINT, None),
    "sd1_pix2pix": (unet_layout(in_ch=8), Family.SD1_PIX2PIX, None),
    "sd1_tiny": (unet_layout("sd1_tiny"), Family.SD1_TINY, "tiny_unet"),
    "sdxs": (unet_layout("sdxs"), Family.SD1_TINY, "sdxs_512_ds"),
    "sd2": (unet_layout(width=1024), Family.SD2, None),
    "sd2_inpaint": (unet_layout(in_ch=9, width=1024), Family.SD2_INPAINT, None),
    "sd2_tiny": (unet_layout("sd1_tiny", width=1024), Family.SD2_TINY, "tiny_unet"),
    "sdxs_09": (
        {
            **unet_layout("sd1_tiny", width=1024),
            DM + "output_blocks.7.1.transformer_blocks.0.attn1.to_k.weight": (1024, 1024),
        },
        Family.SD2_TINY,
        "sdxs_09",
    ),
    "sd1_unet_only": ({k[len(DM) :]: v for k, v in unet_layout().items() if k.startswith(DM)}, Family.SD1, None),
    "sdxl": (sdxl_layout(), Family.SDXL, None),
    "sdxl_inpaint": (sdxl_layout(in_ch=9), Family.SDXL_INPAINT, None),
    "sdxl_pix2pix": (sdxl_layout(in_ch=8), Family.SDXL_PIX2PIX, None),
    "ssd1b": (sdxl_layout(mid=False), Family.SDXL_DISTILLED, "ssd1b"),
    "vega": (sdxl_layout(mid=False, out311=False), Family.SDXL_DISTILLED, "vega"),
    "sdxl_unet_only": (sdxl_layout(encoders=False), Family.SDXL, None),
    "sdxl_diffusers_unet": (
        {
            "conv_in.weight": (320, 4, 3, 3),
            "time_embedding.linear_1.weight": (1280, 320),
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
            "mid_block.resnets.1.conv1.weight": (1280, 1280, 3, 3),
        },
        Family.SDXL,
        None,
    ),
    "sdxl_refiner": (
        {
            DM + "input_blocks.0.0.weight": (384, 4, 3, 3),
            DM + "middle_block.1.proj_in.weight": (1536, 1536),
            "conditioner.embedders.0.model.token_embedding.weight": (49408, 1280),
        },
        Family.UNKNOWN,
        "sdxl_refiner",
    ),
    "sd3_medium": (sd3_layout(24), Family.SD3, "sd3_medium"),
    "sd3.5_medium": (sd3_layout(24, attn2=True), Family.SD3, "sd3.5_medium"),
    "sd3.5_large": (sd3_layout(38), Family.SD3, "sd3.5_large"),
    "flux_dev": (flux_layout(), Family.FLUX, "dev"),
    "flux_dev_unprefixed": (flux_layout(prefix=""), Family.FLUX, "dev"),
    "flux_schnell": (flux_layout(guidance=False), Family.FLUX, "schnell"),
    "chroma": (flux_layout(guidance=False, chroma=True), Family.FLUX, "chroma"),
    "flux_fill": (flux_layout(in_width=384), Family.FLUX_FILL, None),
    "flux_controls": (flux_layout(in_width=128), Family.FLUX, "controls"),
    "flux2_dev": (
        {
            DM + "double_stream_modulation_img.lin.weight": (36864, 6144),
            DM + "double_blocks.0.img_attn.qkv.weight": (1, 1),
            DM + "single_blocks.47.linear1.weight": (1, 1),
        },
        Family.FLUX2,
        "dev",
    ),
    "flux2_klein": (
        {
            "double_stream_modulation_img.lin.weight": (18432, 3072),
            "double_blocks.0.img_attn.qkv.weight": (1, 1),
            "single_blocks.19.linear1.weight": (1, 1),
        },
        Family.FLUX2,
        "klein",
    ),
    "wan2.1_t2v_1.3b": (wan_layout(), Family.WAN2_1, "t2v"),
    "wan2.1_i2v_14b": (wan_layout(dim=5120, in_ch=36, img_emb=True), Family.WAN2_1, "i2v"),
    "wan2.1_vace_unprefixed": (
        {**wan_layout(prefix=""), "vace_blocks.0.after_proj.weight": (1536, 1536)},
        Family.WAN2_1,
        "vace",
    ),
    "wan2.2_i2v_a14b": (wan_layout(dim=5120, in_ch=36), Family.WAN2_2, "i2v_a14b"),
    "wan2.2_ti2v_5b": (wan_layout(dim=3072, in_ch=48), Family.WAN2_2, "ti2v_5b"),
    "qwen_image": ({DM + "transformer_blocks.0.img_mod.1.weight": (18432, 3072)}, Family.QWEN_IMAGE, None),
    "qwen_image_edit_2511": (
        {"transformer_blocks.0.img_mod.1.weight": (18432, 3072), "__index_timestep_zero__": (1,)},
        Family.QWEN_IMAGE,
        "edit_2511",
    ),
    "z_image": ({"cap_embedder.0.weight": (2560,)}, Family.Z_IMAGE, None),
    "svd": ({**unet_layout(), DM + "input_blocks.8.0.time_mixer.mix_factor": (1,)}, Family.UNKNOWN, "svd"),
    # components
    "controlnet_diffusers": (
        {
            "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
            "down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3),
        },
        Family.CONTROLNET,
        None,
    ),
    "controlnet_flux": (
        {"controlnet_blocks.0.weight": (3072, 3072), "double_blocks.0.img_attn.qkv.weight": (1, 1)},
        Family.CONTROLNET,
        None,
    ),
    "lora_peft": (
        {
            "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": (16, 3072),
            "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": (3072, 16),
        },
        Family.LORA,
        None,
    ),
    "lora_diffusers": ({"unet.down_blocks.0.attentions.0.proj_in.lora.up.weight": (320, 4)}, Family.LORA, None),
    "lora_flux_ldm": ({DM + "double_blocks.0.img_attn.qkv.lora_up.weight": (9216, 16)}, Family.LORA, None),
    "vae_sd": (
        {
            "encoder.conv_in.weight": (128, 3, 3, 3),
            "decoder.conv_in.weight": (512, 4, 3, 3),
            "quant_conv.weight": (8, 8, 1, 1),
        },
        Family.VAE,
        "4ch",
    ),
    "vae_flux": (
        {"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_in.weight": (512, 16, 3, 3)},
        Family.VAE,
        "16ch",
    ),
    "vae_wan2.1": (
        {"encoder.conv1.weight": (96, 3, 3, 3, 3), "decoder.conv1.weight": (384, 16, 3, 3, 3)},
        Family.VAE,
        "16ch_video",
    ),
    "vae_ldm_prefixed": ({"first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3)}, Family.VAE, "4ch"),
    "taesd_flux": (
        {"decoder.layers.0.weight": (64, 16, 3, 3), "encoder.layers.0.weight": (64, 3, 3, 3)},
        Family.TAESD,
        "16ch",
    ),
    "esrgan_old_names": (
        {"model.0.weight": (64, 3, 3, 3), "model.1.sub.0.RDB1.conv1.0.weight": (32, 64, 3, 3)},
        Family.ESRGAN,
        None,
    ),
    "clip_l": (
        {
            "text_model.embeddings.token_embedding.weight": (49408, 768),
            "text_model.encoder.layers.0.mlp.fc1.weight": (3072, 768),
        },
        Family.TEXT_ENCODER,
        "clip_l",
    ),
    "clip_g": ({"text_model.embeddings.token_embedding.weight": (49408, 1280)}, Family.TEXT_ENCODER, "clip_g"),
    "t5xxl": (
        {"shared.weight": (32128, 4096), "encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 4096)},
        Family.TEXT_ENCODER,
        "t5",
    ),
    "t5_with_decoder": (
        {
            "shared.weight": (32128, 512),
            "encoder.block.0.layer.0.SelfAttention.q.weight": (512, 512),
            "decoder.block.0.layer.0.SelfAttention.q.weight": (512, 512),
        },
        Family.TEXT_ENCODER,
        "t5",
    ),
    "qwen3_llm": (
        {
            "model.embed_tokens.weight": (151936, 2560),
            "model.layers.0.self_attn.q_proj.weight": (4096, 2560),
            "model.layers.0.self_attn.q_norm.weight": (128,),
        },
        Family.TEXT_ENCODER,
        "qwen3_4b",
    ),
    "qwen2.5_vl_llm": (
        {"model.embed_tokens.weight": (152064, 3584), "model.layers.0.self_attn.q_proj.bias": (3584,)},
        Family.TEXT_ENCODER,
        "qwen2.5_vl_7b",
    ),
    "mistral_llm_gguf_names": (
        {"token_embd.weight": (131072, 5120), "blk.39.attn_q.weight": (4096, 5120)},
        Family.TEXT_ENCODER,
        "mistral_small_3.2_24b",
    ),
    "small_qwen3_llm": (
        {"model.embed_tokens.weight": (151936, 64), "model.layers.0.self_attn.k_norm.weight": (128,)},
        Family.TEXT_ENCODER,
        "qwen3",
    ),
    "qwen2.5_vl_vision": (
        {"blocks.0.attn.qkv.weight": (3840, 1280), "merger.mlp.0.weight": (5120, 5120)},
        Family.TEXT_ENCODER,
        "qwen2.5_vl_vision",
    ),
    "vae_flux2": (
        {"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_in.weight": (512, 32, 3, 3)},
        Family.VAE,
        "32ch",
    ),
    "clip_vision": (
        {"vision_model.embeddings.patch_embedding.weight": (1280, 3, 14, 14)},
        Family.UNKNOWN,
        "clip_vision",
    ),
    "nonsense": ({"foo.bar": (3,), "baz": (1, 2)}, Family.UNKNOWN, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_detects_family_from_header(tmp_path, case):
    shapes, family, variant = CASES[case]
    info = family_of(tmp_path, shapes)
    assert (info.family, info.variant) == (family, variant)
    assert info.tensor_count == len(shapes)
    assert info.dtypes == {"F16": len(shapes)}
    assert info.parameters == sum(math.prod(s) for s in shapes.values())
    assert info.defaults == defaults_for(family, info.few_step, variant=variant)


def test_detect_family_from_tensor_dict_directly():
    tensors = read_tensors(forge.sdxs())
    assert detect_family(tensors) == (Family.SD1_TINY, "sdxs_512_ds")
    assert detect_family(None) == (Family.UNKNOWN, None)


# --------------------------------------------------------------------------- the forged models


@pytest.mark.parametrize(
    "make, family, variant, few_step",
    [
        (forge.sd1, Family.SD1, None, False),
        (forge.sd1_tiny, Family.SD1_TINY, "tiny_unet", False),
        (forge.sdxs, Family.SD1_TINY, "sdxs_512_ds", True),
        (forge.taesd, Family.TAESD, "4ch", False),
        (forge.controlnet_sd1, Family.CONTROLNET, None, False),
        (forge.esrgan_x4, Family.ESRGAN, None, False),
        (forge.lora_sd1, Family.LORA, None, False),
        (lambda: forge.lora_sd1(naming="ldm"), Family.LORA, None, False),
        (forge.lora_sd1_tiny, Family.LORA, None, False),
        (forge.gguf, Family.SD1_TINY, "tiny_unet", False),
    ],
)
def test_forged_models(make, family, variant, few_step):
    info = inspect(make())
    assert (info.family, info.variant, info.few_step) == (family, variant, few_step)
    assert info.size_bytes == info.path.stat().st_size


@pytest.mark.parametrize(
    "make, family, variant, few_step",
    [
        (forge.flux, Family.FLUX, "dev", False),
        (lambda: forge.flux(guidance=False), Family.FLUX, "schnell", True),
        (forge.flux_vae, Family.VAE, "16ch", False),
        (forge.clip_l, Family.TEXT_ENCODER, "clip_l", False),
        (forge.taehv, Family.TAESD, "16ch_video", False),
        (lambda: forge.taehv(encoder=False), Family.TAESD, "16ch_video", False),
    ],
)
def test_forged_dit_models(make, family, variant, few_step):
    info = inspect(make())
    assert (info.family, info.variant, info.few_step) == (family, variant, few_step)


@pytest.mark.forge_large  # forges the 2.8 GB Wan 1.3B source once, then converts it
def test_forged_wan_gguf():
    info = inspect(forge.wan21_t2v_gguf())  # cached; tests/test_dit_engine.py uses the same file
    assert (info.family, info.variant, info.file_kind) == (Family.WAN2_1, "t2v", "gguf")
    assert info.defaults.video_frames == 33 and info.defaults.flow_shift == 3.0
    assert set(info.dtypes) == {"F16", "Q4_0"}


def test_forged_sdxs_defaults_one_step():
    d = inspect(forge.sdxs()).defaults
    assert (d.width, d.height, d.steps, d.cfg_scale) == (512, 512, 1, 1.0)


def test_gguf_dtypes_and_parameters():
    path = forge.gguf()
    info = inspect(path)
    tensors = read_tensors(path)
    assert info.file_kind == "gguf"
    assert info.dtypes == dict(Counter(t.dtype for t in tensors.values()))
    assert info.dtypes["Q8_0"] > 0 and info.dtypes["F16"] > 0
    assert sum(info.dtypes.values()) == info.tensor_count == len(tensors)
    # the same model as the safetensors it was converted from
    assert info.parameters == inspect(forge.sd1_tiny()).parameters


def test_safetensors_metadata_is_reported():
    info = inspect(forge.sd1_tiny())
    assert info.file_kind == "safetensors"
    assert info.metadata["gouache.forge"] == "sd1_tiny"


def test_gguf_key_values(tmp_path):
    path = write_gguf(
        tmp_path / "flux1-dev-Q4_K.gguf",
        {
            "img_in.weight": (12, (3072, 64)),
            "double_blocks.0.img_attn.qkv.weight": (12, (9216, 3072)),
            "guidance_in.in_layer.weight": (1, (3072, 256)),
        },
        {"general.architecture": "flux", "general.quantization_version": 2, "tokenizer.ggml.tokens": ["a", "b"]},
    )
    info = inspect(path)
    assert (info.family, info.variant, info.few_step) == (Family.FLUX, "dev", False)
    assert info.metadata == {"general.architecture": "flux", "general.quantization_version": "2"}
    assert info.dtypes == {"Q4_K": 2, "F16": 1}


# --------------------------------------------------------------------------- pickled checkpoints


@pytest.mark.parametrize(
    "name, family",
    [
        ("RealESRGAN_x4plus.pth", Family.ESRGAN),
        ("4x-UltraSharp.pth", Family.ESRGAN),
        ("v1-5-pruned-emaonly.ckpt", Family.SD1),
        ("sd-v1-5-inpainting.ckpt", Family.SD1_INPAINT),
        ("v2-1_768-ema-pruned.ckpt", Family.SD2),
        ("sd_xl_base_1.0.ckpt", Family.SDXL),
        ("control_v11p_sd15_canny.pth", Family.CONTROLNET),
        ("vae-ft-mse-840000-ema-pruned.ckpt", Family.VAE),
        ("mystery.ckpt", Family.UNKNOWN),
    ],
)
def test_pickled_checkpoints_use_the_file_name(tmp_path, name, family):
    path = tmp_path / name
    path.write_bytes(b"\x80\x02}q\x00.")  # a pickle; never unpickled
    info = inspect(path)
    assert (info.file_kind, info.family) == ("ckpt", family)
    assert (info.tensor_count, info.dtypes, info.parameters, info.metadata) == (None, {}, None, {})


# --------------------------------------------------------------------------- few-step


@pytest.mark.parametrize(
    "name, few",
    [
        ("sdxl_lightning_4step_unet.safetensors", True),
        ("DreamShaperXL_Turbo_v2.safetensors", True),
        ("lcm-lora-sdv1-5.safetensors", True),
        ("Hyper-SD15-8steps-lora.safetensors", True),
        ("juggernautXL_v9Rdphoto2Lightning.safetensors", True),
        ("sdxs-512-dreamshaper.safetensors", True),
        ("flux1-schnell.safetensors", True),
        ("wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors", True),
        ("dmd2_sdxl_4step_lora.safetensors", True),
        ("photonLCM_v10.safetensors", True),
        ("Hyper-FLUX.1-dev-8steps-lora.safetensors", True),
        ("hyperRealism_30.safetensors", False),
        ("FLASHback_v2.safetensors", False),
        ("v1-5-pruned-emaonly.safetensors", False),
        ("model_25steps_finetune.safetensors", False),
        ("sd_xl_base_1.0.safetensors", False),
    ],
)
def test_few_step_from_file_name(name, few):
    assert is_few_step(name, None, {}) is few


def test_few_step_from_metadata_and_tensors(tmp_path):
    assert is_few_step(None, None, {"modelspec.title": "SDXL Lightning 8-step"})
    assert is_few_step(None, None, {"ss_output_name": "my_LCM_lora"})
    assert not is_few_step(None, None, {"modelspec.description": "not turbo, but a real model"})
    schnell = read_tensors(write_header(tmp_path / "f.safetensors", CASES["flux_schnell"][0]))
    assert is_few_step("flux.safetensors", schnell)  # no guidance_in: schnell
    assert not is_few_step("flux.safetensors", read_tensors(write_header(tmp_path / "d.safetensors", flux_layout())))
    klein = write_header(tmp_path / "flux-2-klein-4b.safetensors", CASES["flux2_klein"][0])
    klein_base = write_header(tmp_path / "flux-2-klein-base-4b.safetensors", CASES["flux2_klein"][0])
    assert inspect(klein).few_step and not inspect(klein_base).few_step
    assert inspect(klein_base).defaults.cfg_scale == 4.0


def test_few_step_sdxl_lightning_defaults(tmp_path):
    info = family_of(tmp_path, sdxl_layout(), "sdxl_lightning_4step.safetensors")
    assert (info.family, info.few_step) == (Family.SDXL, True)
    d = info.defaults
    assert (d.width, d.steps, d.cfg_scale, d.sampler, d.scheduler) == (1024, 4, 1.0, "euler", "sgm_uniform")


def test_few_step_from_safetensors_metadata(tmp_path):
    info = family_of(tmp_path, sdxl_layout(), metadata={"modelspec.title": "Some SDXL Turbo merge"})
    assert info.few_step and info.metadata == {"modelspec.title": "Some SDXL Turbo merge"}


def test_components_are_never_few_step(tmp_path):
    info = family_of(tmp_path, CASES["vae_sd"][0], "sdxl_turbo_vae.safetensors")
    assert (info.family, info.few_step) == (Family.VAE, False)


def test_wan22_t2v_needs_the_file_name(tmp_path):
    shapes = wan_layout(dim=5120)
    assert family_of(tmp_path, shapes, "wan2.1_t2v_14B.safetensors").family == Family.WAN2_1
    info = family_of(tmp_path, shapes, "Wan2.2-T2V-A14B-LowNoise-Q8_0.safetensors")
    assert (info.family, info.variant) == (Family.WAN2_2, "t2v_a14b")


def test_flux_kontext_by_file_name(tmp_path):
    info = family_of(tmp_path, flux_layout(), "flux1-kontext-dev.safetensors")
    assert (info.family, info.variant, info.defaults.distilled_guidance) == (Family.FLUX, "kontext", 2.5)


def test_sd2_v_prediction_gets_768(tmp_path):
    base = unet_layout(width=1024)
    assert family_of(tmp_path, base).defaults.width == 512
    info = family_of(tmp_path, {**base, "v_pred": (1,)}, "vpred.safetensors")
    assert (info.family, info.variant, info.defaults.width, info.defaults.height) == (Family.SD2, "768-v", 768, 768)
    assert family_of(tmp_path, base, "v2-1_768-v-ema.safetensors").variant == "768-v"
    assert family_of(tmp_path, base, metadata={"modelspec.prediction_type": "v"}).variant == "768-v"


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    "family, few, expected",
    [
        (Family.SD1, False, (512, 512, 20, 7.0, "euler_a", None, None, None, None)),
        (Family.SD1, True, (512, 512, 4, 1.0, "lcm", None, None, None, None)),
        (Family.SD1_TINY, True, (512, 512, 1, 1.0, "euler_a", None, None, None, None)),
        (Family.SD2, True, (512, 512, 1, 1.0, "euler_a", None, None, None, None)),
        (Family.SDXL, False, (1024, 1024, 20, 7.0, "euler_a", None, None, None, None)),
        (Family.SDXL_DISTILLED, False, (1024, 1024, 20, 7.0, "euler_a", None, None, None, None)),
        (Family.SD3, False, (1024, 1024, 28, 4.5, "euler", None, None, None, None)),
        (Family.FLUX, False, (1024, 1024, 20, 1.0, "euler", None, 3.5, None, None)),
        (Family.FLUX, True, (1024, 1024, 4, 1.0, "euler", None, None, None, None)),
        (Family.FLUX_FILL, False, (1024, 1024, 20, 1.0, "euler", None, 30.0, None, None)),
        (Family.WAN2_1, False, (832, 480, 30, 6.0, "euler", None, None, 3.0, 33)),
        (Family.WAN2_2, False, (832, 480, 20, 3.5, "euler", None, None, 3.0, 33)),
        (Family.LORA, False, (512, 512, 20, 7.0, None, None, None, None, None)),
        (Family.UNKNOWN, True, (512, 512, 20, 7.0, None, None, None, None, None)),
    ],
)
def test_defaults_table(family, few, expected):
    d = defaults_for(family, few)
    assert (
        d.width,
        d.height,
        d.steps,
        d.cfg_scale,
        d.sampler,
        d.scheduler,
        d.distilled_guidance,
        d.flow_shift,
        d.video_frames,
    ) == expected


def test_variant_defaults():
    assert defaults_for(Family.SD3, variant="sd3.5_large").cfg_scale == 3.5
    assert defaults_for(Family.SD3, variant="sd3.5_medium").steps == 40
    assert defaults_for(Family.FLUX, variant="chroma").cfg_scale == 4.0
    assert defaults_for(Family.WAN2_2, variant="ti2v_5b").cfg_scale == 6.0
    assert defaults_for(Family.SD3, variant="no-such-variant") == defaults_for(Family.SD3)


def test_every_default_uses_engine_names():
    samplers, schedulers = set(SampleMethod.names()), set(Scheduler.names())
    for family in Family:
        for few in (False, True):
            d = defaults_for(family, few)
            assert isinstance(d, FamilyDefaults)
            assert d.sampler is None or d.sampler in samplers
            assert d.scheduler is None or d.scheduler in schedulers


def test_defaults_for_accepts_values_and_rejects_unknown():
    assert defaults_for("wan2.1") == defaults_for(Family.WAN2_1)
    with pytest.raises(InvalidInputError, match="unknown model family 'sd4'; allowed: sd1, "):
        defaults_for("sd4")


def test_family_is_a_str_enum():
    assert Family.WAN2_2 == "wan2.2" and str(Family.SDXL) == "sdxl" and Family("flux_fill") is Family.FLUX_FILL


# --------------------------------------------------------------------------- errors


def test_inspect_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        inspect(tmp_path / "missing.safetensors")
    junk = tmp_path / "notes.safetensors"
    junk.write_text("hello, not a model")
    with pytest.raises(InvalidInputError, match="not a model file"):
        inspect(junk)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInputError, match="empty file"):
        inspect(empty)


def test_model_info_is_frozen(tmp_path):
    info = family_of(tmp_path, CASES["sd1"][0])
    with pytest.raises(AttributeError):
        info.family = Family.SDXL  # type: ignore[misc]
