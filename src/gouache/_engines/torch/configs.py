"""Offline diffusers configs for the families the torch engine loads from single files.

diffusers' ``from_single_file`` needs a config folder (model_index.json, component
configs, tokenizer files).  Hub downloads are not an option, so the small JSON configs
of each supported family live here and :func:`config_dir` writes them, plus the CLIP
tokenizer files built from the shipped BPE vocabulary, into a cache folder.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

from ... import _files
from ..._errors import InvalidInputError
from ..._files import publish_dir

_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}

_CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}
_OPENCLIP_H = dict(
    _CLIP_L,
    hidden_act="gelu",
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    projection_dim=512,
)
_OPENCLIP_G = dict(
    _CLIP_L,
    architectures=["CLIPTextModelWithProjection"],
    hidden_act="gelu",
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    projection_dim=1280,
)

_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}

_UNET_SD1 = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
_UNET_SD2 = dict(_UNET_SD1, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True)
_UNET_SDXL = dict(
    _UNET_SD1,
    addition_embed_type="text_time",
    addition_embed_type_num_heads=64,
    addition_time_embed_dim=256,
    attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280],
    cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    projection_class_embeddings_input_dim=2816,
    sample_size=128,
    transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    use_linear_projection=True,
)


# The distilled UNets, as their diffusers configs describe them (BK-SDM: Kim et al. 2023; SDXS:
# Song et al. 2024; SSD-1B / Vega: Gupta et al. 2024) and as unet.hpp builds them from the same
# tensors: one res block per level and three levels, no middle block (the tiny SD1/SD2 UNets,
# SDXS); SDXL without the middle transformer and with fewer transformer blocks (SSD-1B, Vega).
_TINY = {
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 1,
    "mid_block_type": None,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3,
    "up_block_types": ["CrossAttnUpBlock2D"] * 3,
}
_UNET_SD1_TINY = dict(_UNET_SD1, **_TINY)
# SDXS-512-DS: no attention at full resolution (attention_resolutions (4, 2) in unet.hpp)
_UNET_SDXS = dict(
    _UNET_SD1_TINY,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
)
_UNET_SD2_TINY = dict(_UNET_SD2, **_TINY, attention_head_dim=[5, 10, 20])
# SDXS-512-0.9: the first level's attn1 attends to the text (keys/values read the 1024-wide context).
_UNET_SDXS09 = dict(_UNET_SD2_TINY, only_cross_attention=[True, False, False])
_SEGMIND_MID = {"mid_block_type": "UNetMidBlock2D"}  # middle_block.0 only: one resnet, no attention
_UNET_SSD1B = dict(
    _UNET_SDXL,
    **_SEGMIND_MID,
    transformer_layers_per_block=[1, 2, 4],
    reverse_transformer_layers_per_block=[[4, 4, 10], [2, 1, 1], [1, 1, 1]],
)
_UNET_VEGA = dict(_UNET_SDXL, **_SEGMIND_MID, transformer_layers_per_block=[1, 1, 2])

# TAESD as the SDXS checkpoints carry it (diffusers AutoencoderTiny defaults: 4 latent channels,
# scaling factor 1: the tiny autoencoder decodes the UNet's latents as they are).
_TINY_VAE = {
    "_class_name": "AutoencoderTiny",
    "act_fn": "relu",
    "decoder_block_out_channels": [64, 64, 64, 64],
    "encoder_block_out_channels": [64, 64, 64, 64],
    "in_channels": 3,
    "latent_channels": 4,
    "latent_magnitude": 3,
    "latent_shift": 0.5,
    "num_decoder_blocks": [3, 3, 3, 1],
    "num_encoder_blocks": [1, 3, 3, 3],
    "out_channels": 3,
    "scaling_factor": 1.0,
    "upsampling_scaling_factor": 2,
    "force_upcast": False,
}


def _controlnet(unet: dict) -> dict:
    keep = (
        "act_fn",
        "attention_head_dim",
        "block_out_channels",
        "cross_attention_dim",
        "down_block_types",
        "downsample_padding",
        "flip_sin_to_cos",
        "freq_shift",
        "in_channels",
        "layers_per_block",
        "mid_block_scale_factor",
        "norm_eps",
        "norm_num_groups",
        "use_linear_projection",
        "addition_embed_type",
        "addition_embed_type_num_heads",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
        "transformer_layers_per_block",
    )
    cfg = {k: v for k, v in unet.items() if k in keep}
    cfg.update(
        {
            "_class_name": "ControlNetModel",
            "conditioning_embedding_out_channels": [16, 32, 96, 256],
            "controlnet_conditioning_channel_order": "rgb",
        }
    )
    return cfg


def _tokenizer_config(pad: str = "<|endoftext|>") -> dict:
    return {
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad,
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }


def _sd(unet: dict, text_encoder: dict, prediction: str = "epsilon") -> dict[str, dict]:
    return {
        "model_index.json": {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.30.0",
            "feature_extractor": [None, None],
            "safety_checker": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "scheduler/scheduler_config.json": {
            "_class_name": "EulerDiscreteScheduler",
            **_BETAS,
            "steps_offset": 1,
            "timestep_spacing": "linspace",
            "prediction_type": prediction,
        },
        "unet/config.json": unet,
        "vae/config.json": _VAE,
        "text_encoder/config.json": text_encoder,
        "tokenizer/tokenizer_config.json": _tokenizer_config(),
        "controlnet/config.json": _controlnet(unet),
    }


def _sdxl() -> dict[str, dict]:
    files = _sd(_UNET_SDXL, _CLIP_L)
    files["model_index.json"] = {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.30.0",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "image_encoder": [None, None],
        "feature_extractor": [None, None],
    }
    files["vae/config.json"] = dict(_VAE, scaling_factor=0.13025, force_upcast=True)
    files["text_encoder_2/config.json"] = _OPENCLIP_G
    files["tokenizer_2/tokenizer_config.json"] = _tokenizer_config(pad="!")
    return files


def _with_tiny_vae(files: dict[str, dict]) -> dict[str, dict]:
    """``files`` with the SDXS autoencoder (a TAESD) in place of the KL VAE."""
    index = dict(files["model_index.json"], vae=["diffusers", "AutoencoderTiny"])
    return {**files, "model_index.json": index, "vae/config.json": _TINY_VAE}


#: family -> files of its config folder
FAMILIES: dict[str, dict[str, dict]] = {
    "sd1": _sd(_UNET_SD1, _CLIP_L),
    "sd1_inpaint": _sd(dict(_UNET_SD1, in_channels=9), _CLIP_L),
    "sd1_tiny": _sd(_UNET_SD1_TINY, _CLIP_L),
    "sdxs": _with_tiny_vae(_sd(_UNET_SDXS, _CLIP_L)),
    "sd2": _sd(_UNET_SD2, _OPENCLIP_H),
    "sd2_v": _sd(_UNET_SD2, _OPENCLIP_H, prediction="v_prediction"),
    "sd2_tiny": _sd(_UNET_SD2_TINY, _OPENCLIP_H),
    "sdxs09": _with_tiny_vae(_sd(_UNET_SDXS09, _OPENCLIP_H)),
    "sdxl": _sdxl(),
    "ssd1b": {**_sdxl(), "unet/config.json": _UNET_SSD1B},
    "vega": {**_sdxl(), "unet/config.json": _UNET_VEGA},
}
FAMILIES["sdxl_inpaint"] = {**_sdxl(), "unet/config.json": dict(_UNET_SDXL, in_channels=9)}


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@functools.lru_cache(maxsize=1)
def clip_tokenizer_files() -> tuple[str, str]:
    """``(vocab.json text, merges.txt text)`` of the CLIP tokenizer, built from the shipped BPE."""
    raw = resources.files("gouache._engines.torch").joinpath("assets/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    return json.dumps(encoder, ensure_ascii=False), "#version: 0.2\n" + "\n".join(merges) + "\n"


def config_dir(family: str, cache_root: Path | None = None) -> Path:
    """A diffusers config folder for ``family`` (written once into the cache, atomically)."""
    if family not in FAMILIES:
        raise InvalidInputError(
            f"the torch engine has no config for family {family!r}; supported: {', '.join(sorted(FAMILIES))}"
        )
    files = FAMILIES[family]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root or _files.cache_root() / "torch-configs"
    target = root / f"{family}-{digest}"
    if (target / "model_index.json").is_file():
        return target
    vocab, merges = clip_tokenizer_files()

    def fill(tmp: Path) -> None:
        for rel, content in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=1))
        for tok in ("tokenizer", "tokenizer_2"):
            if (tmp / tok).is_dir():
                (tmp / tok / "vocab.json").write_text(vocab, encoding="utf-8")
                (tmp / tok / "merges.txt").write_text(merges, encoding="utf-8")

    return publish_dir(target, fill)
