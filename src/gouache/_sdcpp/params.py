"""Parameter objects: Pythonic dataclasses that lower to the engine's C structs.

Every field of every C struct has a field here.  Defaults mirror the engine's
``*_init`` functions; a field whose engine default means "let the engine decide"
(for example the sampler, the weight type or ``eta``) is ``None`` here and is left
at the value ``*_init`` put there.  ``tests/test_params.py`` checks that default
objects lower to exactly what ``*_init`` produces.

Lowering (:meth:`_lower`) returns a :class:`Lowered` holding the C struct *and* every
Python object (encoded strings, arrays, images) the struct points into, so nothing
it points at can be collected while the struct is in use.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from .._image import ImageLike
from . import native as _native
from .image import c_image_array
from .library import take_string
from .native import (
    CacheMode,
    HiresUpscaler,
    LoraApplyMode,
    Prediction,
    RNGType,
    SampleMethod,
    Scheduler,
    SDType,
)

PathLike = str | os.PathLike[str]
S = TypeVar("S", bound=ctypes.Structure)


class Lowered(Generic[S]):
    """A C struct plus the Python objects it points into (kept alive together)."""

    __slots__ = ("struct", "keep")

    def __init__(self, struct: S, keep: list[Any]) -> None:
        self.struct = struct
        self.keep = keep

    @property
    def ref(self) -> Any:
        return ctypes.byref(self.struct)


# --------------------------------------------------------------------------- helpers


def _text(value: str | os.PathLike[str] | None, keep: list[Any]) -> bytes | None:
    raw = _native.encode(value)
    if raw is not None:
        keep.append(raw)
    return raw


def _set(struct: ctypes.Structure, field: str, value: Any) -> None:
    """Assign unless ``value`` is None (None = keep the engine's default)."""
    if value is not None:
        setattr(struct, field, value)


def _fill_fields(
    obj: Any,
    c: ctypes.Structure,
    keep: list[Any],
    *,
    enums: Mapping[str, type] | None = None,
    texts: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Copy every field of a dataclass into the same-named field of its C struct: enum fields
    parsed to their value, text fields encoded (and kept alive in ``keep``)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if enums and f.name in enums:
            v = int(enums[f.name].parse(v))
        elif f.name in texts:
            v = _text(v, keep)
        setattr(c, f.name, v)


def _enum(cls: type[_native._CEnum], value: Any) -> int | None:
    return None if value is None else int(cls.parse(value))


def _engine_str(fn_name: str, lowered: Lowered[Any]) -> str:
    fn = getattr(_dispatch_lib(), fn_name)
    return take_string(fn(lowered.ref))


def _engine_defaults(struct_type: type[S]) -> S:
    """A struct filled with the engine's own defaults (its ``*_init`` function)."""
    c = struct_type()
    init = struct_type.__name__.removesuffix("_t") + "_init"
    getattr(_dispatch_lib(), init)(ctypes.byref(c))
    return c


def _dispatch_lib():
    from .dispatch import lib

    return lib()


def _struct_repr(self: Any, fn_name: str) -> str:
    try:
        text = _engine_str(fn_name, self._lower())
    except Exception:  # noqa: BLE001 - repr must not raise (e.g. no library, bad field)
        return _plain_repr(self)
    text = text.strip()
    return f"{type(self).__name__}{text}" if text.startswith("(") else f"{type(self).__name__}({text})"


def _plain_repr(self: Any) -> str:
    fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
    return f"{type(self).__name__}({fields})"


# --------------------------------------------------------------------------- small structs


@dataclasses.dataclass
class SDEmbedding:
    """A textual-inversion embedding: used in prompts as ``name``."""

    name: str
    path: PathLike


@dataclasses.dataclass
class SDLora:
    """A LoRA applied to one generation (``is_high_noise`` targets Wan 2.2's high-noise model)."""

    path: PathLike
    multiplier: float = 1.0
    is_high_noise: bool = False


@dataclasses.dataclass
class SDTilingParams:
    """VAE tiling: decode/encode in tiles to bound memory."""

    enabled: bool = False
    tile_size_x: int = 0
    tile_size_y: int = 0
    target_overlap: float = 0.5
    rel_size_x: float = 0.0
    rel_size_y: float = 0.0

    def _fill(self, c: _native.sd_tiling_params_t) -> None:
        _fill_fields(self, c, [])


@dataclasses.dataclass
class SDCacheParams:
    """Step/feature caching (EasyCache, UCache, DBCache, TaylorSeer, Cache-DiT, Spectrum)."""

    mode: CacheMode | str = CacheMode.DISABLED
    reuse_threshold: float = float("inf")
    start_percent: float = 0.15
    end_percent: float = 0.95
    error_decay_rate: float = 1.0
    use_relative_threshold: bool = True
    reset_error_on_compute: bool = True
    Fn_compute_blocks: int = 8
    Bn_compute_blocks: int = 0
    residual_diff_threshold: float = 0.08
    max_warmup_steps: int = 8
    max_cached_steps: int = -1
    max_continuous_cached_steps: int = -1
    taylorseer_n_derivatives: int = 1
    taylorseer_skip_interval: int = 1
    scm_mask: str | None = None
    scm_policy_dynamic: bool = True
    spectrum_w: float = 0.40
    spectrum_m: int = 3
    spectrum_lam: float = 1.0
    spectrum_window_size: int = 2
    spectrum_flex_window: float = 0.50
    spectrum_warmup_steps: int = 4
    spectrum_stop_percent: float = 0.9

    def _fill(self, c: _native.sd_cache_params_t, keep: list[Any]) -> None:
        _fill_fields(self, c, keep, enums={"mode": CacheMode}, texts={"scm_mask"})


@dataclasses.dataclass
class SDHiresParams:
    """Hires fix: a second pass at a larger size (latent, pixel or model upscaler)."""

    enabled: bool = False
    upscaler: HiresUpscaler | str = HiresUpscaler.LATENT
    model_path: PathLike | None = None
    scale: float = 2.0
    target_width: int = 0
    target_height: int = 0
    steps: int = 0
    denoising_strength: float = 0.7
    upscale_tile_size: int = 128

    def _fill(self, c: _native.sd_hires_params_t, keep: list[Any]) -> None:
        _fill_fields(self, c, keep, enums={"upscaler": HiresUpscaler}, texts={"model_path"})


@dataclasses.dataclass
class SDPhotoMakerParams:
    """PhotoMaker identity images / embedding and style strength."""

    id_images: Sequence[ImageLike] = ()
    id_embed_path: PathLike | None = None
    style_strength: float = 20.0

    def _fill(self, c: _native.sd_pm_params_t, keep: list[Any]) -> None:
        ptr, n = c_image_array(self.id_images, 3, "id_images", keep)
        if ptr is not None:
            c.id_images = ptr
        c.id_images_count = n
        c.id_embed_path = _text(self.id_embed_path, keep)
        c.style_strength = self.style_strength


# --------------------------------------------------------------------------- context params


@dataclasses.dataclass(repr=False)
class SDContextParams:
    """Everything ``new_sd_ctx`` takes: model files, weight type, threads, memory knobs.

    ``None`` means "the engine decides" (``n_threads``: physical cores; ``wtype``: the
    file's types; ``sampler_rng_type``: same as ``rng_type``; ``prediction``: from the model).

    One default differs from the engine's ``sd_ctx_params_init``: ``free_params_immediately``
    is ``False``, because a context serves many generations.  With ``True`` the engine frees
    the weights after the first generation (lower peak memory for one-shot use), and
    :class:`~gouache.SDContext` refuses a second generation instead of crashing.
    """

    model_path: PathLike | None = None
    clip_l_path: PathLike | None = None
    clip_g_path: PathLike | None = None
    clip_vision_path: PathLike | None = None
    t5xxl_path: PathLike | None = None
    llm_path: PathLike | None = None
    llm_vision_path: PathLike | None = None
    diffusion_model_path: PathLike | None = None
    high_noise_diffusion_model_path: PathLike | None = None
    vae_path: PathLike | None = None
    taesd_path: PathLike | None = None
    control_net_path: PathLike | None = None
    embeddings: Sequence[SDEmbedding | tuple[str, PathLike]] | Mapping[str, PathLike] = ()
    photo_maker_path: PathLike | None = None
    tensor_type_rules: str | None = None
    vae_decode_only: bool = True
    free_params_immediately: bool = False
    n_threads: int | None = None
    wtype: SDType | str | None = None
    rng_type: RNGType | str = RNGType.CUDA
    sampler_rng_type: RNGType | str | None = None
    prediction: Prediction | str | None = None
    lora_apply_mode: LoraApplyMode | str = LoraApplyMode.AUTO
    offload_params_to_cpu: bool = False
    enable_mmap: bool = False
    keep_clip_on_cpu: bool = False
    keep_control_net_on_cpu: bool = False
    keep_vae_on_cpu: bool = False
    flash_attn: bool = False
    diffusion_flash_attn: bool = False
    tae_preview_only: bool = False
    diffusion_conv_direct: bool = False
    vae_conv_direct: bool = False
    circular_x: bool = False
    circular_y: bool = False
    force_sdxl_vae_conv_scale: bool = False
    chroma_use_dit_mask: bool = True
    chroma_use_t5_mask: bool = False
    chroma_t5_mask_pad: int = 1
    qwen_image_zero_cond_t: bool = False
    max_vram: float = 0.0

    PATH_FIELDS = (
        "model_path",
        "clip_l_path",
        "clip_g_path",
        "clip_vision_path",
        "t5xxl_path",
        "llm_path",
        "llm_vision_path",
        "diffusion_model_path",
        "high_noise_diffusion_model_path",
        "vae_path",
        "taesd_path",
        "control_net_path",
        "photo_maker_path",
    )

    def embedding_list(self) -> list[SDEmbedding]:
        items = self.embeddings.items() if isinstance(self.embeddings, Mapping) else self.embeddings
        out = []
        for item in items:
            if isinstance(item, SDEmbedding):
                out.append(item)
            else:
                name, path = item
                out.append(SDEmbedding(str(name), path))
        return out

    def _lower(self) -> Lowered[_native.sd_ctx_params_t]:
        keep: list[Any] = []
        c = _engine_defaults(_native.sd_ctx_params_t)
        for name in self.PATH_FIELDS:
            setattr(c, name, _text(getattr(self, name), keep))
        embs = self.embedding_list()
        if embs:
            arr = (_native.sd_embedding_t * len(embs))(
                *[_native.sd_embedding_t(_text(e.name, keep), _text(e.path, keep)) for e in embs]
            )
            keep.append(arr)
            c.embeddings = ctypes.cast(arr, ctypes.POINTER(_native.sd_embedding_t))
        c.embedding_count = len(embs)
        c.tensor_type_rules = _text(self.tensor_type_rules, keep)
        _set(c, "n_threads", self.n_threads)
        _set(c, "wtype", _enum(SDType, self.wtype))
        _set(c, "rng_type", _enum(RNGType, self.rng_type))
        _set(c, "sampler_rng_type", _enum(RNGType, self.sampler_rng_type))
        _set(c, "prediction", _enum(Prediction, self.prediction))
        _set(c, "lora_apply_mode", _enum(LoraApplyMode, self.lora_apply_mode))
        for name in (
            "vae_decode_only",
            "free_params_immediately",
            "offload_params_to_cpu",
            "enable_mmap",
            "keep_clip_on_cpu",
            "keep_control_net_on_cpu",
            "keep_vae_on_cpu",
            "flash_attn",
            "diffusion_flash_attn",
            "tae_preview_only",
            "diffusion_conv_direct",
            "vae_conv_direct",
            "circular_x",
            "circular_y",
            "force_sdxl_vae_conv_scale",
            "chroma_use_dit_mask",
            "chroma_use_t5_mask",
            "chroma_t5_mask_pad",
            "qwen_image_zero_cond_t",
            "max_vram",
        ):
            setattr(c, name, getattr(self, name))
        return Lowered(c, keep)

    def __repr__(self) -> str:
        return _struct_repr(self, "sd_ctx_params_to_str")


# --------------------------------------------------------------------------- sampling


@dataclasses.dataclass(repr=False)
class SDSampleParams:
    """Sampler, scheduler, steps and guidance (CFG, image CFG, distilled guidance, SLG).

    ``None``: the engine's choice (sampler/scheduler: the model's default; ``img_cfg``:
    same as ``txt_cfg``; ``eta``: the sampler's default; ``flow_shift``: the model's).
    """

    txt_cfg: float = 7.0
    img_cfg: float | None = None
    distilled_guidance: float = 3.5
    slg_layers: Sequence[int] = ()
    slg_layer_start: float = 0.01
    slg_layer_end: float = 0.2
    slg_scale: float = 0.0
    scheduler: Scheduler | str | None = None
    sample_method: SampleMethod | str | None = None
    sample_steps: int = 20
    eta: float | None = None
    shifted_timestep: int = 0
    custom_sigmas: Sequence[float] = ()
    flow_shift: float | None = None

    def _fill(self, c: _native.sd_sample_params_t, keep: list[Any]) -> None:
        _dispatch_lib().sd_sample_params_init(ctypes.byref(c))
        g = c.guidance
        g.txt_cfg = self.txt_cfg
        _set(g, "img_cfg", self.img_cfg)
        g.distilled_guidance = self.distilled_guidance
        if self.slg_layers:
            layers = (ctypes.c_int * len(self.slg_layers))(*[int(x) for x in self.slg_layers])
            keep.append(layers)
            g.slg.layers = ctypes.cast(layers, ctypes.POINTER(ctypes.c_int))
        g.slg.layer_count = len(self.slg_layers)
        g.slg.layer_start = self.slg_layer_start
        g.slg.layer_end = self.slg_layer_end
        g.slg.scale = self.slg_scale
        _set(c, "scheduler", _enum(Scheduler, self.scheduler))
        _set(c, "sample_method", _enum(SampleMethod, self.sample_method))
        c.sample_steps = self.sample_steps
        _set(c, "eta", self.eta)
        c.shifted_timestep = self.shifted_timestep
        if self.custom_sigmas:
            sig = (ctypes.c_float * len(self.custom_sigmas))(*[float(x) for x in self.custom_sigmas])
            keep.append(sig)
            c.custom_sigmas = ctypes.cast(sig, ctypes.POINTER(ctypes.c_float))
        c.custom_sigmas_count = len(self.custom_sigmas)
        _set(c, "flow_shift", self.flow_shift)

    def _lower(self) -> Lowered[_native.sd_sample_params_t]:
        keep: list[Any] = []
        c = _native.sd_sample_params_t()
        self._fill(c, keep)
        return Lowered(c, keep)

    def __repr__(self) -> str:
        return _struct_repr(self, "sd_sample_params_to_str")
