"""SD3 / SD3.5 (MMDiT, MMDiT-X): the diffusion model (original names, as
``sd3.5_medium.safetensors``' ``model.diffusion_model.*`` without the prefix); the text encoders
are CLIP-L (:func:`gouache.testing.forge.clip_l`), CLIP-G and T5-XXL, the autoencoder the
16-channel one Flux shares (:func:`gouache.testing.forge.flux_vae`).

Mirrors mmdit.hpp: the engine reads the depth from the ``joint_blocks`` count, but never below
24, and derives every width from it (hidden = heads x 64 = 64 x depth), the q/k norm from
``attn.ln_q``, and MMDiT-X's extra self-attention from ``attn2``; the context (4096, T5-XXL),
pooled vector (2048: CLIP-L + CLIP-G) and position table (192 x 192 patches) keep their real
sizes.  The smallest model the engine accepts is therefore SD3 Medium's size (24 blocks of
1536, 2.0e9 parameters): written as a q4_0 GGUF directly (~1.2 GB).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blocks import _conv, _linear, _norm
from .io import _ONES, _STD, _check_dtype, _check_wtype, _positive, _Tensor, make

__all__ = ["clip_g", "sd3"]

_LATENT = 16
_PATCH = 2
_POS_EMBED = 192 * 192
_CONTEXT = 4096
_POOLED = 2048
_QK_NORMS = (None, "rms", "ln")


def _attention(p: str, d: int, heads: int, qk_norm: str | None, pre_only: bool) -> Iterator[_Tensor]:
    yield from _linear(f"{p}.qkv", d, 3 * d)
    if not pre_only:
        yield from _linear(f"{p}.proj", d, d)
    if qk_norm == "rms":
        yield f"{p}.ln_q.weight", (d // heads,), _ONES
        yield f"{p}.ln_k.weight", (d // heads,), _ONES
    elif qk_norm == "ln":
        for n in ("ln_q", "ln_k"):
            yield f"{p}.{n}.weight", (d // heads,), _ONES
            yield f"{p}.{n}.bias", (d // heads,), _STD


def _dismantled(p: str, d: int, heads: int, qk_norm: str | None, pre_only: bool, self_attn: bool) -> Iterator[_Tensor]:
    yield from _attention(f"{p}.attn", d, heads, qk_norm, pre_only)
    if self_attn:
        yield from _attention(f"{p}.attn2", d, heads, qk_norm, False)
    if not pre_only:
        yield from _linear(f"{p}.mlp.fc1", d, 4 * d)
        yield from _linear(f"{p}.mlp.fc2", 4 * d, d)
    mods = 9 if self_attn else 2 if pre_only else 6
    yield from _linear(f"{p}.adaLN_modulation.1", d, mods * d)


def _sd3(depth: int, qk_norm: str | None, x_blocks: int) -> Iterator[_Tensor]:
    d, heads = 64 * depth, depth
    yield "pos_embed", (1, _POS_EMBED * (4 if x_blocks else 1), d), _STD
    yield from _conv("x_embedder.proj", _LATENT, d, k=_PATCH)
    yield from _linear("t_embedder.mlp.0", 256, d)
    yield from _linear("t_embedder.mlp.2", d, d)
    yield from _linear("y_embedder.mlp.0", _POOLED, d)
    yield from _linear("y_embedder.mlp.2", d, d)
    yield from _linear("context_embedder", _CONTEXT, d)
    for i in range(depth):
        b = f"joint_blocks.{i}"
        yield from _dismantled(f"{b}.context_block", d, heads, qk_norm, i == depth - 1, False)
        yield from _dismantled(f"{b}.x_block", d, heads, qk_norm, False, i < x_blocks)
    yield from _linear("final_layer.linear", d, _PATCH * _PATCH * _LATENT)
    yield from _linear("final_layer.adaLN_modulation.1", d, 2 * d)


def _clip_g() -> Iterator[_Tensor]:
    """CLIP ViT-bigG/14 text model with projection, Hugging Face names (``clip_g.safetensors``);
    clip.hpp fixes it: width 1280, 32 layers, MLP 5120, projection 1280."""
    d, inter, layers, p = 1280, 5120, 32, "text_model"
    yield f"{p}.embeddings.token_embedding.weight", (49408, d), _STD
    yield f"{p}.embeddings.position_embedding.weight", (77, d), _STD
    for i in range(layers):
        b = f"{p}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield from _linear(f"{b}.self_attn.{proj}", d, d)
        yield from _norm(f"{b}.layer_norm1", d)
        yield from _linear(f"{b}.mlp.fc1", d, inter)
        yield from _linear(f"{b}.mlp.fc2", inter, d)
        yield from _norm(f"{b}.layer_norm2", d)
    yield from _norm(f"{p}.final_layer_norm", d)
    yield "text_projection.weight", (d, d), _STD


BUILDERS = {
    "sd3": lambda s: _sd3(s["depth"], s.get("qk_norm"), s.get("x_blocks", 0)),
    "clip_g": lambda s: _clip_g(),
}


def clip_g(*, dtype: str = "f16", seed: int = 0) -> Path:
    """A standalone CLIP-G text model for ``clip_g_path`` (SD3): the engine fixes its size,
    6.9e8 parameters, ~1.4 GB in f16 (a ``forge_large`` part)."""
    return make(BUILDERS, "clip_g", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sd3(
    *,
    depth: int = 24,
    qk_norm: str | None = "rms",
    x_blocks: int = 0,
    wtype: str | None = "q4_0",
    dtype: str = "f16",
    seed: int = 0,
) -> Path:
    """An SD3-family MMDiT with ``depth`` joint blocks (SD3 Medium / SD3.5 Medium: 24, the
    engine's minimum; SD3.5 Large: 38), diffusion-model-only file (``wtype`` "q4_0": a 1.2 GB
    GGUF, "q8_0", or ``None``: f16 safetensors, 4 GB).  ``qk_norm``: ``"rms"`` (SD3.5), ``None`` (SD3
    Medium) or ``"ln"``; ``x_blocks``: how many leading blocks have MMDiT-X's second
    self-attention (SD3.5 Medium: 13).  Pair it with :func:`gouache.testing.forge.clip_l` and
    :func:`gouache.testing.forge.flux_vae`."""
    if qk_norm not in _QK_NORMS:
        raise ValueError(f"qk_norm must be one of {_QK_NORMS}, got {qk_norm!r}")
    depth = _positive("depth", depth)
    if not 0 <= int(x_blocks) <= depth:
        raise ValueError(f"x_blocks must be between 0 and depth ({depth}), got {x_blocks!r}")
    spec = {"depth": depth, "dtype": _check_dtype(dtype), "seed": int(seed)}
    if qk_norm is not None:
        spec["qk_norm"] = qk_norm
    if x_blocks:
        spec["x_blocks"] = int(x_blocks)
    if _check_wtype(wtype) is not None:
        spec["wtype"] = wtype
    return make(BUILDERS, "sd3", spec)
