"""Model family detection from tensor names and shapes (no weights are loaded).

:func:`detect_family` decides which family a model file belongs to, as the engine's own
``ModelLoader::get_sd_version`` (stable-diffusion.cpp ``src/model.cpp``) does, extended to
component files (ControlNet, LoRA, VAE, TAESD, ESRGAN, text encoders) and to
diffusion-model-only files whose names lack the ``model.diffusion_model.`` prefix;
:func:`is_few_step` says whether it is a distilled few-step model.  Defaults per family
are in :mod:`.defaults`, the whole report of a file in :mod:`.inspect`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path

from .architecture import (
    LLMFacts,
    Tensors,
    any_prefix,
    any_substr,
    context_dim,
    flux2_variant,
    has_middle_block,
    has_unet,
    is_chroma,
    is_qwen_image,
    is_z_image,
    last_dim,
    shape_of,
    strip_prefix,
    unet_names,
)

__all__ = [
    "EDITING_MODELS",
    "GENERATORS",
    "Family",
    "detect_family",
    "edits_images",
    "is_few_step",
]


class Family(str, Enum):
    """What a model file is: a diffusion model family, a component, or ``unknown``."""

    SD1 = "sd1"
    SD1_INPAINT = "sd1_inpaint"
    SD1_PIX2PIX = "sd1_pix2pix"
    SD1_TINY = "sd1_tiny"  # tiny UNet (BK-SDM-Tiny, Segmind tiny-sd) and SDXS-512
    SD2 = "sd2"
    SD2_INPAINT = "sd2_inpaint"
    SD2_TINY = "sd2_tiny"  # BK-SDM-v2-Tiny, SDXS-512-0.9
    SDXL = "sdxl"
    SDXL_INPAINT = "sdxl_inpaint"
    SDXL_PIX2PIX = "sdxl_pix2pix"
    SDXL_DISTILLED = "sdxl_distilled"  # SSD-1B, Segmind Vega
    SD3 = "sd3"
    FLUX = "flux"
    FLUX_FILL = "flux_fill"
    FLUX2 = "flux2"
    QWEN_IMAGE = "qwen_image"  # Qwen-Image and Qwen-Image-Edit (variant "edit", "edit_2511")
    Z_IMAGE = "z_image"  # Z-Image (Turbo: few-step)
    WAN2_1 = "wan2.1"
    WAN2_2 = "wan2.2"
    CONTROLNET = "controlnet"
    LORA = "lora"
    VAE = "vae"
    TAESD = "taesd"
    ESRGAN = "esrgan"
    TEXT_ENCODER = "text_encoder"  # CLIP, T5/umT5, LLM text encoders
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


#: Families that generate images or video (the rest are components).
GENERATORS = frozenset(
    f
    for f in Family
    if f
    not in (
        Family.CONTROLNET,
        Family.LORA,
        Family.VAE,
        Family.TAESD,
        Family.ESRGAN,
        Family.TEXT_ENCODER,
        Family.UNKNOWN,
    )
)

# --------------------------------------------------------------------------- component files

_LORA_MARKERS = (
    ".lora_up.",
    ".lora_down.",
    ".lora_A.",
    ".lora_B.",
    ".lora.up.",
    ".lora.down.",
    ".lora_mid.",
    ".hada_w1_a",
    ".lokr_w1",
    "lora_unet_",
    "lora_te_",
    "lora_te1_",
    "lora_te2_",
)


def _is_lora(t: Tensors) -> bool:
    """kohya / diffusers / PEFT LoRA (also LoHa, LoKr): ``lora_up``/``lora_down``/``lora_A``/``lora_B``."""
    return any_substr(t, *_LORA_MARKERS)


def _is_controlnet(t: Tensors, n: Tensors) -> bool:
    """ldm ``control_model.*``, diffusers ``controlnet_cond_embedding``/``controlnet_down_blocks``,
    Flux ``controlnet_blocks``/``controlnet_x_embedder``, or bare ``input_hint_block``/``zero_convs``."""
    if any_prefix(t, "control_model."):
        return True
    if any_substr(t, "controlnet_cond_embedding", "controlnet_down_blocks", "controlnet_x_embedder"):
        return True
    if any_prefix(n, "controlnet_blocks."):
        return True
    return any_prefix(n, "input_hint_block.", "zero_convs.") and not any_prefix(n, "output_blocks.")


def _is_esrgan(t: Tensors) -> bool:
    """RRDBNet: BasicSR names (``conv_first`` + ``body.N.rdbM`` / ``RRDB_trunk``) or the
    original ESRGAN names (``model.0.weight`` + ``model.1.sub.N.RDB``)."""
    if "conv_first.weight" in t and any_prefix(t, "body.0.rdb1.", "RRDB_trunk.", "conv_up1."):
        return True
    return "model.0.weight" in t and any_prefix(t, "model.1.sub.")


def _taesd_variant(t: Tensors) -> str | None:
    """TAESD (``encoder.layers.N`` / ``decoder.layers.N``): ``"<latent channels>ch"``; TAEHV, the
    video version for Wan (``decoder.1.weight``, ``decoder.N.*``): ``"<latent channels>ch_video"``;
    else ``None``."""
    taehv = shape_of(t, "decoder.1.weight")
    if taehv is not None and len(taehv) == 4 and all(re.match(r"(en|de)coder\.\d+\.", k) for k in t):
        return f"{taehv[1]}ch_video"
    prefixes = [p for p in ("", "taesd.", "tae.") if any_prefix(t, p + "decoder.layers.", p + "encoder.layers.")]
    if not prefixes:
        return None
    prefix = prefixes[0]
    shape = shape_of(t, prefix + "decoder.layers.0.weight")
    return f"{shape[1]}ch" if shape and len(shape) == 4 else "taesd"


def _vae_variant(t: Tensors) -> str | None:
    """A VAE-only file (``encoder.*``/``decoder.*``, optionally under ``first_stage_model.``/``vae.``):
    ``"<latent channels>ch"`` (``_video`` for Wan's 3D VAE), else ``None``."""
    for prefix in ("", "first_stage_model.", "vae."):
        shape = shape_of(t, prefix + "decoder.conv_in.weight", prefix + "decoder.conv1.weight")
        if shape is None:
            continue
        if len(shape) < 4:
            return "vae"
        return f"{shape[1]}ch" + ("_video" if len(shape) == 5 else "")
    return None


_TEXT_ENCODER_PREFIXES = (
    "text_model.",
    "te.",
    "te1.",
    "te2.",
    "cond_stage_model.",
    "conditioner.embedders.",
    "text_encoders.",
    "encoder.block.",
    "enc.blk.",
    "shared.weight",
    "transformer.resblocks.",
    "token_embedding.",
    "model.embed_tokens.",
    "model.layers.",
    "token_embd.",
    "blk.",
    "language_model.",
)


# LLM text encoders by (architecture, width): the released sizes the families use.
_LLM_SIZES = {
    ("qwen2.5_vl", 3584): "qwen2.5_vl_7b",
    ("qwen3", 2560): "qwen3_4b",
    ("qwen3", 4096): "qwen3_8b",
    ("mistral", 5120): "mistral_small_3.2_24b",
}


def _llm_variant(t: Tensors) -> str | None:
    """An LLM text encoder: its released size where known (``"qwen3_4b"``, ``"qwen2.5_vl_7b"``,
    ``"mistral_small_3.2_24b"``, ...), else its architecture (``"qwen3"``, ``"qwen2.5_vl"``,
    ``"mistral"``); a Qwen2.5-VL vision tower alone is ``"qwen2.5_vl_vision"``."""
    llm = LLMFacts.of(t)
    if llm is None:
        if any_prefix(t, "visual.blocks.", "blocks.0.attn.qkv.", "v.blk.") and any_substr(t, "merger.", "mm."):
            return "qwen2.5_vl_vision"
        return None
    return _LLM_SIZES.get((llm.arch, llm.hidden), llm.arch)


def _text_encoder_variant(t: Tensors) -> str | None:
    """CLIP (``clip_l``/``clip_g``/``clip_h``), T5/umT5 (``t5``) or an LLM (see :func:`_llm_variant`);
    ``None`` if not one."""
    llm = _llm_variant(t)
    if llm is not None:
        return llm
    if not any_prefix(t, *_TEXT_ENCODER_PREFIXES):
        return None
    if any_substr(t, "encoder.block.0.layer.0.SelfAttention", "enc.blk.0."):
        return "t5"
    width = None
    for k, v in t.items():
        if k.endswith("token_embedding.weight") and len(v.shape) == 2:
            width = v.shape[-1]
            break
    if width is not None:
        return {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}.get(width, "clip")
    return "llm"  # an LLM the layout of which gouache does not know


# --------------------------------------------------------------------------- editing models

#: Models that edit images by instruction, the input images being reference images the engine
#: encodes (stable-diffusion.cpp ``ref_images``): (family, variant; ``None``: every variant).
EDITING_MODELS: dict[tuple[str, str | None], str] = {
    ("flux", "kontext"): "FLUX.1 Kontext",
    ("qwen_image", "edit"): "Qwen-Image-Edit",
    ("qwen_image", "edit_2511"): "Qwen-Image-Edit 2511",
    ("flux2", None): "FLUX.2",
    ("sd1_pix2pix", None): "InstructPix2Pix",
    ("sdxl_pix2pix", None): "CosXL Edit / SDXL InstructPix2Pix",
}


def edits_images(family: Family | str, variant: str | None) -> bool:
    """Whether a model of ``family``/``variant`` edits images by instruction (see :data:`EDITING_MODELS`)."""
    fam = Family(family).value
    return (fam, variant) in EDITING_MODELS or (fam, None) in EDITING_MODELS


# --------------------------------------------------------------------------- diffusion models

# Exact names the engine reads the text-encoder width from (token_embedding_weight).
_TOKEN_EMBEDDINGS = (
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "cond_stage_model.model.token_embedding.weight",
    "text_model.embeddings.token_embedding.weight",
    "te.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.0.model.token_embedding.weight",
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
)


def _unet_family(t: Tensors, n: Tensors) -> tuple[Family, str | None] | None:
    """SD1/SD2/SDXL and their variants, as ``get_sd_version`` decides (plus a context-width
    fallback for UNet-only files, which carry no text encoder)."""
    if not has_unet(t, n):
        return None
    multiple_encoders = any_prefix(t, "conditioner.embedders.1", "cond_stage_model.1", "te.1")
    in_shape = shape_of(n, "input_blocks.0.0.weight") or shape_of(t, "unet.conv_in.weight")
    in_ch = in_shape[1] if in_shape and len(in_shape) == 4 else None
    has_mid1 = has_middle_block(t, n)
    width = last_dim(t, *_TOKEN_EMBEDDINGS)
    context = context_dim(n) or context_dim(t)
    if multiple_encoders or (width is None and context == 2048):
        if in_ch == 9:
            return Family.SDXL_INPAINT, None
        if in_ch == 8:
            return Family.SDXL_PIX2PIX, None
        if not has_mid1:
            has_311 = any_prefix(n, "output_blocks.3.1.transformer_blocks.1") or any_prefix(
                t, "unet.up_blocks.1.attentions.0.transformer_blocks.1"
            )
            return Family.SDXL_DISTILLED, "ssd1b" if has_311 else "vega"
        return Family.SDXL, None
    width = width or context
    has_71 = any_prefix(n, "output_blocks.7.1") or any_prefix(t, "unet.up_blocks.2.attentions.1")
    if width == 768:
        if in_ch == 9:
            return Family.SD1_INPAINT, None
        if in_ch == 8:
            return Family.SD1_PIX2PIX, None
        if not has_mid1:
            return Family.SD1_TINY, "tiny_unet" if has_71 else "sdxs_512_ds"
        return Family.SD1, None
    if width == 1024:
        if in_ch == 9:
            return Family.SD2_INPAINT, None
        if not has_mid1:
            attn = last_dim(n, "output_blocks.7.1.transformer_blocks.0.attn1.to_k.weight")
            return Family.SD2_TINY, "sdxs_09" if attn == 1024 else "tiny_unet"
        return Family.SD2, None
    if width == 1280:
        return Family.UNKNOWN, "sdxl_refiner"  # the engine does not run it either
    return Family.UNKNOWN, "unet"


def _sd3_variant(n: Tensors) -> str:
    depth = 1 + max(
        (int(k.split(".")[1]) for k in n if k.startswith("joint_blocks.") and k.split(".")[1].isdigit()), default=-1
    )
    if depth >= 38:
        return "sd3.5_large"
    if any_substr(n, "x_block.attn2."):
        return "sd3.5_medium"
    return "sd3_medium"


def _flux_family(n: Tensors, path: Path | None) -> tuple[Family, str | None]:
    """Flux.1 by ``img_in`` input width as the engine does (384 fill, 128 controls, 196 Flex.2),
    then dev (``guidance_in``), Chroma (``distilled_guidance_layer``) or schnell (neither)."""
    in_width = last_dim(n, "img_in.weight")
    if in_width == 384:
        return Family.FLUX_FILL, None
    if in_width == 128:
        return Family.FLUX, "controls"
    if in_width == 196:
        return Family.FLUX, "flex_2"
    if is_chroma(n):
        return Family.FLUX, "chroma"
    if not any_prefix(n, "guidance_in."):
        return Family.FLUX, "schnell"
    if path is not None and "kontext" in path.name.lower():
        return Family.FLUX, "kontext"
    return Family.FLUX, "dev"


def _wan_family(n: Tensors, path: Path | None) -> tuple[Family, str | None]:
    """Wan by ``patch_embedding`` in-channels x width, as the engine does: 36 x 5120 without
    ``img_emb`` is 2.2 I2V-A14B, 48 x 3072 is 2.2 TI2V-5B; everything else has Wan 2.1's
    architecture (Wan 2.2 T2V-A14B too: only a ``wan2.2`` filename tells them apart)."""
    shape = shape_of(n, "patch_embedding.weight") or ()
    channels = math.prod(shape[:-3]) if len(shape) >= 4 else 0  # the engine's ne[3]
    has_img_emb = any_prefix(n, "img_emb")
    if channels == 36 * 5120 and not has_img_emb:
        return Family.WAN2_2, "i2v_a14b"
    if channels == 48 * 3072 and not has_img_emb:
        return Family.WAN2_2, "ti2v_5b"
    kind = "vace" if any_prefix(n, "vace_blocks.") else ("i2v" if has_img_emb else "t2v")
    if path is not None and re.search(r"wan[-_ .]?2[._]?2", path.name.lower()):
        return Family.WAN2_2, f"{kind}_a14b"
    return Family.WAN2_1, kind


def _qwen_image_variant(n: Tensors, path: Path | None) -> str | None:
    """Qwen-Image-Edit has Qwen-Image's tensors: Edit 2511 carries ``__index_timestep_zero__``,
    the others are told by their file name (``edit``, and ``2511``)."""
    name = path.name.lower() if path is not None else ""
    if "__index_timestep_zero__" in n or ("edit" in name and "2511" in name):
        return "edit_2511"
    return "edit" if "edit" in name else None


# Engine versions gouache has no family for: (diffusion-model name prefix, variant).
_OTHER_DIFFUSION = (
    ("nerf_final_layer_conv.", "chroma_radiance"),
    ("double_blocks.0.img_mlp.gate_proj.weight", "ovis_image"),
    ("layers.0.adaLN_sa_ln.weight", "ernie_image"),
    ("input_blocks.8.0.time_mixer.mix_factor", "svd"),
)


def _diffusion_family(t: Tensors, n: Tensors, path: Path | None) -> tuple[Family, str | None] | None:
    if any_prefix(n, "joint_blocks."):
        return Family.SD3, _sd3_variant(n)
    for prefix, variant in _OTHER_DIFFUSION:
        if any_prefix(n, prefix):
            return Family.UNKNOWN, variant
    if is_qwen_image(n):
        return Family.QWEN_IMAGE, _qwen_image_variant(n, path)
    if is_z_image(n):
        return Family.Z_IMAGE, None
    if any_substr(t, "llm_adapter.blocks.0.cross_attn.q_proj.weight"):
        return Family.UNKNOWN, "anima"
    if "blocks.0.cross_attn.norm_k.weight" in n:
        return _wan_family(n, path)
    unet = _unet_family(t, n)
    if unet is not None:
        return unet
    flux2 = flux2_variant(n)
    if flux2 is not None:
        return Family.FLUX2, flux2
    if any_prefix(n, "double_blocks."):
        return _flux_family(n, path)
    return None


# --------------------------------------------------------------------------- filenames (pickled checkpoints)

# Ordered: the first match wins.  Only used when the file has no readable header (.ckpt/.pt/.pth).
_FILENAME_HINTS: tuple[tuple[str, Family], ...] = (
    (r"esrgan|x4plus|x2plus|(^|[^a-z0-9])[248]x[-_]", Family.ESRGAN),
    (r"control", Family.CONTROLNET),
    (r"lora|locon|lycoris", Family.LORA),
    (r"taesd", Family.TAESD),
    (r"sd_?xl|xl[-_]base|(^|[^a-z0-9])xl([^a-z0-9]|$)", Family.SDXL),
    (r"v2[-_]|sd[-_]?2|768[-_]?v", Family.SD2),
    (r"v1[-_]|sd[-_]?1|sd15", Family.SD1),
    (r"(^|[^a-z0-9])vae([^a-z0-9]|$)", Family.VAE),
)
_INPAINT = {Family.SD1: Family.SD1_INPAINT, Family.SD2: Family.SD2_INPAINT, Family.SDXL: Family.SDXL_INPAINT}


def _family_from_filename(path: Path) -> Family:
    name = path.name.lower()
    for pattern, family in _FILENAME_HINTS:
        if re.search(pattern, name):
            return _INPAINT.get(family, family) if "inpaint" in name else family
    return Family.UNKNOWN


def detect_family(tensors: Tensors | None, path: str | os.PathLike[str] | None = None) -> tuple[Family, str | None]:
    """``(family, variant)`` of a model from its tensor names and shapes.

    ``tensors`` is what :func:`gouache._modelfiles.headers.read_tensors` returns; ``None`` (a pickled
    checkpoint) falls back to hints in the file name.  ``path`` also separates architectures
    that share tensors (Flux Kontext, Wan 2.2 T2V).  ``variant`` names the sub-model where
    known: ``"sdxs_512_ds"``, ``"tiny_unet"``, ``"sdxs_09"``, ``"ssd1b"``, ``"vega"``,
    ``"sd3_medium"``, ``"sd3.5_medium"``, ``"sd3.5_large"``, ``"dev"``, ``"schnell"``,
    ``"chroma"``, ``"kontext"``, ``"controls"``, ``"flex_2"``, ``"klein"``, ``"edit"``,
    ``"edit_2511"``, ``"t2v"``, ``"i2v"``, ``"vace"``, ``"*_a14b"``, ``"ti2v_5b"``; for
    components the latent channels (``"4ch"``, ``"16ch_video"``, ``"32ch"``) or the encoder
    (``"clip_l"``, ``"t5"``, ``"qwen3_4b"``, ``"qwen2.5_vl_7b"``, ``"mistral_small_3.2_24b"``,
    ``"qwen3"``, ...); for ``unknown`` the engine architecture when the engine knows it
    (``"svd"``, ``"ovis_image"``, ...) or ``"clip_vision"``.
    """
    p = Path(path) if path is not None else None
    if tensors is None:
        return (_family_from_filename(p) if p is not None else Family.UNKNOWN), None
    t = unet_names(tensors)
    n = strip_prefix(dict(t))
    if _is_lora(t):
        return Family.LORA, None
    if _is_controlnet(t, n):
        return Family.CONTROLNET, None
    found = _diffusion_family(t, n, p)
    if found is not None:
        return found
    if _is_esrgan(t):
        return Family.ESRGAN, None
    checks = ((Family.TAESD, _taesd_variant), (Family.VAE, _vae_variant), (Family.TEXT_ENCODER, _text_encoder_variant))
    for family, check in checks:
        variant = check(t)
        if variant is not None:
            return family, variant
    if any_prefix(t, "vision_model.", "visual."):
        return Family.UNKNOWN, "clip_vision"
    return Family.UNKNOWN, None


# --------------------------------------------------------------------------- few-step models

# Markers of distilled few-step models in file names and metadata, matched on lower-cased text
# with camelCase split ("photonLCM" -> "photon_lcm"); short markers must stand alone.
_FEW_STEP = re.compile(
    r"turbo|lightning|schnell|sdxs|lightx2v|causvid|hyper[-_ ]?sd|(?<![a-z])(?:lcm|tcd|dmd2?|pcm|flash)(?![a-z])"
    r"|(?<![0-9])[1-8][-_ ]?steps?(?![a-z])"
)


def _mentions_few_step(text: str) -> bool:
    return _FEW_STEP.search(re.sub(r"(?<=[a-z])(?=[A-Z])", "_", text).lower()) is not None


# Metadata keys naming the model itself (not, e.g., the base a LoRA was trained on).
_FEW_STEP_KEYS = ("modelspec.title", "modelspec.architecture", "ss_output_name", "name", "title")
_FEW_STEP_VARIANTS = frozenset({"sdxs_512_ds", "sdxs_09", "schnell"})


def is_few_step(
    path: str | os.PathLike[str] | None, tensors: Tensors | None, metadata: Mapping[str, str] | None = None
) -> bool:
    """Whether a model is distilled for few steps at CFG 1 (Turbo, Lightning, LCM, Hyper-SD,
    SDXS, Flux schnell, Flux.2 klein, ...).

    From the tensors (SDXS UNets, Flux without ``guidance_in``, Flux.2 klein unless the file
    name says ``base``), the file name (``turbo``, ``lightning``, ``lcm``, ``hyper-sd``, ``sdxs``,
    ``schnell``, ``tcd``, ``dmd2``, ``4step``/``-8steps``..., case-insensitive) and the
    safetensors metadata (``modelspec.title``, ``modelspec.architecture``, ``ss_output_name``,
    ``name``, ``title`` mentioning the same).
    """
    name = Path(path).name if path is not None else ""
    if tensors is not None:
        family, variant = detect_family(tensors, path)
        if variant in _FEW_STEP_VARIANTS:
            return True
        if family is Family.FLUX2 and variant == "klein" and "base" not in name.lower():
            return True
    if _mentions_few_step(name):
        return True
    values = ((metadata or {}).get(key) for key in _FEW_STEP_KEYS)
    return any(isinstance(v, str) and _mentions_few_step(v) for v in values)
