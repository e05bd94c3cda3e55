"""ctypes declarations of stable-diffusion.cpp's C API, and locating/loading the library.

This is the only module that knows the C ABI.  It declares every enum, struct,
callback type and function of ``stable-diffusion.h`` as shipped in
``stable-diffusion-cpp-python==0.4.7`` (the package is used only as the carrier
of the compiled library; its Python modules are never imported).  Nothing here
holds engine state: the callback dispatcher, ownership and validation live in
the modules above this one.

Text crosses the boundary in exactly two functions, :func:`encode` and
:func:`decode` (UTF-8).  The ABI test (``tests/test_abi.py``) compiles a C probe
against the installed header and checks every ``sizeof``/``offsetof`` and enum
value declared here.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import importlib.util
import os
import sys
import sysconfig
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)
from pathlib import Path

from .._errors import InvalidInputError, LibraryNotFoundError

#: Environment variable naming the shared library to load instead of the bundled one.
LIBRARY_ENV = "GOUACHE_LIBRARY"
#: The version of stable-diffusion-cpp-python whose header these declarations match.
CARRIER_PACKAGE = "stable-diffusion-cpp-python"
CARRIER_VERSION = "0.4.7"

# --------------------------------------------------------------------------- text


def encode(text: str | os.PathLike[str] | None) -> bytes | None:
    """Python text (or path) -> NUL-terminated UTF-8 for C; ``None`` -> NULL."""
    if text is None:
        return None
    if isinstance(text, os.PathLike):
        return os.fsencode(text)
    if "\x00" in text:
        raise ValueError(f"text passed to the engine must not contain NUL characters: {text!r}")
    return text.encode("utf-8")


def decode(raw: bytes | None) -> str:
    """C text -> Python ``str`` (UTF-8, undecodable bytes replaced); NULL -> ``""``."""
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- enums


class _CEnum(enum.IntEnum):
    """Base of the engine's enums.  ``_c_spelling`` maps a member to its C name."""

    @classmethod
    def _c_spelling(cls) -> tuple[str, str, str, str]:  # (c type, prefix, suffix, count name)
        raise NotImplementedError

    @classmethod
    def c_name(cls, member: "_CEnum") -> str:
        _, prefix, suffix, _ = cls._c_spelling()
        return f"{prefix}{member.name}{suffix}"

    @property
    def engine_name(self) -> str:
        """The engine's own spelling of this value (e.g. ``"euler_a"``, ``"q8_0"``)."""
        names = CONVERTERS.get(type(self))
        if names is None:
            return self.name.lower()
        return decode(getattr(lib(), names[0])(int(self)))

    @classmethod
    def names(cls) -> list[str]:
        """Every accepted engine spelling, in enum order."""
        return [m.engine_name for m in cls]

    @classmethod
    def parse(cls, value: "str | int | _CEnum"):
        """An enum member from a member, an int, or a name (parsed by the engine's converter).

        Unknown values raise :class:`~gouache.InvalidInputError` listing the allowed names.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            text = value.strip()
            names = CONVERTERS.get(cls)
            if names is not None and text:
                raw = getattr(lib(), names[1])(encode(text))
                if raw in cls._value2member_map_:
                    return cls(raw)
            for member in cls:
                if text.lower() in (member.name.lower(), member.engine_name.lower()):
                    return member
        raise InvalidInputError(
            f"unknown {cls.__name__} {value!r}; allowed: {', '.join(cls.names())}"
        )


class RNGType(_CEnum):
    """Random number generator for the initial noise (CUDA_RNG matches most web UIs, CPU_RNG matches ComfyUI)."""
    STD_DEFAULT = 0
    CUDA = 1
    CPU = 2

    @classmethod
    def _c_spelling(cls):
        return ("enum rng_type_t", "", "_RNG", "RNG_TYPE_COUNT")


class SampleMethod(_CEnum):
    """Sampler (engine names: euler, euler_a, heun, dpm2, dpm++2s_a, dpm++2m, dpm++2mv2, ipndm, ipndm_v, lcm, ddim_trailing, tcd, res_multistep, res_2s, er_sde)."""
    EULER = 0
    EULER_A = 1
    HEUN = 2
    DPM2 = 3
    DPMPP2S_A = 4
    DPMPP2M = 5
    DPMPP2Mv2 = 6
    IPNDM = 7
    IPNDM_V = 8
    LCM = 9
    DDIM_TRAILING = 10
    TCD = 11
    RES_MULTISTEP = 12
    RES_2S = 13
    ER_SDE = 14

    @classmethod
    def _c_spelling(cls):
        return ("enum sample_method_t", "", "_SAMPLE_METHOD", "SAMPLE_METHOD_COUNT")


class Scheduler(_CEnum):
    """Sigma schedule (engine names: discrete, karras, exponential, ays, gits, sgm_uniform, simple, smoothstep, kl_optimal, lcm, bong_tangent)."""
    DISCRETE = 0
    KARRAS = 1
    EXPONENTIAL = 2
    AYS = 3
    GITS = 4
    SGM_UNIFORM = 5
    SIMPLE = 6
    SMOOTHSTEP = 7
    KL_OPTIMAL = 8
    LCM = 9
    BONG_TANGENT = 10

    @classmethod
    def _c_spelling(cls):
        return ("enum scheduler_t", "", "_SCHEDULER", "SCHEDULER_COUNT")


class Prediction(_CEnum):
    """What the model predicts (eps, v, edm_v, flow, flux_flow, flux2_flow); normally detected from the file."""
    EPS = 0
    V = 1
    EDM_V = 2
    FLOW = 3
    FLUX_FLOW = 4
    FLUX2_FLOW = 5

    @classmethod
    def _c_spelling(cls):
        return ("enum prediction_t", "", "_PRED", "PREDICTION_COUNT")


class SDType(_CEnum):
    """Weight type (ggml type): f32, f16, bf16, q8_0, q4_0, q4_k ... as in GGUF files."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40

    @classmethod
    def _c_spelling(cls):
        return ("enum sd_type_t", "SD_TYPE_", "", "SD_TYPE_COUNT")


