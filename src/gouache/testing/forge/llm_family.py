"""LLM text encoders: Qwen3 (Z-Image, FLUX.2 klein), Qwen2.5-VL (Qwen-Image), Mistral Small 3.2 (FLUX.2 dev).

Hugging Face names (``model.embed_tokens``, ``model.layers.N.self_attn.q_proj``, ...), as in
``qwen_3_4b.safetensors`` / ``qwen_2.5_vl_7b.safetensors``, to be passed as ``llm_path``; the
engine prefixes them with ``text_encoders.llm.``.  Mirrors llm.hpp: the engine reads the layer
count, the width (``embed_tokens``), the vocabulary and the MLP width from the file, but fixes
the attention per architecture (heads x 128-wide heads, key/value heads), so the attention
projections keep their real widths whatever the model width.  The vocabulary must hold the
tokenizer's ids (the prompt templates use ids near the end of it), so it is the real one.

Which layers the diffusion model reads is fixed too (Z-Image: the output of layer 35;
FLUX.2 dev: layers 10, 20, 30 side by side; FLUX.2 klein: 9, 18, 27; Qwen-Image: the last,
normed); with fewer layers the engine takes the final normed output instead, so a small
encoder conditions with ``hidden`` features and a full-depth one with the real count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from .blocks import _linear
from .io import _ONES, _check_dtype, _check_wtype, _positive, _Tensor, make

__all__ = ["LLM_ARCHS", "LLM_SIZES", "LLMArch", "llm"]


@dataclasses.dataclass(frozen=True)
class LLMArch:
    """What llm.hpp fixes for an architecture: attention heads (128 wide), key/value heads,
    q/k/v biases, q/k RMSNorms, and the real vocabulary size."""

    heads: int
    kv_heads: int
    qkv_bias: bool
    qk_norm: bool
    vocab: int
    head_dim: int = 128


#: The engine's LLM architectures (llm.hpp LLMRunner).
LLM_ARCHS: dict[str, LLMArch] = {
    "qwen2.5_vl": LLMArch(heads=28, kv_heads=4, qkv_bias=True, qk_norm=False, vocab=152064),
    "qwen3": LLMArch(heads=32, kv_heads=8, qkv_bias=False, qk_norm=True, vocab=151936),
    "mistral": LLMArch(heads=32, kv_heads=8, qkv_bias=False, qk_norm=False, vocab=131072),
}

#: Real sizes: name -> (arch, hidden, layers, intermediate).
LLM_SIZES: dict[str, tuple[str, int, int, int]] = {
    "qwen2.5_vl_7b": ("qwen2.5_vl", 3584, 28, 18944),  # Qwen-Image, Qwen-Image-Edit
    "qwen3_4b": ("qwen3", 2560, 36, 9728),  # Z-Image, FLUX.2 klein 4B
    "qwen3_8b": ("qwen3", 4096, 36, 12288),  # FLUX.2 klein 9B
    "mistral_small_3.2_24b": ("mistral", 5120, 40, 32768),  # FLUX.2 dev
}


def _llm(arch: str, hidden: int, layers: int, intermediate: int) -> Iterator[_Tensor]:
    a = LLM_ARCHS[arch]
    q_width, kv_width = a.heads * a.head_dim, a.kv_heads * a.head_dim
    yield "model.embed_tokens.weight", (a.vocab, hidden), 0.02
    for i in range(layers):
        b = f"model.layers.{i}"
        yield from _linear(f"{b}.self_attn.q_proj", hidden, q_width, bias=a.qkv_bias)
        yield from _linear(f"{b}.self_attn.k_proj", hidden, kv_width, bias=a.qkv_bias)
        yield from _linear(f"{b}.self_attn.v_proj", hidden, kv_width, bias=a.qkv_bias)
        yield from _linear(f"{b}.self_attn.o_proj", q_width, hidden, bias=False)
        if a.qk_norm:
            yield f"{b}.self_attn.q_norm.weight", (a.head_dim,), _ONES
            yield f"{b}.self_attn.k_norm.weight", (a.head_dim,), _ONES
        yield from _linear(f"{b}.mlp.gate_proj", hidden, intermediate, bias=False)
        yield from _linear(f"{b}.mlp.up_proj", hidden, intermediate, bias=False)
        yield from _linear(f"{b}.mlp.down_proj", intermediate, hidden, bias=False)
        yield f"{b}.input_layernorm.weight", (hidden,), _ONES
        yield f"{b}.post_attention_layernorm.weight", (hidden,), _ONES
    yield "model.norm.weight", (hidden,), _ONES


BUILDERS = {"llm": lambda s: _llm(s["arch"], s["hidden"], s["layers"], s["intermediate"])}


def llm(
    arch: str = "qwen3",
    *,
    hidden: int = 64,
    layers: int = 2,
    intermediate: int = 128,
    dtype: str = "f16",
    wtype: str | None = None,
    seed: int = 0,
) -> Path:
    """An LLM text encoder of architecture ``arch`` ("qwen3", "qwen2.5_vl", "mistral"), for
    ``llm_path``.

    ``hidden`` (a multiple of 32), ``layers`` and ``intermediate`` are read by the engine
    from the file; the attention projections and the vocabulary have their real widths (see
    :data:`LLM_ARCHS`), so even a 64-wide encoder holds the ~1e7-parameter embedding table.
    The diffusion model sets the width it needs: Z-Image 2560, Qwen-Image 3584, FLUX.2 any
    (its ``txt_in`` is read from the file).  Real sizes are in :data:`LLM_SIZES`
    (``llm(**dict(zip(("arch", "hidden", "layers", "intermediate"), LLM_SIZES["qwen3_4b"])))``).
    ``wtype="q8_0"``/``"q4_0"`` writes a quantized GGUF directly (for the wide ones).
    Avoid ``layers=28`` with "qwen3": the engine takes it for the 2B model and halves the heads.
    """
    if arch not in LLM_ARCHS:
        raise ValueError(f"arch must be one of {sorted(LLM_ARCHS)}, got {arch!r}")
    hidden = _positive("hidden", hidden)
    if hidden % 32:
        raise ValueError(f"hidden must be a multiple of 32 (ggml blocks), got {hidden}")
    spec = {
        "arch": arch,
        "hidden": hidden,
        "layers": _positive("layers", layers),
        "intermediate": _positive("intermediate", intermediate),
        "dtype": _check_dtype(dtype),
        "seed": int(seed),
    }
    if _check_wtype(wtype) is not None:
        spec["wtype"] = wtype
    return make(BUILDERS, "llm", spec)
