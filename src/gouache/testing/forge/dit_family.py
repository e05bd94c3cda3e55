"""DiT families: Flux (DiT, 16-channel autoencoder, CLIP-L), Wan 2.1 (DiT, TAEHV).

Flux and Wan 2.1 are written as *diffusion-model-only* files (the layout of the official
``flux1-dev.safetensors`` / ``wan2.1_t2v_1.3B_fp16.safetensors``: bare names such as
``double_blocks.0.img_attn.qkv.weight`` or ``blocks.0.self_attn.q.weight``), to be passed as
``diffusion_model_path``; the engine prefixes them with ``model.diffusion_model.``.  Their
text encoders and autoencoders are separate files, as for the real models.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .blocks import _MID_GREY, _clip_l, _conv, _fan_in_std, _kl_decoder, _kl_encoder, _linear, _norm
from .io import (
    _ONES,
    _STD,
    _canonical,
    _check_dtype,
    _check_wtype,
    _positive,
    _spec_path,
    _Tensor,
    _write_safetensors,
    convert_cached,
    gguf_target,
    make,
)

# ---- Flux (black-forest-labs reference names), mirrors flux.hpp

#: Flux attention head width: the engine's RoPE covers axes_dim (16, 56, 56) = 128 channels
#: per head and derives num_heads = hidden_size / head_dim (read from ``*.key_norm.scale``).
FLUX_HEAD_DIM = 128
_FLUX_LATENT = 16  # latent channels; img_in sees 2x2 patches: 64 features
_FLUX_CONTEXT = 4096  # T5-XXL width; the engine feeds zeros of this width when T5 is absent
_FLUX_VEC = 768  # CLIP-L pooled width


def _mlp_embedder(p: str, n_in: int, hidden: int) -> Iterator[_Tensor]:
    yield from _linear(f"{p}.in_layer", n_in, hidden)
    yield from _linear(f"{p}.out_layer", hidden, hidden)


def _qk_norm(p: str, head_dim: int) -> Iterator[_Tensor]:
    yield f"{p}.query_norm.scale", (head_dim,), _ONES
    yield f"{p}.key_norm.scale", (head_dim,), _ONES


_CHROMA_INNER = 5120  # the engine's fixed width of Chroma's distilled guidance layer (5 MLPs)


def _chroma_approximator(p: str, hidden: int) -> Iterator[_Tensor]:
    yield from _linear(f"{p}.in_proj", _FLUX_LATENT * 4, _CHROMA_INNER)
    for i in range(5):
        yield f"{p}.norms.{i}.scale", (_CHROMA_INNER,), _ONES
        yield from _mlp_embedder(f"{p}.layers.{i}", _CHROMA_INNER, _CHROMA_INNER)
    yield from _linear(f"{p}.out_proj", _CHROMA_INNER, hidden)


def _flux(
    hidden: int = 256, depth: int = 1, depth_single: int = 1, guidance: bool = True, chroma: bool = False
) -> Iterator[_Tensor]:
    """Flux.1; ``chroma``: Chroma's pruned layout (no modulation layers, no time/vector/guidance
    inputs: one distilled guidance layer makes every block's modulation)."""
    h, mlp, hd = hidden, hidden * 4, FLUX_HEAD_DIM
    patch_in = _FLUX_LATENT * 2 * 2
    yield from _linear("img_in", patch_in, h)
    if chroma:
        yield from _chroma_approximator("distilled_guidance_layer", h)
    else:
        yield from _mlp_embedder("time_in", 256, h)
        yield from _mlp_embedder("vector_in", _FLUX_VEC, h)
    if guidance and not chroma:  # flux-dev style (distilled guidance); schnell has none
        yield from _mlp_embedder("guidance_in", 256, h)
    yield from _linear("txt_in", _FLUX_CONTEXT, h)
    for i in range(depth):
        b = f"double_blocks.{i}"
        for s in ("img", "txt"):
            if not chroma:
                yield from _linear(f"{b}.{s}_mod.lin", h, 6 * h)
            yield from _linear(f"{b}.{s}_attn.qkv", h, 3 * h)
            yield from _qk_norm(f"{b}.{s}_attn.norm", hd)
            yield from _linear(f"{b}.{s}_attn.proj", h, h)
            yield from _linear(f"{b}.{s}_mlp.0", h, mlp)
            yield from _linear(f"{b}.{s}_mlp.2", mlp, h)
    for i in range(depth_single):
        b = f"single_blocks.{i}"
        yield from _linear(f"{b}.linear1", h, 3 * h + mlp)
        yield from _linear(f"{b}.linear2", h + mlp, h)
        yield from _qk_norm(f"{b}.norm", hd)
        if not chroma:
            yield from _linear(f"{b}.modulation.lin", h, 3 * h)
    yield from _linear("final_layer.linear", h, patch_in)
    if not chroma:
        yield from _linear("final_layer.adaLN_modulation.1", h, 2 * h)