class LogLevel(_CEnum):
    """Level of an engine log line (mapped onto ``logging`` levels on the ``gouache.engine`` logger)."""
    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3

    @classmethod
    def _c_spelling(cls):
        return ("enum sd_log_level_t", "SD_LOG_", "", "")


class PreviewMode(_CEnum):
    """How previews are decoded: none, proj (fast latent projection), tae (tiny autoencoder), vae (full VAE)."""
    NONE = 0
    PROJ = 1
    TAE = 2
    VAE = 3

    @classmethod
    def _c_spelling(cls):
        return ("enum preview_t", "PREVIEW_", "", "PREVIEW_COUNT")


class LoraApplyMode(_CEnum):
    """When LoRAs are applied: auto, immediately (merged into weights), at_runtime (kept separate)."""
    AUTO = 0
    IMMEDIATELY = 1
    AT_RUNTIME = 2

    @classmethod
    def _c_spelling(cls):
        return ("enum lora_apply_mode_t", "LORA_APPLY_", "", "LORA_APPLY_MODE_COUNT")


class CacheMode(_CEnum):
    """Step/feature cache: disabled, easycache, ucache, dbcache, taylorseer, cache_dit, spectrum."""
    DISABLED = 0
    EASYCACHE = 1
    UCACHE = 2
    DBCACHE = 3
    TAYLORSEER = 4
    CACHE_DIT = 5
    SPECTRUM = 6

    @classmethod
    def _c_spelling(cls):
        return ("enum sd_cache_mode_t", "SD_CACHE_", "", "")


class HiresUpscaler(_CEnum):
    """Hires-fix upscaler: latent variants, lanczos, nearest, or model (ESRGAN file)."""
    NONE = 0
    LATENT = 1
    LATENT_NEAREST = 2
    LATENT_NEAREST_EXACT = 3
    LATENT_ANTIALIASED = 4
    LATENT_BICUBIC = 5
    LATENT_BICUBIC_ANTIALIASED = 6
    LANCZOS = 7
    NEAREST = 8
    MODEL = 9

    @classmethod
    def _c_spelling(cls):
        return ("enum sd_hires_upscaler_t", "SD_HIRES_UPSCALER_", "", "SD_HIRES_UPSCALER_COUNT")


#: Every enum of the header, in header order.
ENUMS: tuple[type[_CEnum], ...] = (
    RNGType,
    SampleMethod,
    Scheduler,
    Prediction,
    SDType,
    LogLevel,
    PreviewMode,
    LoraApplyMode,
    CacheMode,
    HiresUpscaler,
)

#: The ``*_COUNT`` sentinel of each enum that has one ("engine chooses" in several fields).
COUNT = {
    RNGType: 3,
    SampleMethod: 15,
    Scheduler: 11,
    Prediction: 6,
    SDType: 41,
    PreviewMode: 4,
    LoraApplyMode: 3,
    HiresUpscaler: 10,
}

