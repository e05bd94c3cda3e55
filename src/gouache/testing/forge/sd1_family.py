"""SD1 family: full and tiny SD1, SDXS, TAESD, the SD1 ControlNet, ESRGAN, LoRAs, GGUF."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .blocks import _chain, _clip_l, _controlnet_sd1, _esrgan, _taesd, _unet, _vae_kl
from .io import _check_dtype, _Tensor, convert_cached, gguf_target, make

_UNET = "model.diffusion_model"
_CLIP = "cond_stage_model.transformer.text_model"
_VAE = "first_stage_model"

_LORA_STD = 0.2  # up/down std: merged delta std ~ 2 * 0.2**2 = 0.08 per entry at rank 4, 4x the base weights
_NAMINGS = ("kohya", "ldm")
_TARGETS = ("unet", "te", "all", "lcm")
_ATTN = (".attn1.", ".attn2.")
#: the layers the published LCM-LoRA (latent-consistency/lcm-lora-sdv1-5) adapts, as ldm name parts
_LCM_MARKERS = _ATTN + (
    ".ff.net.",
    ".proj_in.",
    ".proj_out.",
    ".in_layers.2.",
    ".out_layers.3.",
    ".emb_layers.1.",
    ".skip_connection.",
    ".op.",
    ".conv.",
)
_LORA_BASES = ("sd1", "sd1_tiny")


def _modules(tensors: Iterable[_Tensor], markers: Sequence[str]) -> list[tuple[str, tuple[int, ...]]]:
    """(module path, weight shape) of the linear and conv layers whose name contains a marker."""
    return [
        (name[: -len(".weight")], shape)
        for name, shape, _ in tensors
        if name.endswith(".weight") and len(shape) in (2, 4) and any(m in name for m in markers)
    ]


#: ldm module names inside a UNet block -> diffusers' (ResBlock layers, the downsampler's conv)
_LDM_LAYER_NAMES = {
    "in_layers.2": "conv1",
    "out_layers.3": "conv2",
    "emb_layers.1": "time_emb_proj",
    "skip_connection": "conv_shortcut",
    "op": "conv",
}


def _ldm_to_diffusers_block(path: str) -> str:
    """An SD1 UNet module path, ldm -> diffusers (the inverse of the engine's table), e.g.
    ``input_blocks.4.1.x`` -> ``down_blocks.1.attentions.0.x``, ``input_blocks.4.0.in_layers.2``
    -> ``down_blocks.1.resnets.0.conv1``, ``input_blocks.3.0.op`` -> ``down_blocks.0.downsamplers.0.conv``."""
    parts = path.split(".")
    kind, n = parts[0], int(parts[1])
    if kind == "middle_block":
        block, rest = ("mid_block.attentions.0" if n == 1 else f"mid_block.resnets.{n // 2}"), parts[2:]
    elif kind in ("input_blocks", "output_blocks"):
        i, j = divmod(n - 1 if kind == "input_blocks" else n, 3)
        rest = parts[3:]
        if kind == "input_blocks" and j == 2:
            sub = "downsamplers.0"
        elif rest == ["conv"]:
            sub = "upsamplers.0"
        else:
            sub = f"{'resnets' if parts[2] == '0' else 'attentions'}.{j}"
        block = f"{'down' if kind == 'input_blocks' else 'up'}_blocks.{i}.{sub}"
    else:
        raise ValueError(path)
    tail = ".".join(rest)
    return f"{block}.{_LDM_LAYER_NAMES.get(tail, tail)}"


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
    mods: list[tuple[str, tuple[int, ...]]] = []
    if target == "lcm":  # every layer the published LCM-LoRA for SD 1.5 adapts
        mods += _modules(_unet(_UNET), _LCM_MARKERS)
    if target in ("unet", "all"):
        mods += _modules(_unet(_UNET, tiny=(base == "sd1_tiny")), _ATTN)
    if target in ("te", "all"):
        mods += _modules(_clip_l(_CLIP), (".self_attn.", ".mlp."))
    # the merged delta's entries have std ~ sqrt(rank) * std**2: 0.08 at rank 4 for the small
    # LoRAs (4x the base weights: visible at multiplier 1), 0.02 for the LCM one (its rank-64
    # deltas reach every conv: larger ones would blow the activations up)
    std = (0.02 / rank**0.5) ** 0.5 if target == "lcm" else _LORA_STD
    for module, shape in mods:
        key = _lora_key(module, naming)
        kernel = shape[2:]
        yield f"{key}.lora_down.weight", (rank, shape[1], *kernel), std
        yield f"{key}.lora_up.weight", (shape[0], rank, *(1 for _ in kernel)), std
        yield f"{key}.alpha", (), ("fill", float(rank))


# --------------------------------------------------------------------------- registry


BUILDERS = {
    "sd1": lambda s: _chain(_unet(_UNET), _clip_l(_CLIP), _vae_kl(_VAE)),
    "sd1_tiny": lambda s: _chain(_unet(_UNET, tiny=True), _clip_l(_CLIP), _vae_kl(_VAE)),
    # InstructPix2Pix: the SD1 UNet reads the edited image's latent beside the noise (8 channels)
    "sd1_pix2pix": lambda s: _chain(_unet(_UNET, in_channels=8), _clip_l(_CLIP), _vae_kl(_VAE)),
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
    return make(BUILDERS, kind, spec)


def sd1(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Full Stable Diffusion 1.x checkpoint (UNet + CLIP ViT-L/14 text + KL VAE), ldm names.

    The engine detects it as ``SD 1.x``.  1.07e9 parameters: ~2.1 GB in f16, ~4.3 GB in f32.
    """
    return _make("sd1", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sd1_pix2pix(*, dtype: str = "f16", seed: int = 0) -> Path:
    """InstructPix2Pix checkpoint (``instruct-pix2pix-00-22000.safetensors`` layout): :func:`sd1`
    with an 8-channel UNet input (noise latent + the edited image's latent).

    The engine detects it as ``SD 1.x Instruct-Pix2Pix`` and edits its reference image; it
    derives no UNet width from the file, so this is the full SD1 size (~2.1 GB in f16).
    """
    return _make("sd1_pix2pix", {"dtype": _check_dtype(dtype), "seed": int(seed)})


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


def lora_sd1(*, naming: str = "kohya", rank: int = 4, seed: int = 0, target: str = "unet", base: str = "sd1") -> Path:
    """LoRA (f32) on the attention/MLP projections of :func:`sd1` (or ``base="sd1_tiny"``).

    ``naming="kohya"``: ``lora_unet_down_blocks_0_attentions_0_..._attn1_to_q.lora_up.weight`` and
    ``lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight`` (+ ``.lora_down.weight``,
    ``.alpha``).  ``naming="ldm"``: the checkpoint's own module paths, e.g.
    ``model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.lora_up.weight`` and
    ``cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.lora_up.weight``.
    ``target``: ``"unet"`` (attn1/attn2 q, k, v, out), ``"te"`` (self-attention q, k, v, out and
    mlp fc1, fc2), ``"all"``, or ``"lcm"`` (SD1 only: every layer the published LCM-LoRA adapts,
    convs included; see :func:`lcm_lora_sd1`).  alpha == rank (scale 1); the weights are large
    enough that applying the LoRA at multiplier 1 visibly changes the image.
    """
    if naming not in _NAMINGS:
        raise ValueError(f"naming must be one of {_NAMINGS}, got {naming!r}")
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")
    if base not in _LORA_BASES:
        raise ValueError(f"base must be one of {_LORA_BASES}, got {base!r}")
    if int(rank) < 1:
        raise ValueError("rank must be >= 1")
    if target == "lcm" and base != "sd1":
        raise ValueError(f"target 'lcm' is for base 'sd1' (the LCM-LoRA's UNet), got base {base!r}")
    spec = {"dtype": "f32", "seed": int(seed), "naming": naming, "rank": int(rank), "target": target, "base": base}
    return _make(f"lora_{base}", spec)


def lcm_lora_sd1(*, seed: int = 0) -> Path:
    """An LCM-LoRA for :func:`sd1`, shaped like ``latent-consistency/lcm-lora-sdv1-5``: kohya
    names, rank 64, on the attention projections, feed-forwards, proj_in/out, ResBlock convs,
    time-embedding projections, shortcuts and down/upsampler convs (67M parameters, ~270 MB f32).
    Sample it with ``sampler="lcm"``, 4 steps, CFG 1."""
    return lora_sd1(naming="kohya", rank=64, seed=seed, target="lcm")


def lora_sd1_tiny(*, naming: str = "kohya", rank: int = 4, seed: int = 0, target: str = "unet") -> Path:
    """LoRA for :func:`sd1_tiny`; same as ``lora_sd1(base="sd1_tiny", ...)``."""
    return lora_sd1(naming=naming, rank=rank, seed=seed, target=target, base="sd1_tiny")


# --------------------------------------------------------------------------- GGUF through the engine


_GGUF_BASES = {"sd1": sd1, "sd1_tiny": sd1_tiny}


def gguf(*, base: str = "sd1_tiny", wtype: str = "q8_0", seed: int = 0) -> Path:
    """A quantized GGUF of a forged model, made by the engine's own converter
    (:func:`gouache.convert_model`), cached like every forged file."""
    if base not in _GGUF_BASES:
        raise ValueError(f"base must be one of {sorted(_GGUF_BASES)}, got {base!r}")
    src = _GGUF_BASES[base](seed=seed)
    path, engine_type = gguf_target(base, wtype, {"seed": int(seed), "source": src.name})
    return path if path.exists() else convert_cached(src, path, engine_type)


# =========================================================================== DiT families
#
# Flux and Wan 2.1 below are written as *diffusion-model-only* files (the layout of the
# official ``flux1-dev.safetensors`` / ``wan2.1_t2v_1.3B_fp16.safetensors``: bare names such
# as ``double_blocks.0.img_attn.qkv.weight`` or ``blocks.0.self_attn.q.weight``), to be
# passed as ``diffusion_model_path``; the engine prefixes them with ``model.diffusion_model.``.