# ---- KL autoencoder halves without quant convs (Flux ``ae.safetensors``), mirrors auto_encoder_kl.hpp


def _flux_ae(decoder_ch: int = 128) -> Iterator[_Tensor]:
    # The engine fixes the encoder at ch=128 and reads the decoder's ch from decoder.conv_in.
    ch_mult = (1, 2, 4, 4)
    yield from _kl_encoder("encoder", 128, ch_mult, 2, _FLUX_LATENT)
    yield from _kl_decoder("decoder", decoder_ch, ch_mult, 2, _FLUX_LATENT)


# ---- Wan 2.1 DiT (Wan-Video reference names), mirrors wan.hpp

#: Wan 2.1 T2V 1.3B hyper-parameters as the engine sets them for a 30-block file.
WAN21_1_3B = {
    "dim": 1536,
    "ffn_dim": 8960,
    "num_heads": 12,
    "num_layers": 30,
    "in_dim": 16,
    "out_dim": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "patch_size": (1, 2, 2),
}

#: Wan 2.2 TI2V 5B as the engine sets it for a 30-block file detected as TI2V (patch embedding
#: 3072 x 48: wan.hpp WanRunner, model.cpp ``patch_embedding_channels == 147456``).
WAN22_TI2V_5B = {**WAN21_1_3B, "dim": 3072, "ffn_dim": 14336, "num_heads": 24, "in_dim": 48, "out_dim": 48}


def _wan_attention(p: str, dim: int) -> Iterator[_Tensor]:
    for n in ("q", "k", "v", "o"):
        yield from _linear(f"{p}.{n}", dim, dim)
    yield f"{p}.norm_q.weight", (dim,), _ONES  # RMSNorm over the full width
    yield f"{p}.norm_k.weight", (dim,), _ONES


def _wan(
    dim: int,
    ffn_dim: int,
    num_layers: int,
    in_dim: int,
    out_dim: int,
    text_dim: int,
    freq_dim: int,
    patch_size: Sequence[int],
    **_: Any,
) -> Iterator[_Tensor]:
    pt, ph, pw = patch_size
    yield "patch_embedding.weight", (dim, in_dim, pt, ph, pw), _STD  # Conv3d
    yield "patch_embedding.bias", (dim,), _STD
    yield from _linear("text_embedding.0", text_dim, dim)
    yield from _linear("text_embedding.2", dim, dim)
    yield from _linear("time_embedding.0", freq_dim, dim)
    yield from _linear("time_embedding.2", dim, dim)
    yield from _linear("time_projection.1", dim, 6 * dim)
    for i in range(num_layers):
        b = f"blocks.{i}"
        yield f"{b}.modulation", (1, 6, dim), _STD
        yield from _wan_attention(f"{b}.self_attn", dim)
        yield from _norm(f"{b}.norm3", dim)  # cross_attn_norm: affine LayerNorm
        yield from _wan_attention(f"{b}.cross_attn", dim)
        yield from _linear(f"{b}.ffn.0", dim, ffn_dim)
        yield from _linear(f"{b}.ffn.2", ffn_dim, dim)
    yield "head.modulation", (1, 2, dim), _STD
    yield from _linear("head.head", dim, out_dim * pt * ph * pw)


# ---- Wan 2.1 VAE (wan_2.1_vae.safetensors), mirrors wan.hpp WanVAE: every size fixed by the engine


def _conv3d(p: str, n_in: int, n_out: int, k: Sequence[int] = (3, 3, 3)) -> Iterator[_Tensor]:
    yield f"{p}.weight", (n_out, n_in, *k), _fan_in_std(n_in, 1) / float(np.sqrt(np.prod(k)))
    yield f"{p}.bias", (n_out,), _STD


def _rms_gamma(p: str, dim: int, dims: int = 3) -> Iterator[_Tensor]:
    yield f"{p}.gamma", (dim,) + (1,) * dims, _ONES


