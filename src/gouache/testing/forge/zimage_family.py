"""Z-Image (Turbo and base): the DiT (original names, as ``z_image_turbo_bf16.safetensors``); the
text encoder is Qwen3 4B (:func:`gouache.testing.forge.llm`, 2560 wide), the autoencoder Flux.1's
(:func:`gouache.testing.forge.flux_vae`).

Mirrors z_image.hpp, where every hyper-parameter is a constant (30 layers of 3840, 2 noise and 2
context refiner layers, 30 heads of 128, text features 2560): the engine reads nothing from the
file but the names, so the only model it accepts is the real size, 6.15e9 parameters.  It is
written as a q4_0 GGUF directly (3.5 GB; the engine itself quantizes the real model the same
way), which makes it a ``forge_large`` model for tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blocks import _linear
from .io import _ONES, _STD, _check_wtype, _Tensor, make

__all__ = ["Z_IMAGE", "z_image"]

#: The engine's constants for Z-Image (z_image.hpp ZImageParams).
Z_IMAGE = {
    "hidden": 3840,
    "layers": 30,
    "refiner_layers": 2,
    "heads": 30,
    "kv_heads": 30,
    "head_dim": 128,
    "ffn": 10240,  # 8/3 x 3840 rounded up to a multiple of 256
    "text_dim": 2560,  # Qwen3 4B
    "adaln": 256,
    "patched": 16 * 2 * 2,  # 16 latent channels in 2x2 patches
}


def _block(p: str, modulation: bool) -> Iterator[_Tensor]:
    z = Z_IMAGE
    h, hd = z["hidden"], z["head_dim"]
    yield from _linear(f"{p}.attention.qkv", h, (z["heads"] + 2 * z["kv_heads"]) * hd, bias=False)
    yield from _linear(f"{p}.attention.out", z["heads"] * hd, h, bias=False)
    yield f"{p}.attention.q_norm.weight", (hd,), _ONES
    yield f"{p}.attention.k_norm.weight", (hd,), _ONES
    yield from _linear(f"{p}.feed_forward.w1", h, z["ffn"], bias=False)
    yield from _linear(f"{p}.feed_forward.w2", z["ffn"], h, bias=False)
    yield from _linear(f"{p}.feed_forward.w3", h, z["ffn"], bias=False)
    for n in ("attention_norm1", "ffn_norm1", "attention_norm2", "ffn_norm2"):
        yield f"{p}.{n}.weight", (h,), _ONES
    if modulation:
        yield from _linear(f"{p}.adaLN_modulation.0", z["adaln"], 4 * h)


def _z_image() -> Iterator[_Tensor]:
    z = Z_IMAGE
    h = z["hidden"]
    yield from _linear("x_embedder", z["patched"], h)
    yield from _linear("t_embedder.mlp.0", 256, min(h, 1024))
    yield from _linear("t_embedder.mlp.2", min(h, 1024), z["adaln"])
    yield "cap_embedder.0.weight", (z["text_dim"],), _ONES
    yield from _linear("cap_embedder.1", z["text_dim"], h)
    for i in range(z["refiner_layers"]):
        yield from _block(f"noise_refiner.{i}", True)
    for i in range(z["refiner_layers"]):
        yield from _block(f"context_refiner.{i}", False)
    for i in range(z["layers"]):
        yield from _block(f"layers.{i}", True)
    yield from _linear("final_layer.linear", h, z["patched"])
    yield from _linear("final_layer.adaLN_modulation.1", z["adaln"], h)
    yield "cap_pad_token", (h,), _STD
    yield "x_pad_token", (h,), _STD


BUILDERS = {"z_image": lambda s: _z_image()}


def z_image(*, wtype: str = "q4_0", seed: int = 0) -> Path:
    """The Z-Image DiT at its only size (see the module), diffusion-model-only GGUF (``wtype``
    "q4_0": 3.5 GB, "q8_0": 6.5 GB).  Needs ``llm_path`` 2560 wide
    (``forge.llm("qwen3", hidden=2560)``) and ``vae_path`` :func:`gouache.testing.forge.flux_vae`.
    Turbo and base share the layout (the file name tells them apart: ``turbo``)."""
    if _check_wtype(wtype) is None:
        raise ValueError("z_image is only written as a quantized GGUF (wtype 'q4_0' or 'q8_0'): 12 GB in f16")
    return make(BUILDERS, "z_image", {"seed": int(seed), "dtype": "f16", "wtype": wtype})
