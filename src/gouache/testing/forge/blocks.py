"""Building blocks of the forged architectures: tensor names and shapes as the engine reads them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .io import _ONES, _STD, _Init, _Tensor


def _linear(p: str, n_in: int, n_out: int, bias: bool = True) -> Iterator[_Tensor]:
    yield f"{p}.weight", (n_out, n_in), _STD
    if bias:
        yield f"{p}.bias", (n_out,), _STD


def _conv(
    p: str, n_in: int, n_out: int, k: int = 3, bias: bool = True, std: float = _STD, bias_init: _Init = _STD
) -> Iterator[_Tensor]:
    yield f"{p}.weight", (n_out, n_in, k, k), std
    if bias:
        yield f"{p}.bias", (n_out,), bias_init


def _norm(p: str, n: int) -> Iterator[_Tensor]:
    yield f"{p}.weight", (n,), _ONES
    yield f"{p}.bias", (n,), _STD


# ---- UNet (ldm.modules.diffusionmodules.openaimodel), mirrors unet.hpp / common_block.hpp


def _resblock(p: str, ch: int, emb: int, out: int) -> Iterator[_Tensor]:
    yield from _norm(f"{p}.in_layers.0", ch)
    yield from _conv(f"{p}.in_layers.2", ch, out)
    yield from _linear(f"{p}.emb_layers.1", emb, out)
    yield from _norm(f"{p}.out_layers.0", out)
    yield from _conv(f"{p}.out_layers.3", out, out)
    if ch != out:
        yield from _conv(f"{p}.skip_connection", ch, out, k=1)


def _spatial_transformer(
    p: str, ch: int, context_dim: int, depth: int = 1, *, linear: bool = False, self_context: bool = False
) -> Iterator[_Tensor]:
    """SpatialTransformer with ``depth`` blocks; ``linear``: proj_in/proj_out are Linear ([C, C],
    ``use_linear_projection`` as in SD2/SDXL), otherwise 1x1 convs ([C, C, 1, 1], SD1);
    ``self_context``: ``attn1`` reads the text context too (keys/values ``[C, context_dim]``, SDXS-512-0.9)."""
    proj = (lambda name: _linear(name, ch, ch)) if linear else (lambda name: _conv(name, ch, ch, k=1))
    kv_in = context_dim if self_context else ch
    yield from _norm(f"{p}.norm", ch)
    yield from proj(f"{p}.proj_in")
    for d in range(depth):
        b = f"{p}.transformer_blocks.{d}"
        yield from _linear(f"{b}.attn1.to_q", ch, ch, bias=False)
        yield from _linear(f"{b}.attn1.to_k", kv_in, ch, bias=False)
        yield from _linear(f"{b}.attn1.to_v", kv_in, ch, bias=False)
        yield from _linear(f"{b}.attn1.to_out.0", ch, ch)
        yield from _linear(f"{b}.ff.net.0.proj", ch, ch * 4 * 2)
        yield from _linear(f"{b}.ff.net.2", ch * 4, ch)
        yield from _linear(f"{b}.attn2.to_q", ch, ch, bias=False)
        yield from _linear(f"{b}.attn2.to_k", context_dim, ch, bias=False)
        yield from _linear(f"{b}.attn2.to_v", context_dim, ch, bias=False)
        yield from _linear(f"{b}.attn2.to_out.0", ch, ch)
        yield from _norm(f"{b}.norm1", ch)
        yield from _norm(f"{b}.norm2", ch)
        yield from _norm(f"{b}.norm3", ch)
    yield from proj(f"{p}.proj_out")


@dataclasses.dataclass(frozen=True)
class UNetShape:
    """The hyper-parameters of an ldm UNet, and of the ControlNet built from its encoder.

    ``attention_at``: the downsampling factors with a SpatialTransformer; ``depth``: transformer
    blocks per level (``None``: one; the middle block uses the last); ``linear``: Linear
    proj_in/proj_out (SD2/SDXL) instead of 1x1 convs; ``adm_in``: ``label_emb`` input width
    (SDXL 2816, else none); ``tiny``: the distilled UNets' block numbering, no middle block;
    ``middle``: ``"full"`` (resnet, transformer, resnet) or ``"resnet"`` (SSD-1B and Vega keep only
    ``middle_block.0``); ``decoder_depth``: transformer blocks per output block, ``[level][j]``, where
    they differ from ``depth`` (SSD-1B); ``self_context_at``: levels whose ``attn1`` reads the text
    context (SDXS-512-0.9's first level)."""

    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_at: tuple[int, ...] = (4, 2, 1)
    context_dim: int = 768
    depth: tuple[int, ...] | None = None
    linear: bool = False
    adm_in: int = 0
    tiny: bool = False
    model_channels: int = 320
    in_channels: int = 4
    out_channels: int = 4
    middle: str = "full"
    decoder_depth: tuple[tuple[int, ...], ...] | None = None
    self_context_at: tuple[int, ...] = ()

    def transformer(
        self, p: str, ch: int, level: int, linear: bool | None = None, j: int | None = None
    ) -> Iterator[_Tensor]:
        depth = 1 if self.depth is None else self.depth[level]
        if j is not None and self.decoder_depth is not None:
            depth = self.decoder_depth[level][j]
        return _spatial_transformer(
            p,
            ch,
            self.context_dim,
            depth,
            linear=self.linear if linear is None else linear,
            self_context=level in self.self_context_at,
        )


def _embeddings(p: str, s: UNetShape) -> Iterator[_Tensor]:
    mc, emb = s.model_channels, s.model_channels * 4
    yield from _linear(f"{p}.time_embed.0", mc, emb)
    yield from _linear(f"{p}.time_embed.2", emb, emb)
    if s.adm_in:
        yield from _linear(f"{p}.label_emb.0.0", s.adm_in, emb)
        yield from _linear(f"{p}.label_emb.0.2", emb, emb)


def _encoder_levels(p: str, s: UNetShape, *, zero_convs: bool = False, linear: bool | None = None):
    """The input blocks after ``input_blocks.0``; returns ``(channels, downsampling, skip channels)``.
    ``zero_convs``: the ControlNet's zero convolution after every block."""
    mc, emb = s.model_channels, s.model_channels * 4
    chans = [mc]
    ch, idx, ds = mc, 0, 1
    for i, mult in enumerate(s.channel_mult):
        for _ in range(s.num_res_blocks):
            idx += 1
            yield from _resblock(f"{p}.input_blocks.{idx}.0", ch, emb, mult * mc)
            ch = mult * mc
            if ds in s.attention_at:
                yield from s.transformer(f"{p}.input_blocks.{idx}.1", ch, i, linear)
            if zero_convs:
                yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
            chans.append(ch)
            if s.tiny:
                idx += 1
        if i != len(s.channel_mult) - 1:
            idx += 1
            yield from _conv(f"{p}.input_blocks.{idx}.0.op", ch, ch)
            if zero_convs:
                yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
            chans.append(ch)
            ds *= 2
    return ch, ds, chans


def _middle(p: str, s: UNetShape, ch: int, linear: bool | None = None) -> Iterator[_Tensor]:
    emb = s.model_channels * 4
    yield from _resblock(f"{p}.middle_block.0", ch, emb, ch)
    if s.middle == "resnet":
        return
    yield from s.transformer(f"{p}.middle_block.1", ch, -1, linear)
    yield from _resblock(f"{p}.middle_block.2", ch, emb, ch)


def _decoder(p: str, s: UNetShape, ch: int, ds: int, chans: list[int]) -> Iterator[_Tensor]:
    mc, emb = s.model_channels, s.model_channels * 4
    oidx = 0
    for i in range(len(s.channel_mult) - 1, -1, -1):
        mult = s.channel_mult[i]
        for j in range(s.num_res_blocks + 1):
            yield from _resblock(f"{p}.output_blocks.{oidx}.0", ch + chans.pop(), emb, mult * mc)
            ch = mult * mc
            up_idx = 1
            if ds in s.attention_at:
                yield from s.transformer(f"{p}.output_blocks.{oidx}.1", ch, i, j=j)
                up_idx += 1
            if i > 0 and j == s.num_res_blocks:
                if s.tiny:
                    oidx += 1
                    if oidx == 2:
                        up_idx = 1
                yield from _conv(f"{p}.output_blocks.{oidx}.{up_idx}.conv", ch, ch)
                ds //= 2
            oidx += 1
    yield from _norm(f"{p}.out.0", ch)
    yield from _conv(f"{p}.out.2", mc, s.out_channels)


def unet_of(p: str, s: UNetShape) -> Iterator[_Tensor]:
    """An ldm UNet (``input_blocks``, ``middle_block``, ``output_blocks``) of shape ``s``."""
    yield from _embeddings(p, s)
    yield from _conv(f"{p}.input_blocks.0.0", s.in_channels, s.model_channels)
    ch, ds, chans = yield from _encoder_levels(p, s)
    if not s.tiny:
        yield from _middle(p, s, ch)
    yield from _decoder(p, s, ch, ds, chans)


_HINT = ((0, 3, 16), (2, 16, 16), (4, 16, 32), (6, 32, 32), (8, 32, 96), (10, 96, 96), (12, 96, 256))


def controlnet_of(p: str, s: UNetShape) -> Iterator[_Tensor]:
    """The ControlNet of UNet shape ``s`` as the engine builds it (control.hpp): the encoder half
    with zero convolutions, the hint block and ``middle_block_out``; its SpatialTransformer
    projections are always 1x1 convs (control.hpp never switches them to Linear)."""
    mc = s.model_channels
    yield from _embeddings(p, s)
    yield from _conv(f"{p}.input_blocks.0.0", 4, mc)
    yield from _conv(f"{p}.zero_convs.0.0", mc, mc, k=1)
    for i, n_in, n_out in [*_HINT, (14, 256, mc)]:
        yield from _conv(f"{p}.input_hint_block.{i}", n_in, n_out)
    ch, _, _ = yield from _encoder_levels(p, s, zero_convs=True, linear=False)
    yield from _middle(p, s, ch, linear=False)
    yield from _conv(f"{p}.middle_block_out.0", ch, ch, k=1)


def _unet(
    p: str,
    *,
    tiny: bool = False,
    attention_resolutions: Sequence[int] = (4, 2, 1),
    model_channels: int = 320,
    context_dim: int = 768,
    in_channels: int = 4,
    out_channels: int = 4,
) -> Iterator[_Tensor]:
    """SD1-family UNet.  ``tiny``: num_res_blocks=1, channel_mult (1,2,4), no middle block,
    with the odd block numbering stable-diffusion.cpp uses for distilled UNets."""
    shape = UNetShape(
        channel_mult=(1, 2, 4) if tiny else (1, 2, 4, 4),
        num_res_blocks=1 if tiny else 2,
        attention_at=tuple(attention_resolutions),
        context_dim=context_dim,
        tiny=tiny,
        model_channels=model_channels,
        in_channels=in_channels,
        out_channels=out_channels,
    )
    return unet_of(p, shape)


# ---- CLIP ViT-L/14 text model (HF transformers names), mirrors clip.hpp


def _clip_l(p: str) -> Iterator[_Tensor]:
    d, inter, layers = 768, 3072, 12
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


def _open_clip(p: str, d: int, layers: int, inter: int) -> Iterator[_Tensor]:
    """An OpenCLIP text tower in open_clip names (``token_embedding``, ``positional_embedding``,
    ``transformer.resblocks.N.attn.in_proj_weight``, ``ln_final``, ``text_projection``): ViT-H/14
    (SD2: width 1024, 24 layers, MLP 4096) under ``cond_stage_model.model``, ViT-bigG/14 (SDXL)
    under ``conditioner.embedders.1.model``; mirrors clip.hpp after name_conversion.cpp."""
    yield f"{p}.token_embedding.weight", (49408, d), _STD
    yield f"{p}.positional_embedding", (77, d), _STD
    for i in range(layers):
        b = f"{p}.transformer.resblocks.{i}"
        yield f"{b}.attn.in_proj_weight", (3 * d, d), _STD
        yield f"{b}.attn.in_proj_bias", (3 * d,), _STD
        yield from _linear(f"{b}.attn.out_proj", d, d)
        yield from _norm(f"{b}.ln_1", d)
        yield from _linear(f"{b}.mlp.c_fc", d, inter)
        yield from _linear(f"{b}.mlp.c_proj", inter, d)
        yield from _norm(f"{b}.ln_2", d)
    yield from _norm(f"{p}.ln_final", d)
    yield f"{p}.text_projection", (d, d), _STD


# ---- KL autoencoder (ldm first_stage_model), mirrors auto_encoder_kl.hpp


def _vae_resnet(p: str, n_in: int, n_out: int) -> Iterator[_Tensor]:
    yield from _norm(f"{p}.norm1", n_in)
    yield from _conv(f"{p}.conv1", n_in, n_out)
    yield from _norm(f"{p}.norm2", n_out)
    yield from _conv(f"{p}.conv2", n_out, n_out)
    if n_in != n_out:
        yield from _conv(f"{p}.nin_shortcut", n_in, n_out, k=1)


def _vae_attn(p: str, c: int) -> Iterator[_Tensor]:
    yield from _norm(f"{p}.norm", c)
    for n in ("q", "k", "v", "proj_out"):
        yield from _conv(f"{p}.{n}", c, c, k=1)


def _kl_encoder(p: str, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z: int) -> Iterator[_Tensor]:
    yield from _conv(f"{p}.conv_in", 3, ch)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        block_in = ch if i == 0 else ch * ch_mult[i - 1]
        block_out = ch * mult
        for j in range(num_res_blocks):
            yield from _vae_resnet(f"{p}.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != len(ch_mult) - 1:
            yield from _conv(f"{p}.down.{i}.downsample.conv", block_in, block_in)
    yield from _vae_resnet(f"{p}.mid.block_1", block_in, block_in)
    yield from _vae_attn(f"{p}.mid.attn_1", block_in)
    yield from _vae_resnet(f"{p}.mid.block_2", block_in, block_in)
    yield from _norm(f"{p}.norm_out", block_in)
    yield from _conv(f"{p}.conv_out", block_in, 2 * z)


def _kl_decoder(p: str, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z: int) -> Iterator[_Tensor]:
    block_in = ch * ch_mult[-1]
    yield from _conv(f"{p}.conv_in", z, block_in)
    yield from _vae_resnet(f"{p}.mid.block_1", block_in, block_in)
    yield from _vae_attn(f"{p}.mid.attn_1", block_in)
    yield from _vae_resnet(f"{p}.mid.block_2", block_in, block_in)
    for i in range(len(ch_mult) - 1, -1, -1):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            yield from _vae_resnet(f"{p}.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            yield from _conv(f"{p}.up.{i}.upsample.conv", block_in, block_in)
    yield from _norm(f"{p}.norm_out", block_in)
    yield from _conv(f"{p}.conv_out", block_in, 3)


def _vae_kl(
    p: str, ch: int = 128, ch_mult: Sequence[int] = (1, 2, 4, 4), num_res_blocks: int = 2, z: int = 4
) -> Iterator[_Tensor]:
    """The ldm KL autoencoder: encoder, quant convs, decoder (the order of the files' tensors)."""
    yield from _kl_encoder(f"{p}.encoder", ch, ch_mult, num_res_blocks, z)
    yield from _conv(f"{p}.quant_conv", 2 * z, 2 * z, k=1)
    yield from _conv(f"{p}.post_quant_conv", z, z, k=1)
    yield from _kl_decoder(f"{p}.decoder", ch, ch_mult, num_res_blocks, z)


# ---- TAESD (madebyollin/taesd, diffusers AutoencoderTiny names), mirrors tae.hpp


_MID_GREY = ("normal", 0.5, _STD)


def _fan_in_std(n_in: int, k: int) -> float:
    return float(np.sqrt(1.0 / (n_in * k * k)))


def _tae_block(p: str, c: int) -> Iterator[_Tensor]:
    for n in ("conv.0", "conv.2", "conv.4"):
        yield from _conv(f"{p}.{n}", c, c, std=_fan_in_std(c, 3))


def _taesd(p: str, z: int = 4, c: int = 64) -> Iterator[_Tensor]:
    pre = f"{p}." if p else ""
    e = f"{pre}encoder.layers"

    def conv(prefix, n_in, n_out, bias=True):
        return _conv(prefix, n_in, n_out, bias=bias, std=_fan_in_std(n_in, 3))

    yield from conv(f"{e}.0", 3, c)
    yield from _tae_block(f"{e}.1", c)
    idx = 2
    for _ in range(3):
        yield from conv(f"{e}.{idx}", c, c, bias=False)
        idx += 1
        for _ in range(3):
            yield from _tae_block(f"{e}.{idx}", c)
            idx += 1
    yield from conv(f"{e}.{idx}", c, z)

    d = f"{pre}decoder.layers"
    yield from conv(f"{d}.0", z, c)
    idx = 2  # 1 is ReLU
    for _ in range(3):
        for _ in range(3):
            yield from _tae_block(f"{d}.{idx}", c)
            idx += 1
        idx += 1  # Upsample
        yield from conv(f"{d}.{idx}", c, c, bias=False)
        idx += 1
    yield from _tae_block(f"{d}.{idx}", c)
    # TAESD decodes straight to [0, 1]: centre the output on mid-grey instead of clamping half of it to 0.
    yield from _conv(f"{d}.{idx + 1}", c, 3, std=0.25 * _fan_in_std(c, 3), bias_init=_MID_GREY)


# ---- ControlNet (cldm.ControlNet, control_model.* names), mirrors control.hpp


def _controlnet_sd1(p: str, model_channels: int = 320, context_dim: int = 768) -> Iterator[_Tensor]:
    return controlnet_of(p, UNetShape(context_dim=context_dim, model_channels=model_channels))


# ---- ESRGAN RRDBNet (BasicSR / Real-ESRGAN names), mirrors esrgan.hpp


def _esrgan(num_block: int = 1, scale: int = 4, feat: int = 64, grow: int = 32) -> Iterator[_Tensor]:
    def conv(p, n_in, n_out):
        return _conv(p, n_in, n_out, std=_fan_in_std(n_in, 3))

    yield from conv("conv_first", 3, feat)
    for b in range(num_block):
        for r in (1, 2, 3):
            for k in range(1, 6):
                n_in = feat + (k - 1) * grow
                n_out = feat if k == 5 else grow
                yield from conv(f"body.{b}.rdb{r}.conv{k}", n_in, n_out)
    yield from conv("conv_body", feat, feat)
    if scale >= 2:
        yield from conv("conv_up1", feat, feat)
    if scale == 4:
        yield from conv("conv_up2", feat, feat)
    yield from conv("conv_hr", feat, feat)
    # RRDBNet outputs [0, 1] directly: centre on mid-grey (see _taesd).
    yield from _conv("conv_last", feat, 3, std=0.5 * _fan_in_std(feat, 3), bias_init=_MID_GREY)


def _chain(*parts: Iterable[_Tensor]) -> Iterator[_Tensor]:
    for part in parts:
        yield from part