def _wan_resblock(p: str, n_in: int, n_out: int) -> Iterator[_Tensor]:
    yield from _rms_gamma(f"{p}.residual.0", n_in)
    yield from _conv3d(f"{p}.residual.2", n_in, n_out)
    yield from _rms_gamma(f"{p}.residual.3", n_out)
    yield from _conv3d(f"{p}.residual.6", n_out, n_out)
    if n_in != n_out:
        yield from _conv3d(f"{p}.shortcut", n_in, n_out, (1, 1, 1))


def _wan_vae_attention(p: str, dim: int) -> Iterator[_Tensor]:
    yield from _rms_gamma(f"{p}.norm", dim, dims=2)
    yield from _conv(f"{p}.to_qkv", dim, 3 * dim, k=1, std=_fan_in_std(dim, 1))
    yield from _conv(f"{p}.proj", dim, dim, k=1, std=_fan_in_std(dim, 1))


def _wan_middle(p: str, dim: int) -> Iterator[_Tensor]:
    yield from _wan_resblock(f"{p}.middle.0", dim, dim)
    yield from _wan_vae_attention(f"{p}.middle.1", dim)
    yield from _wan_resblock(f"{p}.middle.2", dim, dim)


def _wan_resample(p: str, dim: int, mode: str) -> Iterator[_Tensor]:
    out = dim // 2 if mode.startswith("up") else dim
    yield from _conv(f"{p}.resample.1", dim, out, std=_fan_in_std(dim, 3))
    if mode == "upsample3d":
        yield from _conv3d(f"{p}.time_conv", dim, 2 * dim, (3, 1, 1))
    elif mode == "downsample3d":
        yield from _conv3d(f"{p}.time_conv", dim, dim, (3, 1, 1))


def _wan_vae(encoder: bool = True) -> Iterator[_Tensor]:
    dim, z, mult = 96, 16, (1, 2, 4, 4)
    if encoder:
        dims = [dim] + [dim * m for m in mult]
        yield from _conv3d("encoder.conv1", 3, dims[0])
        idx = 0
        for i in range(len(mult)):
            n_in, n_out = dims[i], dims[i + 1]
            for _ in range(2):
                yield from _wan_resblock(f"encoder.downsamples.{idx}", n_in, n_out)
                n_in, idx = n_out, idx + 1
            if i != len(mult) - 1:
                mode = "downsample3d" if (False, True, True)[i] else "downsample2d"
                yield from _wan_resample(f"encoder.downsamples.{idx}", n_out, mode)
                idx += 1
        yield from _wan_middle("encoder", dims[-1])
        yield from _rms_gamma("encoder.head.0", dims[-1])
        yield from _conv3d("encoder.head.2", dims[-1], 2 * z)
        yield from _conv3d("conv1", 2 * z, 2 * z, (1, 1, 1))
    dims = [dim * mult[-1]] + [dim * m for m in reversed(mult)]
    yield from _conv3d("decoder.conv1", z, dims[0])
    yield from _wan_middle("decoder", dims[0])
    idx = 0
    for i in range(len(mult)):
        n_in, n_out = dims[i] // (2 if i else 1), dims[i + 1]
        for _ in range(3):
            yield from _wan_resblock(f"decoder.upsamples.{idx}", n_in, n_out)
            n_in, idx = n_out, idx + 1
        if i != len(mult) - 1:
            mode = "upsample3d" if (True, True, False)[i] else "upsample2d"
            yield from _wan_resample(f"decoder.upsamples.{idx}", n_out, mode)
            idx += 1
    yield from _rms_gamma("decoder.head.0", dims[-1])
    yield from _conv3d("decoder.head.2", dims[-1], 3)
    yield from _conv3d("conv2", z, z, (1, 1, 1))


# ---- TAEHV (madebyollin/taehv "taew2_1"), mirrors tae.hpp TinyVideoDecoder/TinyVideoEncoder


def _mem_block(p: str, c: int) -> Iterator[_Tensor]:
    yield from _conv(f"{p}.conv.0", 2 * c, c, std=_fan_in_std(2 * c, 3))  # input: [x, past frame]
    yield from _conv(f"{p}.conv.2", c, c, std=_fan_in_std(c, 3))
    yield from _conv(f"{p}.conv.4", c, c, std=_fan_in_std(c, 3))


#: TAEHV's latent channels and pixel patch size per Wan latent space (tae.hpp TAEHV).
_TAEHV_LATENTS = {"wan2.1": (16, 1), "wan2.2": (48, 2)}