# --------------------------------------------------------------------------- structs

c_enum = c_int  # every C enum here is int-sized (checked by the ABI test)


class sd_tiling_params_t(Structure):
    _fields_ = [
        ("enabled", c_bool),
        ("tile_size_x", c_int),
        ("tile_size_y", c_int),
        ("target_overlap", c_float),
        ("rel_size_x", c_float),
        ("rel_size_y", c_float),
    ]


class sd_embedding_t(Structure):
    _fields_ = [("name", c_char_p), ("path", c_char_p)]


class sd_ctx_params_t(Structure):
    _fields_ = [
        ("model_path", c_char_p),
        ("clip_l_path", c_char_p),
        ("clip_g_path", c_char_p),
        ("clip_vision_path", c_char_p),
        ("t5xxl_path", c_char_p),
        ("llm_path", c_char_p),
        ("llm_vision_path", c_char_p),
        ("diffusion_model_path", c_char_p),
        ("high_noise_diffusion_model_path", c_char_p),
        ("vae_path", c_char_p),
        ("taesd_path", c_char_p),
        ("control_net_path", c_char_p),
        ("embeddings", POINTER(sd_embedding_t)),
        ("embedding_count", c_uint32),
        ("photo_maker_path", c_char_p),
        ("tensor_type_rules", c_char_p),
        ("vae_decode_only", c_bool),
        ("free_params_immediately", c_bool),
        ("n_threads", c_int),
        ("wtype", c_enum),
        ("rng_type", c_enum),
        ("sampler_rng_type", c_enum),
        ("prediction", c_enum),
        ("lora_apply_mode", c_enum),
        ("offload_params_to_cpu", c_bool),
        ("enable_mmap", c_bool),
        ("keep_clip_on_cpu", c_bool),
        ("keep_control_net_on_cpu", c_bool),
        ("keep_vae_on_cpu", c_bool),
        ("flash_attn", c_bool),
        ("diffusion_flash_attn", c_bool),
        ("tae_preview_only", c_bool),
        ("diffusion_conv_direct", c_bool),
        ("vae_conv_direct", c_bool),
        ("circular_x", c_bool),
        ("circular_y", c_bool),
        ("force_sdxl_vae_conv_scale", c_bool),
        ("chroma_use_dit_mask", c_bool),
        ("chroma_use_t5_mask", c_bool),
        ("chroma_t5_mask_pad", c_int),
        ("qwen_image_zero_cond_t", c_bool),
        ("max_vram", c_float),
    ]


class sd_image_t(Structure):
    _fields_ = [
        ("width", c_uint32),
        ("height", c_uint32),
        ("channel", c_uint32),
        ("data", POINTER(c_uint8)),
    ]


class sd_slg_params_t(Structure):
    _fields_ = [
        ("layers", POINTER(c_int)),
        ("layer_count", c_size_t),
        ("layer_start", c_float),
        ("layer_end", c_float),
        ("scale", c_float),
    ]


class sd_guidance_params_t(Structure):
    _fields_ = [
        ("txt_cfg", c_float),
        ("img_cfg", c_float),
        ("distilled_guidance", c_float),
        ("slg", sd_slg_params_t),
    ]


class sd_sample_params_t(Structure):
    _fields_ = [
        ("guidance", sd_guidance_params_t),
        ("scheduler", c_enum),
        ("sample_method", c_enum),
        ("sample_steps", c_int),
        ("eta", c_float),
        ("shifted_timestep", c_int),
        ("custom_sigmas", POINTER(c_float)),
        ("custom_sigmas_count", c_int),
        ("flow_shift", c_float),
    ]


class sd_pm_params_t(Structure):
    _fields_ = [
        ("id_images", POINTER(sd_image_t)),
        ("id_images_count", c_int),
        ("id_embed_path", c_char_p),
        ("style_strength", c_float),
    ]


