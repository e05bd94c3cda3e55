"""Forge: random-weight models with real architectures for testing applications without real weights.

Every function here writes (once) and returns the path of a ``.safetensors`` file whose
tensor names and shapes are exactly those of a real model family, as read by the
stable-diffusion.cpp engine bundled with ``stable-diffusion-cpp-python`` 0.4.7.  The
weights are random, so generated images are noise-like, but every code path of the real
engine runs (model detection, loading, text encoding, sampling, VAE/TAESD decode, LoRA,
ControlNet, ESRGAN upscaling) at real speed and memory cost.  No network and no real
weights are needed; only numpy.

Weights are drawn deterministically from ``numpy.random.default_rng`` seeded by the
spec's seed and the tensor name: linear/conv weights, biases, norm biases and
embeddings ~ N(0, 0.02); GroupNorm/LayerNorm weights are 1.  The small convolutional
nets without normalisation layers (TAESD, ESRGAN) use fan-in scaled conv weights
(std 1/sqrt(fan_in)) and an output bias of ~0.5, because they emit [0, 1] pixels
directly: with 0.02 weights their output would be black, with zero-mean output half
of it would clamp to 0.

Files are cached in :func:`cache_dir` under ``<kind>-<sha of the spec>.safetensors``
and written atomically (temporary file + ``os.replace``), so concurrent processes are
safe and a model, even the ~2 GB full SD1, is only ever written once per spec.  The spec
is stored in the safetensors metadata (``gouache.forge`` / ``gouache.forge.spec``) and
can be read back with :func:`spec_of`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "FORGE_VERSION",
    "cache_dir",
    "spec_of",
    "sd1",
    "sd1_tiny",
    "sdxs",
    "taesd",
    "controlnet_sd1",
    "esrgan_x4",
    "lora_sd1",
    "lora_sd1_tiny",
    "gguf",
    "FLUX_HEAD_DIM",
    "WAN21_1_3B",
    "flux",
    "flux_vae",
    "clip_l",
    "wan21_t2v",
    "wan21_t2v_gguf",
    "taehv",
]

#: Bumped whenever the produced bytes of any model change; part of every cache key.
FORGE_VERSION = 1

_STD = 0.02
_ONES = "ones"

# A tensor description: (name, shape, init).  ``init`` is a float standard deviation
# (normal, mean 0), ``"ones"``, ``("fill", value)`` or ``("normal", mean, std)``.
_Init = Union[float, str, Tuple[Any, ...]]
_Tensor = Tuple[str, Tuple[int, ...], _Init]

_DTYPES = {
    "f16": (np.dtype("<f2"), "F16"),  # safetensors data is little-endian
    "f32": (np.dtype("<f4"), "F32"),
}


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Directory holding forged models: ``$GOUACHE_FORGE_CACHE`` or ``~/.cache/gouache/forge``."""
    env = os.environ.get("GOUACHE_FORGE_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "gouache" / "forge"
    path.mkdir(parents=True, exist_ok=True)
    return path


def spec_of(path: Union[str, os.PathLike]) -> dict:
    """Return the spec a forged file was made from (read from its safetensors metadata).

    Raises ``ValueError`` if the file was not written by the forge.
    """
    meta = _read_metadata(Path(path))
    if "gouache.forge.spec" not in meta:
        raise ValueError(f"{path} is not a gouache forge model")
    return json.loads(meta["gouache.forge.spec"])


def _read_metadata(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header.get("__metadata__", {}) or {}


def _forge(kind: str, spec: dict, tensors: Callable[[], Iterable[_Tensor]]) -> Path:
    """Write the model described by ``tensors()`` unless the cached file already exists."""
    if int(spec.get("seed", 0)) < 0:
        raise ValueError("seed must be >= 0")
    full_spec = dict(spec)
    full_spec["kind"] = kind
    full_spec["forge_version"] = FORGE_VERSION
    canonical = json.dumps(full_spec, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    directory = cache_dir()
    path = directory / f"{kind}-{digest}.safetensors"
    if path.exists():
        return path
    metadata = {"gouache.forge": kind, "gouache.forge.spec": canonical}
    _write_safetensors(
        path,
        list(tensors()),
        dtype=full_spec.get("dtype", "f32"),
        seed=int(full_spec.get("seed", 0)),
        metadata=metadata,
    )
    return path


# --------------------------------------------------------------------------- writer


def _tensor_rng(seed: int, name: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


_CHUNK = 1 << 22


def _materialize(t: _Tensor, seed: int, np_dtype) -> np.ndarray:
    name, shape, init = t
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if init == _ONES:
        return np.ones(shape, dtype=np_dtype)
    mean = None
    if isinstance(init, tuple):
        if init[0] == "fill":
            return np.full(shape, init[1], dtype=np_dtype)
        mean, init = np.float32(init[1]), init[2]
    std = np.float32(init)
    rng = _tensor_rng(seed, name)
    out = np.empty(size, dtype=np_dtype)
    for start in range(0, size, _CHUNK):
        stop = min(size, start + _CHUNK)
        chunk = rng.standard_normal(stop - start, dtype=np.float32)
        chunk *= std
        if mean is not None:
            chunk += mean
        out[start:stop] = chunk  # casts to the storage dtype
    return out.reshape(shape)


def _write_safetensors(path: Path, tensors: List[_Tensor], *, dtype: str, seed: int, metadata: dict) -> None:
    """Stream tensors into a safetensors file (same format ``safetensors.numpy.save_file`` writes).

    Writing tensor by tensor keeps memory bounded (a full SD1 in f32 is >4 GB).
    """
    np_dtype, st_dtype = _DTYPES[dtype]
    itemsize = np.dtype(np_dtype).itemsize
    names = [t[0] for t in tensors]
    if len(set(names)) != len(names):
        raise AssertionError("duplicate tensor names in forge spec")

    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, shape, _ in tensors:
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize if shape else itemsize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            workers = max(1, min(4, os.cpu_count() or 1))
            with ThreadPoolExecutor(workers) as pool:
                pending: deque = deque()
                for t in tensors:
                    pending.append(pool.submit(_materialize, t, seed, np_dtype))
                    if len(pending) > 2 * workers:
                        f.write(pending.popleft().result().reshape(-1).view(np.uint8))
                while pending:
                    f.write(pending.popleft().result().reshape(-1).view(np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- building blocks


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


def _spatial_transformer(p: str, ch: int, context_dim: int, depth: int = 1, *, linear: bool = False) -> Iterator[_Tensor]:
    """SpatialTransformer with ``depth`` blocks; ``linear``: proj_in/proj_out are Linear ([C, C],
    ``use_linear_projection`` as in SD2/SDXL), otherwise 1x1 convs ([C, C, 1, 1], SD1)."""
    proj = (lambda name: _linear(name, ch, ch)) if linear else (lambda name: _conv(name, ch, ch, k=1))
    yield from _norm(f"{p}.norm", ch)
    yield from proj(f"{p}.proj_in")
    for d in range(depth):
        b = f"{p}.transformer_blocks.{d}"
        yield from _linear(f"{b}.attn1.to_q", ch, ch, bias=False)
        yield from _linear(f"{b}.attn1.to_k", ch, ch, bias=False)
        yield from _linear(f"{b}.attn1.to_v", ch, ch, bias=False)
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
    if tiny:
        num_res_blocks, channel_mult = 1, (1, 2, 4)
    else:
        num_res_blocks, channel_mult = 2, (1, 2, 4, 4)
    mc = model_channels
    emb = mc * 4
    yield from _linear(f"{p}.time_embed.0", mc, emb)
    yield from _linear(f"{p}.time_embed.2", emb, emb)
    yield from _conv(f"{p}.input_blocks.0.0", in_channels, mc)

    chans = [mc]
    ch, idx, ds = mc, 0, 1
    for i, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            idx += 1
            yield from _resblock(f"{p}.input_blocks.{idx}.0", ch, emb, mult * mc)
            ch = mult * mc
            if ds in attention_resolutions:
                yield from _spatial_transformer(f"{p}.input_blocks.{idx}.1", ch, context_dim)
            chans.append(ch)
            if tiny:
                idx += 1
        if i != len(channel_mult) - 1:
            idx += 1
            yield from _conv(f"{p}.input_blocks.{idx}.0.op", ch, ch)
            chans.append(ch)
            ds *= 2

    if not tiny:
        yield from _resblock(f"{p}.middle_block.0", ch, emb, ch)
        yield from _spatial_transformer(f"{p}.middle_block.1", ch, context_dim)
        yield from _resblock(f"{p}.middle_block.2", ch, emb, ch)

    oidx = 0
    for i in range(len(channel_mult) - 1, -1, -1):
        mult = channel_mult[i]
        for j in range(num_res_blocks + 1):
            ich = chans.pop()
            yield from _resblock(f"{p}.output_blocks.{oidx}.0", ch + ich, emb, mult * mc)
            ch = mult * mc
            up_idx = 1
            if ds in attention_resolutions:
                yield from _spatial_transformer(f"{p}.output_blocks.{oidx}.1", ch, context_dim)
                up_idx += 1
            if i > 0 and j == num_res_blocks:
                if tiny:
                    oidx += 1
                    if oidx == 2:
                        up_idx = 1
                yield from _conv(f"{p}.output_blocks.{oidx}.{up_idx}.conv", ch, ch)
                ds //= 2
            oidx += 1

    yield from _norm(f"{p}.out.0", ch)
    yield from _conv(f"{p}.out.2", mc, out_channels)


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


def _vae_kl(p: str, ch: int = 128, ch_mult: Sequence[int] = (1, 2, 4, 4), num_res_blocks: int = 2, z: int = 4) -> Iterator[_Tensor]:
    # encoder
    e = f"{p}.encoder"
    yield from _conv(f"{e}.conv_in", 3, ch)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        block_in = ch if i == 0 else ch * ch_mult[i - 1]
        block_out = ch * mult
        for j in range(num_res_blocks):
            yield from _vae_resnet(f"{e}.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != len(ch_mult) - 1:
            yield from _conv(f"{e}.down.{i}.downsample.conv", block_in, block_in)
    yield from _vae_resnet(f"{e}.mid.block_1", block_in, block_in)
    yield from _vae_attn(f"{e}.mid.attn_1", block_in)
    yield from _vae_resnet(f"{e}.mid.block_2", block_in, block_in)
    yield from _norm(f"{e}.norm_out", block_in)
    yield from _conv(f"{e}.conv_out", block_in, 2 * z)
    yield from _conv(f"{p}.quant_conv", 2 * z, 2 * z, k=1)
    yield from _conv(f"{p}.post_quant_conv", z, z, k=1)
    # decoder
    d = f"{p}.decoder"
    block_in = ch * ch_mult[-1]
    yield from _conv(f"{d}.conv_in", z, block_in)
    yield from _vae_resnet(f"{d}.mid.block_1", block_in, block_in)
    yield from _vae_attn(f"{d}.mid.attn_1", block_in)
    yield from _vae_resnet(f"{d}.mid.block_2", block_in, block_in)
    for i in range(len(ch_mult) - 1, -1, -1):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            yield from _vae_resnet(f"{d}.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
        if i != 0:
            yield from _conv(f"{d}.up.{i}.upsample.conv", block_in, block_in)
    yield from _norm(f"{d}.norm_out", block_in)
    yield from _conv(f"{d}.conv_out", block_in, 3)


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
    mc = model_channels
    emb = mc * 4
    channel_mult, num_res_blocks, attention_resolutions = (1, 2, 4, 4), 2, (4, 2, 1)
    yield from _linear(f"{p}.time_embed.0", mc, emb)
    yield from _linear(f"{p}.time_embed.2", emb, emb)
    yield from _conv(f"{p}.input_blocks.0.0", 4, mc)
    yield from _conv(f"{p}.zero_convs.0.0", mc, mc, k=1)
    hint = [(0, 3, 16), (2, 16, 16), (4, 16, 32), (6, 32, 32), (8, 32, 96), (10, 96, 96), (12, 96, 256), (14, 256, mc)]
    for i, n_in, n_out in hint:
        yield from _conv(f"{p}.input_hint_block.{i}", n_in, n_out)
    ch, idx, ds = mc, 0, 1
    for i, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            idx += 1
            yield from _resblock(f"{p}.input_blocks.{idx}.0", ch, emb, mult * mc)
            ch = mult * mc
            if ds in attention_resolutions:
                yield from _spatial_transformer(f"{p}.input_blocks.{idx}.1", ch, context_dim)
            yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
        if i != len(channel_mult) - 1:
            idx += 1
            yield from _conv(f"{p}.input_blocks.{idx}.0.op", ch, ch)
            yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
            ds *= 2
    yield from _resblock(f"{p}.middle_block.0", ch, emb, ch)
    yield from _spatial_transformer(f"{p}.middle_block.1", ch, context_dim)
    yield from _resblock(f"{p}.middle_block.2", ch, emb, ch)
    yield from _conv(f"{p}.middle_block_out.0", ch, ch, k=1)


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


# --------------------------------------------------------------------------- LoRA layout

_UNET = "model.diffusion_model"
_CLIP = "cond_stage_model.transformer.text_model"
_VAE = "first_stage_model"

_LORA_STD = 0.2  # up/down std: merged delta std ~ 2 * 0.2**2 = 0.08 per entry at rank 4, 4x the base weights
_NAMINGS = ("kohya", "ldm")
_TARGETS = ("unet", "te", "all")
_LORA_BASES = ("sd1", "sd1_tiny")


def _modules(tensors: Iterable[_Tensor], markers: Sequence[str]) -> List[Tuple[str, int, int]]:
    """(module path, in_features, out_features) of the linear layers whose name contains a marker."""
    mods = []
    for name, shape, _ in tensors:
        if name.endswith(".weight") and len(shape) == 2 and any(m in name for m in markers):
            mods.append((name[: -len(".weight")], shape[1], shape[0]))
    return mods


def _ldm_to_diffusers_block(path: str) -> str:
    """``input_blocks.4.1.x`` -> ``down_blocks.1.attentions.0.x`` (inverse of the engine's table)."""
    parts = path.split(".")
    kind, n = parts[0], int(parts[1])
    if kind == "input_blocks":
        i, j = divmod(n - 1, 3)
        return f"down_blocks.{i}.attentions.{j}." + ".".join(parts[3:])
    if kind == "output_blocks":
        i, j = divmod(n, 3)
        return f"up_blocks.{i}.attentions.{j}." + ".".join(parts[3:])
    if kind == "middle_block":
        return "mid_block.attentions.0." + ".".join(parts[2:])
    raise ValueError(path)


def _lora_key(module: str, naming: str) -> str:
    if naming == "ldm":
        return module
    # kohya: diffusers module path with '.' -> '_'
    if module.startswith(_UNET + "."):
        return "lora_unet_" + _ldm_to_diffusers_block(module[len(_UNET) + 1 :]).replace(".", "_")
    if module.startswith(_CLIP + "."):
        return "lora_te_text_model_" + module[len(_CLIP) + 1 :].replace(".", "_")
    raise ValueError(module)


def _lora(base: str, naming: str, rank: int, target: str) -> Iterator[_Tensor]:
    mods: List[Tuple[str, int, int]] = []
    if target in ("unet", "all"):
        mods += _modules(_unet(_UNET, tiny=(base == "sd1_tiny")), (".attn1.", ".attn2."))
    if target in ("te", "all"):
        mods += _modules(_clip_l(_CLIP), (".self_attn.", ".mlp."))
    for module, n_in, n_out in mods:
        key = _lora_key(module, naming)
        yield f"{key}.lora_down.weight", (rank, n_in), _LORA_STD
        yield f"{key}.lora_up.weight", (n_out, rank), _LORA_STD
        yield f"{key}.alpha", (), ("fill", float(rank))


# --------------------------------------------------------------------------- registry


def _chain(*parts: Iterable[_Tensor]) -> Iterator[_Tensor]:
    for part in parts:
        yield from part


_BUILDERS = {
    "sd1": lambda s: _chain(_unet(_UNET), _clip_l(_CLIP), _vae_kl(_VAE)),
    "sd1_tiny": lambda s: _chain(_unet(_UNET, tiny=True), _clip_l(_CLIP), _vae_kl(_VAE)),
    # SDXS-512-DS: tiny UNet without attention at full resolution; its VAE is a TAESD
    # stored under first_stage_model. (the engine renames it to tae.)
    "sdxs": lambda s: _chain(_unet(_UNET, tiny=True, attention_resolutions=(4, 2)), _clip_l(_CLIP), _taesd(_VAE)),
    "taesd": lambda s: _taesd(""),
    "controlnet_sd1": lambda s: _controlnet_sd1("control_model"),
    "esrgan_x4": lambda s: _esrgan(s["num_block"], 4),
    "lora_sd1": lambda s: _lora(s["base"], s["naming"], s["rank"], s["target"]),
    "lora_sd1_tiny": lambda s: _lora(s["base"], s["naming"], s["rank"], s["target"]),
}


def _make(kind: str, spec: dict) -> Path:
    return _forge(kind, spec, lambda: _BUILDERS[kind](spec))


def _layout(kind: str, **spec: Any) -> dict:
    """``{tensor name: shape}`` of a forge model, without writing it (for tests and tooling)."""
    spec.setdefault("num_block", 1)
    if kind.startswith("lora_"):
        spec.setdefault("base", kind[len("lora_") :])
        spec.setdefault("naming", "kohya")
        spec.setdefault("rank", 4)
        spec.setdefault("target", "unet")
    return {name: shape for name, shape, _ in _BUILDERS[kind](spec)}


def _check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return dtype


# --------------------------------------------------------------------------- public models


def sd1(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Full Stable Diffusion 1.x checkpoint (UNet + CLIP ViT-L/14 text + KL VAE), ldm names.

    The engine detects it as ``SD 1.x``.  1.07e9 parameters: ~2.1 GB in f16, ~4.3 GB in f32.
    """
    return _make("sd1", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sd1_tiny(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Distilled tiny SD1 (BK-SDM-Tiny style UNet) + CLIP-L + KL VAE in one file.

    The engine detects it as ``SD 1.x Tiny UNet`` (num_res_blocks 1, channel_mult (1, 2, 4),
    no middle block).  ~1.1 GB in f16; the fast model for most tests.
    """
    return _make("sd1_tiny", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sdxs(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SDXS-512-DreamShaper style checkpoint: tiny UNet without full-resolution attention,
    CLIP-L, and a TAESD autoencoder stored under ``first_stage_model.``.

    The engine detects it as ``SDXS (512-DS)`` and always encodes/decodes with the TAE.
    """
    return _make("sdxs", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def taesd(*, seed: int = 0) -> Path:
    """TAESD for the SD1 latent space (``encoder.layers.N`` / ``decoder.layers.N``, f32),
    as the engine's ``taesd_path`` expects."""
    return _make("taesd", {"dtype": "f32", "seed": int(seed)})


def controlnet_sd1(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SD1 ControlNet (``control_model.*``: input_hint_block, zero_convs, middle_block_out).

    Pair it with :func:`sd1`: the tiny UNets have a different number of skip connections.
    """
    return _make("controlnet_sd1", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def esrgan_x4(*, seed: int = 0) -> Path:
    """Real-ESRGAN x4 RRDBNet (BasicSR names) with one RRDB block, f32; the engine reports scale 4."""
    return _make("esrgan_x4", {"dtype": "f32", "seed": int(seed), "num_block": 1})


def lora_sd1(
    *, naming: str = "kohya", rank: int = 4, seed: int = 0, target: str = "unet", base: str = "sd1"
) -> Path:
    """LoRA (f32) on the attention/MLP projections of :func:`sd1` (or ``base="sd1_tiny"``).

    ``naming="kohya"``: ``lora_unet_down_blocks_0_attentions_0_..._attn1_to_q.lora_up.weight`` and
    ``lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight`` (+ ``.lora_down.weight``,
    ``.alpha``).  ``naming="ldm"``: the checkpoint's own module paths, e.g.
    ``model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.lora_up.weight`` and
    ``cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.lora_up.weight``.
    ``target``: ``"unet"`` (attn1/attn2 q, k, v, out), ``"te"`` (self-attention q, k, v, out and
    mlp fc1, fc2) or ``"all"``.  alpha == rank (scale 1); the weights are large enough that
    applying the LoRA at multiplier 1 visibly changes the image.
    """
    if naming not in _NAMINGS:
        raise ValueError(f"naming must be one of {_NAMINGS}, got {naming!r}")
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")
    if base not in _LORA_BASES:
        raise ValueError(f"base must be one of {_LORA_BASES}, got {base!r}")
    if int(rank) < 1:
        raise ValueError("rank must be >= 1")
    spec = {"dtype": "f32", "seed": int(seed), "naming": naming, "rank": int(rank), "target": target, "base": base}
    return _make(f"lora_{base}", spec)


def lora_sd1_tiny(*, naming: str = "kohya", rank: int = 4, seed: int = 0, target: str = "unet") -> Path:
    """LoRA for :func:`sd1_tiny`; same as ``lora_sd1(base="sd1_tiny", ...)``."""
    return lora_sd1(naming=naming, rank=rank, seed=seed, target=target, base="sd1_tiny")


# --------------------------------------------------------------------------- GGUF through the engine


_GGUF_BASES = {"sd1": sd1, "sd1_tiny": sd1_tiny}


def gguf(*, base: str = "sd1_tiny", wtype: str = "q8_0", seed: int = 0) -> Path:
    """A quantized GGUF of a forged model, made by the engine's own converter
    (:func:`gouache.convert_model`), cached like every forged file."""
    from ..._sdcpp.handles import convert_model
    from ..._sdcpp.native import SDType

    if base not in _GGUF_BASES:
        raise ValueError(f"base must be one of {sorted(_GGUF_BASES)}, got {base!r}")
    engine_type = SDType.parse(wtype).engine_name
    src = _GGUF_BASES[base](seed=seed)
    spec = {"base": base, "wtype": engine_type, "seed": int(seed), "source": src.name, "forge_version": FORGE_VERSION}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"gguf_{base}_{engine_type}-{digest}.gguf"
    if path.exists():
        return path
    try:
        convert_model(src, path, output_type=engine_type)
    except Exception:
        if path.exists():  # another process finished the same file first
            return path
        raise
    return path


# =========================================================================== DiT families
#
# Flux and Wan 2.1 below are written as *diffusion-model-only* files (the layout of the
# official ``flux1-dev.safetensors`` / ``wan2.1_t2v_1.3B_fp16.safetensors``: bare names such
# as ``double_blocks.0.img_attn.qkv.weight`` or ``blocks.0.self_attn.q.weight``), to be
# passed as ``diffusion_model_path``; the engine prefixes them with ``model.diffusion_model.``.
# Their text encoders and autoencoders are separate files, as for the real models.

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


def _flux(hidden: int = 256, depth: int = 1, depth_single: int = 1, guidance: bool = True) -> Iterator[_Tensor]:
    h, mlp, hd = hidden, hidden * 4, FLUX_HEAD_DIM
    patch_in = _FLUX_LATENT * 2 * 2
    yield from _linear("img_in", patch_in, h)
    yield from _mlp_embedder("time_in", 256, h)
    yield from _mlp_embedder("vector_in", _FLUX_VEC, h)
    if guidance:  # flux-dev style (distilled guidance); schnell has none
        yield from _mlp_embedder("guidance_in", 256, h)
    yield from _linear("txt_in", _FLUX_CONTEXT, h)
    for i in range(depth):
        b = f"double_blocks.{i}"
        for s in ("img", "txt"):
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
        yield from _linear(f"{b}.modulation.lin", h, 3 * h)
    yield from _linear("final_layer.linear", h, patch_in)
    yield from _linear("final_layer.adaLN_modulation.1", h, 2 * h)


# ---- KL autoencoder halves without quant convs (Flux ``ae.safetensors``), mirrors auto_encoder_kl.hpp


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


def _flux_ae(decoder_ch: int = 128) -> Iterator[_Tensor]:
    # The engine fixes the encoder at ch=128 and reads the decoder's ch from decoder.conv_in.
    ch_mult = (1, 2, 4, 4)
    yield from _kl_encoder("encoder", 128, ch_mult, 2, _FLUX_LATENT)
    yield from _kl_decoder("decoder", decoder_ch, ch_mult, 2, _FLUX_LATENT)


# ---- Wan 2.1 DiT (Wan-Video reference names), mirrors wan.hpp

#: Wan 2.1 T2V 1.3B hyper-parameters as the engine sets them for a 30-block file.
WAN21_1_3B = {"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30, "in_dim": 16, "out_dim": 16,
              "text_dim": 4096, "freq_dim": 256, "patch_size": (1, 2, 2)}


def _wan_attention(p: str, dim: int) -> Iterator[_Tensor]:
    for n in ("q", "k", "v", "o"):
        yield from _linear(f"{p}.{n}", dim, dim)
    yield f"{p}.norm_q.weight", (dim,), _ONES  # RMSNorm over the full width
    yield f"{p}.norm_k.weight", (dim,), _ONES


def _wan(dim: int, ffn_dim: int, num_layers: int, in_dim: int, out_dim: int, text_dim: int, freq_dim: int,
         patch_size: Sequence[int], **_: Any) -> Iterator[_Tensor]:
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


# ---- TAEHV (madebyollin/taehv "taew2_1"), mirrors tae.hpp TinyVideoDecoder/TinyVideoEncoder


def _mem_block(p: str, c: int) -> Iterator[_Tensor]:
    yield from _conv(f"{p}.conv.0", 2 * c, c, std=_fan_in_std(2 * c, 3))  # input: [x, past frame]
    yield from _conv(f"{p}.conv.2", c, c, std=_fan_in_std(c, 3))
    yield from _conv(f"{p}.conv.4", c, c, std=_fan_in_std(c, 3))


def _taehv(z: int = 16, encoder: bool = True) -> Iterator[_Tensor]:
    def conv(prefix, n_in, n_out, k=3, bias=True, **kw):
        return _conv(prefix, n_in, n_out, k=k, bias=bias, std=kw.pop("std", _fan_in_std(n_in, k)), **kw)

    if encoder:
        hidden, idx = 64, 0
        yield from conv(f"encoder.{idx}", 3, hidden)
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
    yield from conv(f"decoder.{idx}", channels[3], 3, std=0.25 * _fan_in_std(channels[3], 3), bias_init=_MID_GREY)


def _spec_path(kind: str, spec: dict) -> Path:
    """Where :func:`_forge` puts (or has put) the model of ``kind``/``spec``, without writing it."""
    full_spec = dict(spec)
    full_spec["kind"] = kind
    full_spec["forge_version"] = FORGE_VERSION
    canonical = json.dumps(full_spec, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return cache_dir() / f"{kind}-{digest}.safetensors"


_BUILDERS.update(
    {
        "flux": lambda s: _flux(s.get("hidden", 256), s.get("depth", 1), s.get("depth_single", 1), s.get("guidance", True)),
        "flux_vae": lambda s: _flux_ae(s.get("decoder_ch", 128)),
        "clip_l": lambda s: _clip_l("text_model"),
        "wan21_t2v": lambda s: _wan(**WAN21_1_3B),
        "taehv": lambda s: _taehv(encoder=s.get("encoder", True)),
    }
)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def flux(
    *, dtype: str = "f16", seed: int = 0, depth: int = 1, depth_single: int = 1, hidden: int = 256, guidance: bool = True
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
    from ..._sdcpp.handles import convert_model
    from ..._sdcpp.native import SDType

    engine_type = SDType.parse(wtype).engine_name
    src_spec = {"dtype": "f16", "seed": int(seed)}
    src_path = _spec_path("wan21_t2v", src_spec)
    spec = {"base": "wan21_t2v", "wtype": engine_type, "seed": int(seed), "source": src_path.name,
            "forge_version": FORGE_VERSION}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"gguf_wan21_t2v_{engine_type}-{digest}.gguf"
    if path.exists():
        return path
    tmp_src = None
    if src_path.exists():
        src = src_path
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{src_path.name}.", suffix=".src.safetensors")
        os.close(fd)
        tmp_src = Path(name)
        canonical = json.dumps({**src_spec, "kind": "wan21_t2v", "forge_version": FORGE_VERSION},
                               sort_keys=True, separators=(",", ":"))
        try:
            _write_safetensors(tmp_src, list(_BUILDERS["wan21_t2v"](src_spec)), dtype="f16", seed=int(seed),
                               metadata={"gouache.forge": "wan21_t2v", "gouache.forge.spec": canonical})
        except BaseException:
            tmp_src.unlink(missing_ok=True)
            raise
        src = tmp_src
    try:
        convert_model(src, path, output_type=engine_type)
    except Exception:
        if path.exists():  # another process finished the same file first
            return path
        raise
    finally:
        if tmp_src is not None:
            tmp_src.unlink(missing_ok=True)
    return path


def taehv(*, seed: int = 0, encoder: bool = True) -> Path:
    """TAEHV for the Wan 2.1 latent space (``taew2_1.safetensors`` layout: ``decoder.N.*`` and,
    with ``encoder=True``, ``encoder.N.*``; f32), as the engine's ``taesd_path`` expects for Wan.

    Decodes T latent frames to 4T-3 frames at 8x the latent size.  1.1e7 parameters with the
    encoder (~45 MB).
    """
    return _make("taehv", {"dtype": "f32", "seed": int(seed), "encoder": bool(encoder)})


# =========================================================================== SDXL
#
# SDXL base 1.0 at its real size in the original ("sgm") single-file layout, an SDXL
# ControlNet in the layout the engine loads (control.hpp) and the same ControlNet in the
# diffusers layout in which SDXL ControlNets are usually published.

_SDXL_CONTEXT = 2048  # CLIP-L (768) + OpenCLIP bigG (1280) hidden states, concatenated
_SDXL_ADM = 2816  # label_emb input: bigG pooled (1280) + 6 size/crop embeddings of 256
_SDXL_CHANNEL_MULT = (1, 2, 4)
_SDXL_ATTENTION_RESOLUTIONS = (2, 4)  # no attention at full resolution
_SDXL_TRANSFORMER_DEPTH = (1, 2, 10)  # per level (level 0 has none); the middle block uses the last
_SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model"
_SDXL_CLIP_G = "conditioner.embedders.1.model"


def _unet_sdxl(p: str, model_channels: int = 320) -> Iterator[_Tensor]:
    """SDXL UNet (sgm openaimodel), mirrors unet.hpp for VERSION_SDXL: num_res_blocks 2,
    channel_mult (1, 2, 4), attention at ds 2 and 4 with depth 2 and 10, middle depth 10,
    context 2048, heads of 64 channels, linear projections, label_emb from 2816 features."""
    mc, num_res_blocks = model_channels, 2
    emb = mc * 4
    depth = _SDXL_TRANSFORMER_DEPTH
    yield from _linear(f"{p}.time_embed.0", mc, emb)
    yield from _linear(f"{p}.time_embed.2", emb, emb)
    yield from _linear(f"{p}.label_emb.0.0", _SDXL_ADM, emb)
    yield from _linear(f"{p}.label_emb.0.2", emb, emb)
    yield from _conv(f"{p}.input_blocks.0.0", 4, mc)
    chans = [mc]
    ch, idx, ds = mc, 0, 1
    for i, mult in enumerate(_SDXL_CHANNEL_MULT):
        for _ in range(num_res_blocks):
            idx += 1
            yield from _resblock(f"{p}.input_blocks.{idx}.0", ch, emb, mult * mc)
            ch = mult * mc
            if ds in _SDXL_ATTENTION_RESOLUTIONS:
                yield from _spatial_transformer(f"{p}.input_blocks.{idx}.1", ch, _SDXL_CONTEXT, depth[i], linear=True)
            chans.append(ch)
        if i != len(_SDXL_CHANNEL_MULT) - 1:
            idx += 1
            yield from _conv(f"{p}.input_blocks.{idx}.0.op", ch, ch)
            chans.append(ch)
            ds *= 2
    yield from _resblock(f"{p}.middle_block.0", ch, emb, ch)
    yield from _spatial_transformer(f"{p}.middle_block.1", ch, _SDXL_CONTEXT, depth[-1], linear=True)
    yield from _resblock(f"{p}.middle_block.2", ch, emb, ch)
    oidx = 0
    for i in range(len(_SDXL_CHANNEL_MULT) - 1, -1, -1):
        mult = _SDXL_CHANNEL_MULT[i]
        for j in range(num_res_blocks + 1):
            yield from _resblock(f"{p}.output_blocks.{oidx}.0", ch + chans.pop(), emb, mult * mc)
            ch = mult * mc
            up_idx = 1
            if ds in _SDXL_ATTENTION_RESOLUTIONS:
                yield from _spatial_transformer(f"{p}.output_blocks.{oidx}.1", ch, _SDXL_CONTEXT, depth[i], linear=True)
                up_idx += 1
            if i > 0 and j == num_res_blocks:
                yield from _conv(f"{p}.output_blocks.{oidx}.{up_idx}.conv", ch, ch)
                ds //= 2
            oidx += 1
    yield from _norm(f"{p}.out.0", ch)
    yield from _conv(f"{p}.out.2", mc, 4)


def _open_clip_bigg(p: str) -> Iterator[_Tensor]:
    """OpenCLIP ViT-bigG/14 text tower (open_clip names: ``token_embedding``,
    ``transformer.resblocks.N.attn.in_proj_weight``, ``ln_final``, ``text_projection``), as in
    the SDXL checkpoint under ``conditioner.embedders.1.model``; mirrors clip.hpp OPEN_CLIP_VIT_BIGG_14
    (width 1280, 32 layers, 20 heads, MLP 5120, projection 1280) after name_conversion.cpp."""
    d, inter, layers = 1280, 5120, 32
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


def _controlnet_sdxl(p: str, model_channels: int = 320) -> Iterator[_Tensor]:
    """SDXL ControlNet as the engine builds it (control.hpp, ControlNetBlock for an SDXL base):
    the SDXL encoder half (label_emb, depth 1/2/10, middle depth 10) plus input_hint_block,
    9 zero_convs and middle_block_out.  control.hpp never switches the ControlNet's
    SpatialTransformers to linear projections (it looks for ``proj_out.weight`` in the *base*
    model's tensors under the ControlNet's own unprefixed names, which never match), so
    proj_in/proj_out must be 1x1 convs ([C, C, 1, 1]); a [C, C] Linear fails with "wrong shape"."""
    mc, num_res_blocks = model_channels, 2
    emb = mc * 4
    yield from _linear(f"{p}.time_embed.0", mc, emb)
    yield from _linear(f"{p}.time_embed.2", emb, emb)
    yield from _linear(f"{p}.label_emb.0.0", _SDXL_ADM, emb)
    yield from _linear(f"{p}.label_emb.0.2", emb, emb)
    yield from _conv(f"{p}.input_blocks.0.0", 4, mc)
    yield from _conv(f"{p}.zero_convs.0.0", mc, mc, k=1)
    hint = [(0, 3, 16), (2, 16, 16), (4, 16, 32), (6, 32, 32), (8, 32, 96), (10, 96, 96), (12, 96, 256), (14, 256, mc)]
    for i, n_in, n_out in hint:
        yield from _conv(f"{p}.input_hint_block.{i}", n_in, n_out)
    ch, idx, ds = mc, 0, 1
    for i, mult in enumerate(_SDXL_CHANNEL_MULT):
        for _ in range(num_res_blocks):
            idx += 1
            yield from _resblock(f"{p}.input_blocks.{idx}.0", ch, emb, mult * mc)
            ch = mult * mc
            if ds in _SDXL_ATTENTION_RESOLUTIONS:
                yield from _spatial_transformer(f"{p}.input_blocks.{idx}.1", ch, _SDXL_CONTEXT,
                                                   _SDXL_TRANSFORMER_DEPTH[i], linear=False)
            yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
        if i != len(_SDXL_CHANNEL_MULT) - 1:
            idx += 1
            yield from _conv(f"{p}.input_blocks.{idx}.0.op", ch, ch)
            yield from _conv(f"{p}.zero_convs.{idx}.0", ch, ch, k=1)
            ds *= 2
    yield from _resblock(f"{p}.middle_block.0", ch, emb, ch)
    yield from _spatial_transformer(f"{p}.middle_block.1", ch, _SDXL_CONTEXT, _SDXL_TRANSFORMER_DEPTH[-1], linear=False)
    yield from _resblock(f"{p}.middle_block.2", ch, emb, ch)
    yield from _conv(f"{p}.middle_block_out.0", ch, ch, k=1)


def _diffusers_resnet(p: str, ch: int, emb: int, out: int) -> Iterator[_Tensor]:
    yield from _norm(f"{p}.norm1", ch)
    yield from _conv(f"{p}.conv1", ch, out)
    yield from _linear(f"{p}.time_emb_proj", emb, out)
    yield from _norm(f"{p}.norm2", out)
    yield from _conv(f"{p}.conv2", out, out)
    if ch != out:
        yield from _conv(f"{p}.conv_shortcut", ch, out, k=1)


def _controlnet_sdxl_diffusers(model_channels: int = 320) -> Iterator[_Tensor]:
    """SDXL ControlNet in the diffusers ``ControlNetModel`` layout (``diffusion_pytorch_model.safetensors``
    of e.g. diffusers/controlnet-depth-sdxl-1.0): ``conv_in``, ``time_embedding``, ``add_embedding``,
    ``controlnet_cond_embedding``, ``down_blocks.N.{resnets,attentions,downsamplers}``,
    ``controlnet_down_blocks.N``, ``mid_block``, ``controlnet_mid_block``; linear projections."""
    mc, num_res_blocks = model_channels, 2
    emb = mc * 4
    yield from _conv("conv_in", 4, mc)
    yield from _linear("time_embedding.linear_1", mc, emb)
    yield from _linear("time_embedding.linear_2", emb, emb)
    yield from _linear("add_embedding.linear_1", _SDXL_ADM, emb)
    yield from _linear("add_embedding.linear_2", emb, emb)
    yield from _conv("controlnet_cond_embedding.conv_in", 3, 16)
    for i, (n_in, n_out) in enumerate([(16, 16), (16, 32), (32, 32), (32, 96), (96, 96), (96, 256)]):
        yield from _conv(f"controlnet_cond_embedding.blocks.{i}", n_in, n_out)
    yield from _conv("controlnet_cond_embedding.conv_out", 256, mc)
    yield from _conv("controlnet_down_blocks.0", mc, mc, k=1)
    ch, zero, ds = mc, 1, 1
    for i, mult in enumerate(_SDXL_CHANNEL_MULT):
        for j in range(num_res_blocks):
            yield from _diffusers_resnet(f"down_blocks.{i}.resnets.{j}", ch, emb, mult * mc)
            ch = mult * mc
            if ds in _SDXL_ATTENTION_RESOLUTIONS:
                yield from _spatial_transformer(f"down_blocks.{i}.attentions.{j}", ch, _SDXL_CONTEXT,
                                                   _SDXL_TRANSFORMER_DEPTH[i], linear=True)
            yield from _conv(f"controlnet_down_blocks.{zero}", ch, ch, k=1)
            zero += 1
        if i != len(_SDXL_CHANNEL_MULT) - 1:
            yield from _conv(f"down_blocks.{i}.downsamplers.0.conv", ch, ch)
            yield from _conv(f"controlnet_down_blocks.{zero}", ch, ch, k=1)
            zero += 1
            ds *= 2
    yield from _diffusers_resnet("mid_block.resnets.0", ch, emb, ch)
    yield from _spatial_transformer("mid_block.attentions.0", ch, _SDXL_CONTEXT, _SDXL_TRANSFORMER_DEPTH[-1], linear=True)
    yield from _diffusers_resnet("mid_block.resnets.1", ch, emb, ch)
    yield from _conv("controlnet_mid_block", ch, ch, k=1)


_BUILDERS.update(
    {
        "sdxl": lambda s: _chain(_unet_sdxl(_UNET), _clip_l(_SDXL_CLIP_L), _open_clip_bigg(_SDXL_CLIP_G), _vae_kl(_VAE)),
        "controlnet_sdxl": lambda s: _controlnet_sdxl("control_model"),
        "controlnet_sdxl_diffusers": lambda s: _controlnet_sdxl_diffusers(),
    }
)


def sdxl(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Full SDXL base 1.0 checkpoint at its real size, original single-file ("sgm") names:
    UNet ``model.diffusion_model.*`` (with ``label_emb``), CLIP ViT-L/14
    ``conditioner.embedders.0.transformer.text_model.*``, OpenCLIP ViT-bigG/14
    ``conditioner.embedders.1.model.*`` (with ``text_projection``) and the KL VAE
    ``first_stage_model.*``.

    The engine detects it as ``SDXL`` and fixes every width from that, so it cannot be made
    smaller: 3.47e9 parameters, ~6.9 GB in f16 (the writer streams, so memory stays bounded;
    writing takes a minute or two).
    """
    return _make("sdxl", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def controlnet_sdxl(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SDXL ControlNet in the layout the engine loads (``control_model.*``, ldm/cldm names:
    input_hint_block, zero_convs, middle_block_out, label_emb; transformer depth 1/2/10).

    Pair it with :func:`sdxl` (the engine builds the ControlNet from the base model's version).
    Its SpatialTransformer projections are 1x1 convs, the only form the engine accepts for an
    SDXL ControlNet.  1.25e9 parameters, ~2.5 GB in f16.
    """
    return _make("controlnet_sdxl", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def controlnet_sdxl_diffusers(*, dtype: str = "f16", seed: int = 0) -> Path:
    """The SDXL ControlNet of :func:`controlnet_sdxl` in the diffusers layout it is usually
    published in (``controlnet_cond_embedding.*``, ``down_blocks.*``, ``controlnet_down_blocks.*``,
    ``mid_block.*``, ``controlnet_mid_block.*``; linear projections).  The engine cannot load this
    layout; convert it with :func:`gouache._modelfiles.convert.controlnet_diffusers_to_ldm`.  ~2.5 GB in f16.
    """
    return _make("controlnet_sdxl_diffusers", {"dtype": _check_dtype(dtype), "seed": int(seed)})


__all__ += ["sdxl", "controlnet_sdxl", "controlnet_sdxl_diffusers"]


# ---- a UNet published alone in the diffusers layout (SDXL-Lightning's *_unet.safetensors)

_TO_DIFFUSERS_FIXED = {
    "time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
}
_TO_DIFFUSERS_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                        "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _ldm_unet_name_to_diffusers(name: str) -> str:
    """``input_blocks.1.0.in_layers.2.weight`` -> ``down_blocks.0.resnets.0.conv1.weight`` for a
    UNet with 2 res blocks per level (SD1, SDXL), written independently of gouache's converter."""
    module, param = name.rsplit(".", 1)
    if module in _TO_DIFFUSERS_FIXED:
        return f"{_TO_DIFFUSERS_FIXED[module]}.{param}"
    parts = module.split(".")
    if parts[0] == "middle_block" and parts[1] in ("0", "2"):
        return f"mid_block.resnets.{int(parts[1]) // 2}.{_TO_DIFFUSERS_RESNET['.'.join(parts[2:])]}.{param}"
    kind, n, sub, rest = parts[0], int(parts[1]), parts[2], ".".join(parts[3:])
    if kind == "input_blocks" and rest == "op":
        return f"down_blocks.{n // 3 - 1}.downsamplers.0.conv.{param}"
    if kind == "output_blocks" and rest == "conv":
        return f"up_blocks.{n // 3}.upsamplers.0.conv.{param}"
    if sub == "0":
        i, j = divmod(n - 1, 3) if kind == "input_blocks" else divmod(n, 3)
        blocks = "down_blocks" if kind == "input_blocks" else "up_blocks"
        return f"{blocks}.{i}.resnets.{j}.{_TO_DIFFUSERS_RESNET[rest]}.{param}"
    return f"{_ldm_to_diffusers_block(module)}.{param}"


def _unet_sdxl_diffusers() -> Iterator[_Tensor]:
    for name, shape, init in _unet_sdxl(_UNET):
        yield _ldm_unet_name_to_diffusers(name[len(_UNET) + 1 :]), shape, init


_BUILDERS["sdxl_unet_diffusers"] = lambda s: _unet_sdxl_diffusers()


def sdxl_unet_diffusers(*, dtype: str = "f16", seed: int = 1) -> Path:
    """The SDXL UNet alone, in the diffusers ``UNet2DConditionModel`` layout: the form
    SDXL-Lightning publishes its UNets in (``sdxl_lightning_4step_unet.safetensors``).
    Seed 1 by default, so its weights differ from :func:`sdxl`'s UNet; combine the two with
    :func:`gouache.assemble_checkpoint`.  2.57e9 parameters, ~5.1 GB in f16."""
    return _make("sdxl_unet_diffusers", {"dtype": _check_dtype(dtype), "seed": int(seed)})


__all__ += ["sdxl_unet_diffusers"]
