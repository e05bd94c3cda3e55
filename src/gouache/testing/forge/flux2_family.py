"""FLUX.2 (dev and klein): the DiT and its 32-channel autoencoder; the text encoder is an LLM
(:func:`gouache.testing.forge.llm`: Mistral Small 3.2 for dev, Qwen3 for klein).

The DiT is written as a diffusion-model-only file with the reference names of
``flux2-dev.safetensors`` / ``flux-2-klein-4b.safetensors`` (``double_stream_modulation_img``,
``double_blocks.N``, ``single_blocks.N``, ...), mirroring flux.hpp with the FLUX.2 settings:
no biases, modulation shared by all blocks, SiLU-gated MLPs of ratio 3, 128 latent channels
(32-channel latents in 2x2 patches), 128-wide heads.  The engine reads the block counts, the
width and the text width (``txt_in``) from the file; it tells dev from klein by the 48th
single block, so a dev-layout file has 48 (small) single blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blocks import _conv, _kl_decoder, _kl_encoder, _linear
from .dit_family import FLUX_HEAD_DIM, _qk_norm
from .io import _check_dtype, _check_wtype, _positive, _Tensor, make

__all__ = ["FLUX2_DEV_SINGLE_BLOCKS", "flux2", "flux2_vae"]

#: Single blocks of FLUX.2 dev: the engine calls a FLUX.2 model "dev" when it has a 48th one.
FLUX2_DEV_SINGLE_BLOCKS = 48
_LATENT = 32  # latent channels; the DiT sees 2x2 patches of them: 128 features
_PATCHED = _LATENT * 2 * 2
_MLP_RATIO = 3


def _flux2(hidden: int, depth: int, depth_single: int, context: int, guidance: bool) -> Iterator[_Tensor]:
    h, mlp = hidden, hidden * _MLP_RATIO
    yield from _linear("img_in", _PATCHED, h, bias=False)
    yield from _linear("time_in.in_layer", 256, h, bias=False)
    yield from _linear("time_in.out_layer", h, h, bias=False)
    if guidance:
        yield from _linear("guidance_in.in_layer", 256, h, bias=False)
        yield from _linear("guidance_in.out_layer", h, h, bias=False)
    yield from _linear("txt_in", context, h, bias=False)
    yield from _linear("double_stream_modulation_img.lin", h, 6 * h, bias=False)
    yield from _linear("double_stream_modulation_txt.lin", h, 6 * h, bias=False)
    yield from _linear("single_stream_modulation.lin", h, 3 * h, bias=False)
    for i in range(depth):
        b = f"double_blocks.{i}"
        for s in ("img", "txt"):
            yield from _linear(f"{b}.{s}_attn.qkv", h, 3 * h, bias=False)
            yield from _qk_norm(f"{b}.{s}_attn.norm", FLUX_HEAD_DIM)
            yield from _linear(f"{b}.{s}_attn.proj", h, h, bias=False)
            yield from _linear(f"{b}.{s}_mlp.0", h, 2 * mlp, bias=False)  # SiLU-gated: value and gate
            yield from _linear(f"{b}.{s}_mlp.2", mlp, h, bias=False)
    for i in range(depth_single):
        b = f"single_blocks.{i}"
        yield from _linear(f"{b}.linear1", h, 3 * h + 2 * mlp, bias=False)
        yield from _linear(f"{b}.linear2", h + mlp, h, bias=False)
        yield from _qk_norm(f"{b}.norm", FLUX_HEAD_DIM)
    yield from _linear("final_layer.linear", h, _PATCHED, bias=False)
    yield from _linear("final_layer.adaLN_modulation.1", h, 2 * h, bias=False)


def _flux2_ae(decoder_ch: int) -> Iterator[_Tensor]:
    """The FLUX.2 KL autoencoder: Flux.1's (encoder ch 128, fixed by the engine) with 32 latent
    channels and quant convs; the decoder's width is read from ``decoder.conv_in``."""
    ch_mult = (1, 2, 4, 4)
    yield from _kl_encoder("encoder", 128, ch_mult, 2, _LATENT)
    yield from _conv("quant_conv", 2 * _LATENT, 2 * _LATENT, k=1)
    yield from _conv("post_quant_conv", _LATENT, _LATENT, k=1)
    yield from _kl_decoder("decoder", decoder_ch, ch_mult, 2, _LATENT)