def _taehv(latent: str = "wan2.1", encoder: bool = True) -> Iterator[_Tensor]:
    def conv(prefix, n_in, n_out, k=3, bias=True, **kw):
        return _conv(prefix, n_in, n_out, k=k, bias=bias, std=kw.pop("std", _fan_in_std(n_in, k)), **kw)

    z, patch = _TAEHV_LATENTS[latent]
    if encoder:
        hidden, idx = 64, 0
        yield from conv(f"encoder.{idx}", 3 * patch * patch, hidden)
        idx = 2  # 1 is ReLU
        for i in range(3):
            stride = 1 if i == 2 else 2
            yield from conv(f"encoder.{idx}.conv", hidden * stride, hidden, k=1, bias=False)  # TPool
            yield from conv(f"encoder.{idx + 1}", hidden, hidden, bias=False)  # stride-2 conv
            idx += 2
            for _ in range(3):
                yield from _mem_block(f"encoder.{idx}", hidden)
                idx += 1
        yield from conv(f"encoder.{idx}", hidden, z)

    channels = (256, 128, 64, 64)
    yield from conv("decoder.1", z, channels[0])  # 0 is Clamp, 2 is ReLU
    idx = 3
    for i in range(3):
        stride = 1 if i == 0 else 2
        for _ in range(3):
            yield from _mem_block(f"decoder.{idx}", channels[i])
            idx += 1
        idx += 1  # Upsample
        yield from conv(f"decoder.{idx}.conv", channels[i], channels[i] * stride, k=1, bias=False)  # TGrow
        yield from conv(f"decoder.{idx + 1}", channels[i], channels[i + 1], bias=False)
        idx += 2
    idx += 1  # ReLU
    # decodes straight to [0, 1] like TAESD: centre on mid-grey (see _taesd)
    out = 3 * patch * patch  # unpatchified to 3 channels
    yield from conv(f"decoder.{idx}", channels[3], out, std=0.25 * _fan_in_std(channels[3], 3), bias_init=_MID_GREY)


BUILDERS = {
    "flux": lambda s: _flux(s.get("hidden", 256), s.get("depth", 1), s.get("depth_single", 1), s.get("guidance", True)),
    "flux_kontext": lambda s: _flux(s["hidden"], s["depth"], s["depth_single"]),
    "chroma": lambda s: _flux(s["hidden"], s["depth"], s["depth_single"], chroma=True),
    "flux_vae": lambda s: _flux_ae(s.get("decoder_ch", 128)),
    "clip_l": lambda s: _clip_l("text_model"),
    "wan21_t2v": lambda s: _wan(**WAN21_1_3B),
    "wan22_ti2v": lambda s: _wan(**WAN22_TI2V_5B),
    "taehv": lambda s: _taehv(s.get("latent", "wan2.1"), encoder=s.get("encoder", True)),
    "wan_vae": lambda s: _wan_vae(encoder=s.get("encoder", True)),
}


def _make(kind: str, spec: dict) -> Path:
    return make(BUILDERS, kind, spec)


def flux(
    *,
    dtype: str = "f16",
    seed: int = 0,
    depth: int = 1,
    depth_single: int = 1,
    hidden: int = 256,
    guidance: bool = True,
) -> Path:
    """A small Flux.1 DiT, diffusion-model-only file (pass it as ``diffusion_model_path``).

    Reference names (``img_in``, ``time_in``, ``vector_in``, ``guidance_in``, ``txt_in``,
    ``double_blocks.N.*``, ``single_blocks.N.*``, ``final_layer.*``); the engine reads the block
    counts, the width (``txt_in``) and the head width (``*.key_norm.scale``) from the file and
    detects it as ``Flux``.  In/out channels (16-channel latent, 2x2 patches), context width
    (4096, T5-XXL) and vector width (768, CLIP-L pooled) are the real ones, so the real
    conditioner and VAE plug in.  ``hidden`` must be a multiple of :data:`FLUX_HEAD_DIM` (128;
    heads = hidden / 128).  ``guidance=False`` drops ``guidance_in`` (schnell style).
    Defaults: 2 heads, 1 double + 1 single block, 5.1e6 parameters (~10 MB in f16).

    It needs a text encoder: use :func:`clip_l` as ``clip_l_path`` (T5-XXL has fixed, 4.7e9
    parameter dimensions; without it the engine conditions on zeros) and :func:`flux_vae`.
    """
    hidden = _positive("hidden", hidden)
    if hidden % FLUX_HEAD_DIM:
        raise ValueError(f"hidden must be a multiple of {FLUX_HEAD_DIM} (the engine's head width), got {hidden}")
    spec = {
        "dtype": _check_dtype(dtype),
        "seed": int(seed),
        "depth": _positive("depth", depth),
        "depth_single": _positive("depth_single", depth_single),
        "hidden": hidden,
        "guidance": bool(guidance),
    }
    return _make("flux", spec)


