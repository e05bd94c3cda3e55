"""Architecture facts read from tensor names and shapes: the one home of "what kind of network is this".

Family detection (:mod:`.families`) and the engine's crash guards
(:mod:`gouache._sdcpp.checks`, through :class:`ModelFacts`) both ask here, so a UNet,
its middle block or its cross-attention width is recognised the same way everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .headers import TensorInfo

__all__ = [
    "LLM_NEEDS",
    "UNET_PREFIX",
    "LLMFacts",
    "LLMNeeds",
    "ModelFacts",
    "Tensors",
    "any_prefix",
    "any_substr",
    "context_dim",
    "flux2_variant",
    "has_middle_block",
    "has_text_encoder",
    "has_unet",
    "is_chroma",
    "is_flux",
    "is_qwen_image",
    "is_z_image",
    "last_dim",
    "llm_arch_name",
    "llm_needs_of",
    "shape_of",
    "strip_prefix",
    "unet_names",
    "wan_block_count",
]

Tensors = Mapping[str, TensorInfo]

#: Prefix of the diffusion model's tensors in single-file checkpoints.
UNET_PREFIX = "model.diffusion_model."


def strip_prefix(names: Tensors) -> dict[str, TensorInfo]:
    """Names with a leading ``model.diffusion_model.`` removed (diffusion-model-only files lack it)."""
    return {k[len(UNET_PREFIX) :] if k.startswith(UNET_PREFIX) else k: v for k, v in names.items()}


def unet_names(tensors: Tensors) -> Tensors:
    """A bare diffusers UNet file (``conv_in.weight``, ``down_blocks.*``) seen with the ``unet.``
    prefix the engine's diffusers loader gives it; other files unchanged."""
    if "conv_in.weight" in tensors and "time_embedding.linear_1.weight" in tensors:
        return {"unet." + k: v for k, v in tensors.items()}
    return tensors


def any_prefix(names: Tensors, *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in names)


def any_substr(names: Tensors, *parts: str) -> bool:
    return any(p in k for k in names for p in parts)


def shape_of(names: Tensors, *candidates: str) -> tuple[int, ...] | None:
    """Shape of the first candidate name present."""
    for c in candidates:
        if c in names:
            return names[c].shape
    return None


def last_dim(names: Tensors, *candidates: str) -> int | None:
    """ggml's ``ne[0]`` (the innermost dimension) of the first candidate present."""
    shape = shape_of(names, *candidates)
    return shape[-1] if shape else None


# --------------------------------------------------------------------------- UNets


def has_unet(t: Tensors, n: Tensors) -> bool:
    """An SD-style UNet (ldm ``input_blocks`` or diffusers ``unet.down_blocks``); ``t`` seen through
    :func:`unet_names`, ``n`` = ``strip_prefix(t)``."""
    return any_prefix(n, "input_blocks.") or any_prefix(t, "unet.down_blocks.")


def has_middle_block(t: Tensors, n: Tensors) -> bool:
    """The UNet has its middle block (distilled UNets, tiny SD, SDXS, SSD-1B and Vega, lack it)."""
    return any_prefix(n, "middle_block.1.") or any_prefix(t, "unet.mid_block.resnets.1.")


def context_dim(n: Tensors) -> int | None:
    """Cross-attention context width of a UNet (768 SD1, 1024 SD2, 2048 SDXL, 1280 refiner)."""
    for k, v in n.items():
        if k.endswith("attn2.to_k.weight") and len(v.shape) == 2:
            return v.shape[-1]
    return None


# --------------------------------------------------------------------------- DiTs and text encoders


def is_flux(names: Tensors) -> bool:
    """Flux.1 or FLUX.2 (``double_blocks``)."""
    return any_prefix(strip_prefix(names), "double_blocks.")


def is_chroma(names: Tensors) -> bool:
    """Chroma: a Flux.1 whose modulation comes from one ``distilled_guidance_layer``."""
    return any_prefix(strip_prefix(names), "distilled_guidance_layer.")