class sd_cache_params_t(Structure):
    _fields_ = [
        ("mode", c_enum),
        ("reuse_threshold", c_float),
        ("start_percent", c_float),
        ("end_percent", c_float),
        ("error_decay_rate", c_float),
        ("use_relative_threshold", c_bool),
        ("reset_error_on_compute", c_bool),
        ("Fn_compute_blocks", c_int),
        ("Bn_compute_blocks", c_int),
        ("residual_diff_threshold", c_float),
        ("max_warmup_steps", c_int),
        ("max_cached_steps", c_int),
        ("max_continuous_cached_steps", c_int),
        ("taylorseer_n_derivatives", c_int),
        ("taylorseer_skip_interval", c_int),
        ("scm_mask", c_char_p),
        ("scm_policy_dynamic", c_bool),
        ("spectrum_w", c_float),
        ("spectrum_m", c_int),
        ("spectrum_lam", c_float),
        ("spectrum_window_size", c_int),
        ("spectrum_flex_window", c_float),
        ("spectrum_warmup_steps", c_int),
        ("spectrum_stop_percent", c_float),
    ]


class sd_lora_t(Structure):
    _fields_ = [("is_high_noise", c_bool), ("multiplier", c_float), ("path", c_char_p)]


class sd_hires_params_t(Structure):
    _fields_ = [
        ("enabled", c_bool),
        ("upscaler", c_enum),
        ("model_path", c_char_p),
        ("scale", c_float),
        ("target_width", c_int),
        ("target_height", c_int),
        ("steps", c_int),
        ("denoising_strength", c_float),
        ("upscale_tile_size", c_int),
    ]


class sd_img_gen_params_t(Structure):
    _fields_ = [
        ("loras", POINTER(sd_lora_t)),
        ("lora_count", c_uint32),
        ("prompt", c_char_p),
        ("negative_prompt", c_char_p),
        ("clip_skip", c_int),
        ("init_image", sd_image_t),
        ("ref_images", POINTER(sd_image_t)),
        ("ref_images_count", c_int),
        ("auto_resize_ref_image", c_bool),
        ("increase_ref_index", c_bool),
        ("mask_image", sd_image_t),
        ("width", c_int),
        ("height", c_int),
        ("sample_params", sd_sample_params_t),
        ("strength", c_float),
        ("seed", c_int64),
        ("batch_count", c_int),
        ("control_image", sd_image_t),
        ("control_strength", c_float),
        ("pm_params", sd_pm_params_t),
        ("vae_tiling_params", sd_tiling_params_t),
        ("cache", sd_cache_params_t),
        ("hires", sd_hires_params_t),
    ]


class sd_vid_gen_params_t(Structure):
    _fields_ = [
        ("loras", POINTER(sd_lora_t)),
        ("lora_count", c_uint32),
        ("prompt", c_char_p),
        ("negative_prompt", c_char_p),
        ("clip_skip", c_int),
        ("init_image", sd_image_t),
        ("end_image", sd_image_t),
        ("control_frames", POINTER(sd_image_t)),
        ("control_frames_size", c_int),
        ("width", c_int),
        ("height", c_int),
        ("sample_params", sd_sample_params_t),
        ("high_noise_sample_params", sd_sample_params_t),
        ("moe_boundary", c_float),
        ("strength", c_float),
        ("seed", c_int64),
        ("video_frames", c_int),
        ("vace_strength", c_float),
        ("vae_tiling_params", sd_tiling_params_t),
        ("cache", sd_cache_params_t),
    ]


#: Every struct of the header with its C typedef name (for the ABI test).
STRUCTS: dict[str, type[Structure]] = {
    "sd_tiling_params_t": sd_tiling_params_t,
    "sd_embedding_t": sd_embedding_t,
    "sd_ctx_params_t": sd_ctx_params_t,
    "sd_image_t": sd_image_t,
    "sd_slg_params_t": sd_slg_params_t,
    "sd_guidance_params_t": sd_guidance_params_t,
    "sd_sample_params_t": sd_sample_params_t,
    "sd_pm_params_t": sd_pm_params_t,
    "sd_cache_params_t": sd_cache_params_t,
    "sd_lora_t": sd_lora_t,
    "sd_hires_params_t": sd_hires_params_t,
    "sd_img_gen_params_t": sd_img_gen_params_t,
    "sd_vid_gen_params_t": sd_vid_gen_params_t,
}

# --------------------------------------------------------------------------- callbacks

sd_ctx_p = c_void_p  # opaque sd_ctx_t*
upscaler_ctx_p = c_void_p  # opaque upscaler_ctx_t*

sd_log_cb_t = CFUNCTYPE(None, c_enum, c_char_p, c_void_p)
sd_progress_cb_t = CFUNCTYPE(None, c_int, c_int, c_float, c_void_p)
sd_preview_cb_t = CFUNCTYPE(None, c_int, c_int, POINTER(sd_image_t), c_bool, c_void_p)