def _small_flux_spec(dtype: str, seed: int, depth: int, depth_single: int, hidden: int, wtype: str | None) -> dict:
    hidden = _positive("hidden", hidden)
    if hidden % FLUX_HEAD_DIM:
        raise ValueError(f"hidden must be a multiple of {FLUX_HEAD_DIM} (the engine's head width), got {hidden}")
    spec = {
        "dtype": _check_dtype(dtype),
        "seed": int(seed),
        "depth": _positive("depth", depth),
        "depth_single": _positive("depth_single", depth_single),
        "hidden": hidden,
    }
    if _check_wtype(wtype) is not None:
        spec["wtype"] = wtype
    return spec


def flux_kontext(
    *, dtype: str = "f16", seed: int = 0, depth: int = 1, depth_single: int = 1, hidden: int = 256
) -> Path:
    """A small FLUX.1 Kontext dev DiT: the layout of :func:`flux` (Kontext has Flux.1 dev's
    tensors), in a file whose name says ``kontext`` (``flux_kontext-<hash>.safetensors``), which
    is how the engine's users and gouache tell it apart.  Edit with reference images
    (``SDModel.edit``); pair it with :func:`flux_vae` and :func:`clip_l`."""
    return _make("flux_kontext", _small_flux_spec(dtype, seed, depth, depth_single, hidden, None))


def chroma(
    *,
    dtype: str = "f16",
    wtype: str | None = "q8_0",
    seed: int = 0,
    depth: int = 1,
    depth_single: int = 1,
    hidden: int = 256,
) -> Path:
    """A small Chroma DiT (Flux.1 pruned: ``distilled_guidance_layer`` in place of every
    modulation layer and of the time/vector/guidance inputs), diffusion-model-only file.

    The distilled guidance layer has a width the engine fixes (5 MLPs of 5120: 2.7e8
    parameters whatever ``hidden``), so the file is a q8_0 GGUF by default (~0.3 GB;
    ``wtype=None`` writes f16 safetensors, ~0.55 GB).  Chroma reads T5-XXL only (no CLIP);
    without it the engine conditions on zeros.  Pair it with :func:`flux_vae`.
    """
    return _make("chroma", _small_flux_spec(dtype, seed, depth, depth_single, hidden, wtype))


def flux_vae(*, dtype: str = "f16", seed: int = 0, decoder_ch: int = 128) -> Path:
    """The Flux.1 16-channel KL autoencoder (``ae.safetensors`` layout: ``encoder.*``,
    ``decoder.*``, no quant convs), as the engine loads it via ``vae_path``.

    ``decoder_ch=128`` is the real size (8.4e7 parameters, ~160 MB in f16).  The engine reads
    the decoder's width from ``decoder.conv_in`` (the encoder's is fixed at 128), so a smaller
    ``decoder_ch`` (a multiple of 32, for GroupNorm) gives a faster decoder that still loads,
    with a full encoder for img2img.
    """
    decoder_ch = _positive("decoder_ch", decoder_ch)
    if decoder_ch % 32:
        raise ValueError(f"decoder_ch must be a multiple of 32 (GroupNorm(32) channels), got {decoder_ch}")
    return _make("flux_vae", {"dtype": _check_dtype(dtype), "seed": int(seed), "decoder_ch": decoder_ch})


