"""Qwen-Image and Qwen-Image-Edit: the MMDiT (diffusers names, as ``qwen_image_fp8_e4m3fn.safetensors``
/ ``qwen_image_edit_2509_*.safetensors``); the text encoder is Qwen2.5-VL
(:func:`gouache.testing.forge.llm` with ``arch="qwen2.5_vl"``), the autoencoder Wan 2.1's
(:func:`gouache.testing.forge.taehv` decodes its latent space).

Mirrors qwen_image.hpp: the engine reads only the number of ``transformer_blocks`` from the
file; every width is fixed (24 heads of 128 = 3072, text features 3584, 16 latent channels in
2x2 patches).  One block is therefore 3.4e8 parameters and the smallest model the engine
accepts is one block (3.6e8): written as a q4_0 GGUF by default (~0.2 GB).  Its text encoder
must be 3584 wide too (``forge.llm("qwen2.5_vl", hidden=3584, wtype="q4_0")``, ~0.3 GB for one
layer; the 152064 x 3584 embedding table is most of it).

Qwen-Image and Qwen-Image-Edit have the same tensors; Edit 2511 adds an
``__index_timestep_zero__`` marker that switches the engine to zero-conditioned timesteps for
the reference images.  :func:`qwen_image` writes ``edit=True`` models under a name that says
``edit``, the way users and gouache tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blocks import _linear
from .io import _ONES, _check_dtype, _check_wtype, _positive, _Tensor, make

__all__ = ["QWEN_IMAGE_CONTEXT", "QWEN_IMAGE_WIDTH", "qwen_image"]

#: The engine's fixed widths: transformer (24 heads x 128) and text features (Qwen2.5-VL 7B).
QWEN_IMAGE_WIDTH = 3072
QWEN_IMAGE_CONTEXT = 3584
_HEAD = 128
_PATCHED = 16 * 2 * 2  # 16 latent channels in 2x2 patches
_ZERO_COND_MARKER = "__index_timestep_zero__"


def _block(p: str, d: int) -> Iterator[_Tensor]:
    yield from _linear(f"{p}.img_mod.1", d, 6 * d)
    yield from _linear(f"{p}.txt_mod.1", d, 6 * d)
    a = f"{p}.attn"
    for n in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
        yield from _linear(f"{a}.{n}", d, d)
    for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
        yield f"{a}.{n}.weight", (_HEAD,), _ONES
    yield from _linear(f"{a}.to_out.0", d, d)
    yield from _linear(f"{a}.to_add_out", d, d)
    for s in ("img", "txt"):
        yield from _linear(f"{p}.{s}_mlp.net.0.proj", d, 4 * d)
        yield from _linear(f"{p}.{s}_mlp.net.2", 4 * d, d)


def _qwen_image(layers: int, zero_cond_t: bool) -> Iterator[_Tensor]:
    d = QWEN_IMAGE_WIDTH
    yield from _linear("time_text_embed.timestep_embedder.linear_1", 256, d)
    yield from _linear("time_text_embed.timestep_embedder.linear_2", d, d)
    yield "txt_norm.weight", (QWEN_IMAGE_CONTEXT,), _ONES
    yield from _linear("img_in", _PATCHED, d)
    yield from _linear("txt_in", QWEN_IMAGE_CONTEXT, d)
    for i in range(layers):
        yield from _block(f"transformer_blocks.{i}", d)
    yield from _linear("norm_out.linear", d, 2 * d)
    yield from _linear("proj_out", d, _PATCHED)
    if zero_cond_t:
        yield _ZERO_COND_MARKER, (1,), _ONES


BUILDERS = {
    "qwen_image": lambda s: _qwen_image(s["layers"], False),
    "qwen_image_edit": lambda s: _qwen_image(s["layers"], s.get("zero_cond_t", False)),
}


def qwen_image(
    *,
    edit: bool = False,
    zero_cond_t: bool = False,
    layers: int = 1,
    wtype: str | None = "q4_0",
    dtype: str = "f16",
    seed: int = 0,
) -> Path:
    """A Qwen-Image DiT with ``layers`` transformer blocks (real: 60), diffusion-model-only file.

    ``edit=True`` names the file ``qwen_image_edit-<hash>`` (Qwen-Image-Edit: the same tensors,
    edits with reference images); ``zero_cond_t=True`` (edit only) adds Edit 2511's
    ``__index_timestep_zero__`` marker.  ``wtype`` "q4_0" (default) / "q8_0" write a GGUF
    directly, ``None`` f16 safetensors (0.72 GB a block).
    """
    if zero_cond_t and not edit:
        raise ValueError("zero_cond_t is the marker of Qwen-Image-Edit 2511: use it with edit=True")
    spec = {"layers": _positive("layers", layers), "dtype": _check_dtype(dtype), "seed": int(seed)}
    if zero_cond_t:
        spec["zero_cond_t"] = True
    if _check_wtype(wtype) is not None:
        spec["wtype"] = wtype
    return make(BUILDERS, "qwen_image_edit" if edit else "qwen_image", spec)