# --------------------------------------------------------------------------- functions

#: name -> (restype, argtypes).  Functions returning malloc'd ``char*`` use c_void_p so the
#: caller can free the pointer (see :func:`take_string`).
FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "sd_set_log_callback": (None, [sd_log_cb_t, c_void_p]),
    "sd_set_progress_callback": (None, [sd_progress_cb_t, c_void_p]),
    "sd_set_preview_callback": (None, [sd_preview_cb_t, c_enum, c_int, c_bool, c_bool, c_void_p]),
    "sd_get_num_physical_cores": (c_int32, []),
    "sd_get_system_info": (c_char_p, []),
    "sd_ctx_supports_image_generation": (c_bool, [sd_ctx_p]),
    "sd_ctx_supports_video_generation": (c_bool, [sd_ctx_p]),
    "sd_type_name": (c_char_p, [c_enum]),
    "str_to_sd_type": (c_enum, [c_char_p]),
    "sd_rng_type_name": (c_char_p, [c_enum]),
    "str_to_rng_type": (c_enum, [c_char_p]),
    "sd_sample_method_name": (c_char_p, [c_enum]),
    "str_to_sample_method": (c_enum, [c_char_p]),
    "sd_scheduler_name": (c_char_p, [c_enum]),
    "str_to_scheduler": (c_enum, [c_char_p]),
    "sd_prediction_name": (c_char_p, [c_enum]),
    "str_to_prediction": (c_enum, [c_char_p]),
    "sd_preview_name": (c_char_p, [c_enum]),
    "str_to_preview": (c_enum, [c_char_p]),
    "sd_lora_apply_mode_name": (c_char_p, [c_enum]),
    "str_to_lora_apply_mode": (c_enum, [c_char_p]),
    "sd_hires_upscaler_name": (c_char_p, [c_enum]),
    "str_to_sd_hires_upscaler": (c_enum, [c_char_p]),
    "sd_cache_params_init": (None, [POINTER(sd_cache_params_t)]),
    "sd_hires_params_init": (None, [POINTER(sd_hires_params_t)]),
    "sd_ctx_params_init": (None, [POINTER(sd_ctx_params_t)]),
    "sd_ctx_params_to_str": (c_void_p, [POINTER(sd_ctx_params_t)]),
    "new_sd_ctx": (sd_ctx_p, [POINTER(sd_ctx_params_t)]),
    "free_sd_ctx": (None, [sd_ctx_p]),
    "sd_sample_params_init": (None, [POINTER(sd_sample_params_t)]),
    "sd_sample_params_to_str": (c_void_p, [POINTER(sd_sample_params_t)]),
    "sd_get_default_sample_method": (c_enum, [sd_ctx_p]),
    "sd_get_default_scheduler": (c_enum, [sd_ctx_p, c_enum]),
    "sd_img_gen_params_init": (None, [POINTER(sd_img_gen_params_t)]),
    "sd_img_gen_params_to_str": (c_void_p, [POINTER(sd_img_gen_params_t)]),
    "generate_image": (POINTER(sd_image_t), [sd_ctx_p, POINTER(sd_img_gen_params_t)]),
    "sd_vid_gen_params_init": (None, [POINTER(sd_vid_gen_params_t)]),
    "generate_video": (POINTER(sd_image_t), [sd_ctx_p, POINTER(sd_vid_gen_params_t), POINTER(c_int)]),
    "new_upscaler_ctx": (upscaler_ctx_p, [c_char_p, c_bool, c_bool, c_int, c_int]),
    "free_upscaler_ctx": (None, [upscaler_ctx_p]),
    "upscale": (sd_image_t, [upscaler_ctx_p, sd_image_t, c_uint32]),
    "get_upscale_factor": (c_int, [upscaler_ctx_p]),
    "convert": (c_bool, [c_char_p, c_char_p, c_char_p, c_enum, c_char_p, c_bool]),
    "preprocess_canny": (c_bool, [sd_image_t, c_float, c_float, c_float, c_float, c_bool]),
    "sd_commit": (c_char_p, []),
    "sd_version": (c_char_p, []),
}