def clip_l(*, dtype: str = "f16", seed: int = 0) -> Path:
    """A standalone CLIP ViT-L/14 text model (HF ``text_model.*`` names, as ``clip_l.safetensors``)
    for ``clip_l_path`` (Flux, SD3); the engine prefixes it itself.  1.2e8 parameters, ~250 MB in f16."""
    return _make("clip_l", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def wan21_t2v(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Wan 2.1 T2V 1.3B DiT at its real size (30 blocks, dim 1536, ffn 8960, 12 heads, text
    dim 4096, 16 latent channels, 1x2x2 patches), diffusion-model-only file.

    The engine accepts only 30 or 40 blocks and fixes every width from the block count, so
    this cannot be made smaller: 1.42e9 parameters, ~2.8 GB in f16.  Prefer
    :func:`wan21_t2v_gguf` (q4_0, ~0.8 GB) for tests.  Pair it with :func:`taehv`.
    """
    return _make("wan21_t2v", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def wan21_t2v_gguf(*, wtype: str = "q4_0", seed: int = 0) -> Path:
    """:func:`wan21_t2v` quantized by the engine's converter (:func:`gouache.convert_model`),
    cached as a ``.gguf``.

    The f16 source is written to a temporary file and deleted afterwards unless it is already
    cached, so only the quantized file stays (~0.8 GB for q4_0).
    """
    src_spec = {"dtype": "f16", "seed": int(seed)}
    src_path = _spec_path("wan21_t2v", src_spec)
    path, engine_type = gguf_target("wan21_t2v", wtype, {"seed": int(seed), "source": src_path.name})
    if path.exists():
        return path
    if src_path.exists():
        return convert_cached(src_path, path, engine_type)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{src_path.name}.", suffix=".src.safetensors")
    os.close(fd)
    tmp_src = Path(name)
    try:
        metadata = {"gouache.forge": "wan21_t2v", "gouache.forge.spec": _canonical("wan21_t2v", src_spec)}
        _write_safetensors(
            tmp_src, list(BUILDERS["wan21_t2v"](src_spec)), dtype="f16", seed=int(seed), metadata=metadata
        )
        return convert_cached(tmp_src, path, engine_type)
    finally:
        tmp_src.unlink(missing_ok=True)


def wan_vae(*, seed: int = 0, encoder: bool = True) -> Path:
    """The Wan 2.1 VAE (``wan_2.1_vae.safetensors`` layout: ``encoder.*``, ``conv1``,
    ``decoder.*``, ``conv2``; causal 3-D convolutions, 16 latent channels), as the engine loads
    it via ``vae_path`` for Wan 2.1 / Wan 2.2 A14B and Qwen-Image.

    The engine fixes every width (base 96), so this is the real size: 1.3e8 parameters (~0.25 GB
    in f16).  ``encoder=False`` leaves the encoder out (decode-only contexts).
    """
    return _make("wan_vae", {"dtype": "f16", "seed": int(seed), "encoder": bool(encoder)})


def taehv(*, seed: int = 0, encoder: bool = True, latent: str = "wan2.1") -> Path:
    """TAEHV for a Wan latent space (``taew2_1.safetensors`` layout: ``decoder.N.*`` and,
    with ``encoder=True``, ``encoder.N.*``; f32), as the engine's ``taesd_path`` expects for Wan.

    ``latent="wan2.1"`` (Wan 2.1 and 2.2 A14B: 16 channels) decodes T latent frames to 4T-3
    frames at 8x the latent size; ``"wan2.2"`` (``taew2_2``, Wan 2.2 TI2V 5B: 48 channels, 2x2
    pixel patches) at 16x.  1.1e7 parameters with the encoder (~45 MB).
    """
    if latent not in _TAEHV_LATENTS:
        raise ValueError(f"latent must be one of {sorted(_TAEHV_LATENTS)}, got {latent!r}")
    spec = {"dtype": "f32", "seed": int(seed), "encoder": bool(encoder)}
    if latent != "wan2.1":  # Wan 2.1's files keep their cache key
        spec["latent"] = latent
    return _make("taehv", spec)


def wan22_ti2v(*, wtype: str = "q4_0", seed: int = 0) -> Path:
    """Wan 2.2 TI2V 5B DiT at its only size (30 blocks of 3072, ffn 14336, 24 heads, 48 latent
    channels), diffusion-model-only GGUF written quantized directly (``wtype`` "q4_0": 2.9 GB,
    "q8_0": 5.4 GB; 5.0e9 parameters).

    The engine tells TI2V 5B from Wan 2.1 by the patch embedding (3072 x 48) and then fixes
    every width from the block count, so it cannot be forged smaller.  Pair it with
    ``taehv(latent="wan2.2")`` (or the Wan 2.2 VAE of a real download).
    """
    if _check_wtype(wtype) is None:
        raise ValueError("wan22_ti2v is only written as a quantized GGUF (wtype 'q4_0' or 'q8_0'): 10 GB in f16")
    return _make("wan22_ti2v", {"seed": int(seed), "dtype": "f16", "wtype": wtype})