BUILDERS = {
    "flux2": lambda s: _flux2(s["hidden"], s["depth"], s["depth_single"], s["context"], s["guidance"]),
    "flux2_vae": lambda s: _flux2_ae(s["decoder_ch"]),
}


def flux2(
    variant: str = "klein",
    *,
    hidden: int = 128,
    depth: int = 1,
    depth_single: int | None = None,
    context: int = 64,
    guidance: bool | None = None,
    dtype: str = "f16",
    wtype: str | None = None,
    seed: int = 0,
) -> Path:
    """A small FLUX.2 DiT, diffusion-model-only file (pass it as ``diffusion_model_path``).

    ``variant="klein"`` (1 single block, no guidance input, as FLUX.2 klein) or ``"dev"``
    (:data:`FLUX2_DEV_SINGLE_BLOCKS` single blocks and a guidance input, as FLUX.2 dev).
    ``hidden`` must be a multiple of 128 (the engine's head width).  ``context`` is the width of
    the text features, which must equal what the LLM gives: 3 x its width when it has the real
    depth (klein reads Qwen3 layers 9, 18, 27; dev reads Mistral layers 10, 20, 30), else its
    width.  The default 64 fits the default (64-wide, 2-layer) :func:`llm`; 192 fits a 64-wide
    encoder of full depth (``forge.llm("qwen3", hidden=64, layers=27)`` or more).
    Defaults: 1.4e6 parameters (klein), 1.1e7 (dev).
    """
    if variant not in ("klein", "dev"):
        raise ValueError(f"variant must be 'klein' or 'dev', got {variant!r}")
    hidden = _positive("hidden", hidden)
    if hidden % FLUX_HEAD_DIM:
        raise ValueError(f"hidden must be a multiple of {FLUX_HEAD_DIM} (the engine's head width), got {hidden}")
    dev = variant == "dev"
    single = FLUX2_DEV_SINGLE_BLOCKS if depth_single is None and dev else (depth_single or 1)
    if (single >= FLUX2_DEV_SINGLE_BLOCKS) != dev:
        raise ValueError(
            f"depth_single={single}: the engine calls a FLUX.2 model dev exactly when it has"
            f" {FLUX2_DEV_SINGLE_BLOCKS} or more single blocks"
        )
    spec = {
        "hidden": hidden,
        "depth": _positive("depth", depth),
        "depth_single": _positive("depth_single", single),
        "context": _positive("context", context),
        "guidance": dev if guidance is None else bool(guidance),
        "dtype": _check_dtype(dtype),
        "seed": int(seed),
    }
    if _check_wtype(wtype) is not None:
        spec["wtype"] = wtype
    return make(BUILDERS, "flux2", spec)


def flux2_vae(*, decoder_ch: int = 32, dtype: str = "f16", seed: int = 0) -> Path:
    """The FLUX.2 autoencoder (``flux2_ae.safetensors`` layout: ``encoder.*``, ``quant_conv``,
    ``post_quant_conv``, ``decoder.*``; 32 latent channels), for ``vae_path``.

    The encoder is full size (ch 128, fixed by the engine: 3.4e7 parameters); the decoder's
    width ``decoder_ch`` (a multiple of 32) is read from the file: 32 keeps it small.
    """
    decoder_ch = _positive("decoder_ch", decoder_ch)
    if decoder_ch % 32:
        raise ValueError(f"decoder_ch must be a multiple of 32 (GroupNorm(32) channels), got {decoder_ch}")
    return make(BUILDERS, "flux2_vae", {"decoder_ch": decoder_ch, "dtype": _check_dtype(dtype), "seed": int(seed)})