#: Enum -> (name function, parse function); enums without converters are absent.
CONVERTERS: dict[type[_CEnum], tuple[str, str]] = {
    SDType: ("sd_type_name", "str_to_sd_type"),
    RNGType: ("sd_rng_type_name", "str_to_rng_type"),
    SampleMethod: ("sd_sample_method_name", "str_to_sample_method"),
    Scheduler: ("sd_scheduler_name", "str_to_scheduler"),
    Prediction: ("sd_prediction_name", "str_to_prediction"),
    PreviewMode: ("sd_preview_name", "str_to_preview"),
    LoraApplyMode: ("sd_lora_apply_mode_name", "str_to_lora_apply_mode"),
    HiresUpscaler: ("sd_hires_upscaler_name", "str_to_sd_hires_upscaler"),
}

# --------------------------------------------------------------------------- loading

_LIB_NAMES = {
    "linux": "libstable-diffusion.so",
    "darwin": "libstable-diffusion.dylib",
    "win32": "stable-diffusion.dll",
}


def library_filename() -> str:
    return _LIB_NAMES.get(sys.platform, "libstable-diffusion.so")


def _site_dirs() -> list[Path]:
    dirs: list[Path] = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.append(Path(p))
    for p in sys.path:
        if p and p.endswith("site-packages"):
            dirs.append(Path(p))
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (``$GOUACHE_LIBRARY`` overrides all)."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return [Path(override)]
    name = library_filename()
    found: list[Path] = []
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("stable_diffusion_cpp")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            found.append(Path(loc) / "lib" / name)
    for site in _site_dirs():
        found.append(site / "stable_diffusion_cpp" / "lib" / name)
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def header_candidates() -> list[Path]:
    """Where the installed ``stable-diffusion.h`` of the carrier package may be."""
    out: list[Path] = []
    prefixes = [Path(sys.prefix), Path(sys.base_prefix)]
    for site in _site_dirs():
        out.append(site / "include" / "stable-diffusion.h")
    for prefix in prefixes:
        out.append(prefix / "include" / "stable-diffusion.h")
    for lib_path in candidate_paths():
        out.append(lib_path.parent.parent / "include" / "stable-diffusion.h")
        out.append(lib_path.parent.parent.parent / "include" / "stable-diffusion.h")
    unique: list[Path] = []
    for p in out:
        if p not in unique:
            unique.append(p)
    return unique


def _declare(cdll: ctypes.CDLL) -> None:
    for fname, (restype, argtypes) in FUNCTIONS.items():
        fn = getattr(cdll, fname)
        fn.restype = restype
        fn.argtypes = argtypes


@functools.lru_cache(maxsize=None)
def lib() -> ctypes.CDLL:
    """Load (once) and return the declared engine library.

    Raises :class:`~gouache.LibraryNotFoundError` naming every path tried.
    """
    tried: list[str] = []
    for path in candidate_paths():
        if not path.is_file():
            tried.append(f"{path} (not found)")
            continue
        try:
            cdll = ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_LOCAL", 0))
        except OSError as exc:
            tried.append(f"{path} (could not be loaded: {exc})")
            continue
        try:
            _declare(cdll)
        except AttributeError as exc:
            tried.append(f"{path} (missing symbol, wrong library version? {exc})")
            continue
        cdll._gouache_path = str(path)  # type: ignore[attr-defined]
        return cdll
    raise LibraryNotFoundError(
        "could not load the stable-diffusion.cpp library; tried:\n  "
        + "\n  ".join(tried or ["(no candidate paths)"])
        + f"\nFix: `pip install {CARRIER_PACKAGE}=={CARRIER_VERSION}` (it compiles the library),"
        f" or set {LIBRARY_ENV}=/path/to/{library_filename()} (e.g. a CUDA or Vulkan build).",
        tried=tried,
    )


@functools.lru_cache(maxsize=None)
def libc() -> ctypes.CDLL:
    """The C runtime whose ``free`` releases what the engine ``malloc``s."""
    if sys.platform == "win32":  # pragma: no cover - not supported by the carrier wheel
        crt = ctypes.cdll.msvcrt
    else:
        crt = ctypes.CDLL(None)
    crt.free.argtypes = [c_void_p]
    crt.free.restype = None
    return crt


def take_string(ptr: int | None) -> str:
    """Decode a ``char*`` the engine malloc'd, then free it (exactly once)."""
    if not ptr:
        return ""
    try:
        return decode(ctypes.string_at(ptr))
    finally:
        libc().free(ptr)


def free(ptr: int | ctypes._Pointer | None) -> None:  # type: ignore[name-defined]
    """``free()`` memory the engine allocated."""
    if ptr is None:
        return
    address = ctypes.cast(ptr, c_void_p).value
    if address:
        libc().free(address)