def flux2_variant(names: Tensors) -> str | None:
    """``"dev"`` (a 48th single block, as the engine decides), ``"klein"``, or ``None`` (not FLUX.2)."""
    n = strip_prefix(names)
    if "double_stream_modulation_img.lin.weight" not in n:
        return None
    return "dev" if any_prefix(n, "single_blocks.47.") else "klein"


def is_qwen_image(names: Tensors) -> bool:
    return "transformer_blocks.0.img_mod.1.weight" in strip_prefix(names)


def is_z_image(names: Tensors) -> bool:
    return "cap_embedder.0.weight" in strip_prefix(names)


def has_text_encoder(t: Tensors) -> bool:
    return any_prefix(t, "text_encoders.", "cond_stage_model.", "conditioner.", "te.text_model.", "text_model.")


def wan_block_count(names: Tensors) -> int | None:
    """Number of transformer blocks of a Wan model, or ``None`` when the file is not Wan."""
    n = strip_prefix(names)
    if "blocks.0.cross_attn.norm_k.weight" not in n:
        return None
    idx = [int(k.split(".")[1]) for k in n if k.startswith("blocks.") and k.split(".")[1].isdigit()]
    return max(idx) + 1


# --------------------------------------------------------------------------- LLM text encoders


@dataclasses.dataclass(frozen=True)
class LLMNeeds:
    """What a diffusion model needs of its LLM text encoder (stable-diffusion.cpp conditioner.hpp
    and the DiT's fixed widths): the architecture the engine builds for it, the width of the text
    features the DiT reads (``None``: read from the DiT file, FLUX.2's ``txt_in``) and the LLM
    layers whose outputs are used side by side (none: the final normed output)."""

    label: str
    arch: str
    width: int | None
    out_layers: tuple[int, ...]

    def output_width(self, llm: LLMFacts) -> int:
        """The width of the features an LLM gives this model: the engine concatenates the
        outputs of the ``out_layers`` the LLM has, or takes its final output when it has none."""
        used = sum(1 for layer in self.out_layers if layer <= llm.layers)
        return llm.hidden * max(used, 1)


#: Diffusion models with an LLM text encoder -> what they need.
LLM_NEEDS: dict[str, LLMNeeds] = {
    "z_image": LLMNeeds("Z-Image", "qwen3", 2560, (35,)),
    "qwen_image": LLMNeeds("Qwen-Image", "qwen2.5_vl", 3584, ()),
    "flux2_dev": LLMNeeds("FLUX.2 dev", "mistral", None, (10, 20, 30)),
    "flux2_klein": LLMNeeds("FLUX.2 klein", "qwen3", None, (9, 18, 27)),
}


def llm_needs_of(names: Tensors) -> str | None:
    """The :data:`LLM_NEEDS` key of a diffusion model, or ``None`` if it has no LLM text encoder."""
    if is_z_image(names):
        return "z_image"
    if is_qwen_image(names):
        return "qwen_image"
    variant = flux2_variant(names)
    return None if variant is None else f"flux2_{variant}"


_LLM_ARCH_NAMES = {"qwen3": "Qwen3", "qwen2.5_vl": "Qwen2.5-VL", "mistral": "Mistral Small 3.2"}


def llm_arch_name(arch: str) -> str:
    """The display name of an LLM architecture key ("qwen3" -> "Qwen3")."""
    return _LLM_ARCH_NAMES.get(arch, arch)


