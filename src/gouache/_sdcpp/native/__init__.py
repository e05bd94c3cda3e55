"""ctypes declarations of stable-diffusion.cpp's C API: the one place that knows the C ABI.

It declares every enum (:mod:`.enums`), struct, callback type and function
(:mod:`.structs`) of ``stable-diffusion.h`` as shipped in
``stable-diffusion-cpp-python==0.4.7`` (the package is used only as the carrier of the
compiled library; its Python modules are never imported).  Nothing here holds engine
state: locating and loading the library is :mod:`gouache._sdcpp.library`; the callback
dispatcher, ownership and validation live in the modules beside it.

Text crosses the boundary in exactly two functions, :func:`encode` and :func:`decode`
(UTF-8).  The ABI test (``tests/test_abi.py``) compiles a C probe against the installed
header and checks every ``sizeof``/``offsetof`` and enum value declared here.
"""

from .enums import (
    C_SPELLINGS,
    CONVERTERS,
    ENUMS,
    CacheMode,
    HiresUpscaler,
    LogLevel,
    LoraApplyMode,
    Prediction,
    PreviewMode,
    RNGType,
    SampleMethod,
    Scheduler,
    SDType,
)
from .structs import (
    FUNCTIONS,
    STRUCTS,
    c_enum,
    sd_cache_params_t,
    sd_ctx_p,
    sd_ctx_params_t,
    sd_embedding_t,
    sd_guidance_params_t,
    sd_hires_params_t,
    sd_image_t,
    sd_img_gen_params_t,
    sd_log_cb_t,
    sd_lora_t,
    sd_pm_params_t,
    sd_preview_cb_t,
    sd_progress_cb_t,
    sd_sample_params_t,
    sd_slg_params_t,
    sd_tiling_params_t,
    sd_vid_gen_params_t,
    upscaler_ctx_p,
)
from .text import decode, encode

__all__ = [
    "CONVERTERS",
    "C_SPELLINGS",
    "ENUMS",
    "FUNCTIONS",
    "STRUCTS",
    "CacheMode",
    "HiresUpscaler",
    "LogLevel",
    "LoraApplyMode",
    "Prediction",
    "PreviewMode",
    "RNGType",
    "SDType",
    "SampleMethod",
    "Scheduler",
    "c_enum",
    "decode",
    "encode",
    "sd_cache_params_t",
    "sd_ctx_p",
    "sd_ctx_params_t",
    "sd_embedding_t",
    "sd_guidance_params_t",
    "sd_hires_params_t",
    "sd_image_t",
    "sd_img_gen_params_t",
    "sd_log_cb_t",
    "sd_lora_t",
    "sd_pm_params_t",
    "sd_preview_cb_t",
    "sd_progress_cb_t",
    "sd_sample_params_t",
    "sd_slg_params_t",
    "sd_tiling_params_t",
    "sd_vid_gen_params_t",
    "upscaler_ctx_p",
]