@dataclasses.dataclass(frozen=True)
class LLMFacts:
    """An LLM text encoder as the engine sees it (llm.hpp): ``arch`` "qwen3" (q/k norms),
    "qwen2.5_vl" (q/k/v biases) or "mistral" (neither), ``hidden`` (the embedding width),
    ``layers``; ``vision``: the file also holds a vision tower (``visual.*``)."""

    arch: str
    hidden: int
    layers: int
    vision: bool = False

    @property
    def arch_name(self) -> str:
        return llm_arch_name(self.arch)

    @classmethod
    def of(cls, names: Tensors) -> LLMFacts | None:
        """Facts of a Hugging Face (``model.layers.N.self_attn.q_proj``) or llama.cpp GGUF
        (``blk.N.attn_q``) LLM file; ``None`` when the file is no LLM."""
        width = last_dim(names, "model.embed_tokens.weight", "token_embd.weight")
        if width is None:
            return None
        layers = [
            int(k.split(".")[i])
            for k in names
            for prefix, i in (("model.layers.", 2), ("blk.", 1))
            if k.startswith(prefix) and k.split(".")[i].isdigit()
        ]
        if any_substr(names, "self_attn.q_norm.", "self_attn.k_norm.", "attn_q_norm.", "attn_k_norm."):
            arch = "qwen3"
        elif any_substr(names, "self_attn.q_proj.bias", "attn_q.bias"):
            arch = "qwen2.5_vl"
        else:
            arch = "mistral"
        vision = any_prefix(names, "visual.", "model.visual.")
        return cls(arch, width, 1 + max(layers, default=-1), vision)


# --------------------------------------------------------------------------- facts for the guards


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the engine's crash guards need to know about the model files of a context.

    ``known``: every diffusion model file had a readable header (pickled checkpoints do not);
    ``distilled_unet``: a UNet without its middle block (ControlNet aborts the engine);
    ``sdxl_unet``: a UNet with 2048-wide cross-attention (the SDXL ControlNet graph overflows the
    engine's fixed ControlNet graph size); ``flux``: a Flux.1 DiT that reads CLIP/T5 (not
    Chroma, which runs on T5 alone or on zeros); ``text_encoder``: the files hold a text
    encoder; ``wan_blocks``: the block count of a Wan DiT, else ``None``; ``llm_needs``: the
    :data:`LLM_NEEDS` key of a DiT with an LLM text encoder; ``text_width``: the text width a
    FLUX.2 DiT reads (``txt_in``); ``qwen_image``: a Qwen-Image DiT (its tiny autoencoder
    cannot encode images); ``tae``: the context encodes and decodes with a tiny autoencoder
    (set by the binding's checks, which know the context's files); ``sd3_clips_missing``: for
    an SD3 MMDiT, the CLIP encoders (``"clip_l"``, ``"clip_g"``) its files do not hold.
    """

    known: bool = True
    distilled_unet: bool = False
    sdxl_unet: bool = False
    flux: bool = False
    text_encoder: bool = False
    wan_blocks: int | None = None
    llm_needs: str | None = None
    text_width: int | None = None
    qwen_image: bool = False
    tae: bool = False
    sd3_clips_missing: tuple[str, ...] = ()

    @classmethod
    def of(cls, tensors: Tensors, *, known: bool = True) -> ModelFacts:
        t = unet_names(tensors)
        n = strip_prefix(t)
        unet = has_unet(t, n)
        return cls(
            known=known,
            distilled_unet=unet and not has_middle_block(t, n),
            sdxl_unet=unet and context_dim(n) == 2048,
            flux=is_flux(n) and flux2_variant(n) is None and not is_chroma(n),
            text_encoder=has_text_encoder(t),
            wan_blocks=wan_block_count(t),
            llm_needs=llm_needs_of(n),
            text_width=(shape_of(n, "txt_in.weight") or (None,))[-1] if flux2_variant(n) else None,
            qwen_image=is_qwen_image(n),
            sd3_clips_missing=_sd3_clips_missing(t, n),
        )


def _sd3_clips_missing(t: Tensors, n: Tensors) -> tuple[str, ...]:
    """The CLIPs an SD3 model's files lack (single files may hold ``text_encoders.clip_l/g``)."""
    if not any_prefix(n, "joint_blocks."):
        return ()
    return tuple(c for c in ("clip_l", "clip_g") if not any_prefix(t, f"text_encoders.{c}."))
