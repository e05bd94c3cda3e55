"""The engine's C enums as ``IntEnum`` classes that parse and print the engine's own names.

Member values mirror ``stable-diffusion.h`` (checked by ``tests/test_abi.py``); the engine's
spelling of a value (``"euler_a"``, ``"q8_0"``) comes from its ``*_name`` converter, and
parsing goes through its ``str_to_*`` converter, so gouache never keeps a second copy of
the engine's names.
"""

from __future__ import annotations

import enum

from ..._errors import InvalidInputError
from .text import decode, encode


class _CEnum(enum.IntEnum):
    """Base of the engine's enums; :data:`C_SPELLINGS` maps each class to its C names."""

    @classmethod
    def c_spelling(cls) -> tuple[str, str, str, str]:
        """``(C type, member prefix, member suffix, count sentinel)`` of this enum in the header."""
        return C_SPELLINGS[cls]

    @classmethod
    def c_name(cls, member: _CEnum) -> str:
        _, prefix, suffix, _ = cls.c_spelling()
        return f"{prefix}{member.name}{suffix}"

    @property
    def engine_name(self) -> str:
        """The engine's own spelling of this value (e.g. ``"euler_a"``, ``"q8_0"``)."""
        names = CONVERTERS.get(type(self))
        if names is None:
            return self.name.lower()
        return decode(getattr(_lib(), names[0])(int(self)))

    @classmethod
    def names(cls) -> list[str]:
        """Every accepted engine spelling, in enum order."""
        return [m.engine_name for m in cls]

    @classmethod
    def parse(cls, value: str | int | _CEnum):
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
                raw = getattr(_lib(), names[1])(encode(text))
                if raw in cls._value2member_map_:
                    return cls(raw)
            for member in cls:
                if text.lower() in (member.name.lower(), member.engine_name.lower()):
                    return member
        raise InvalidInputError(f"unknown {cls.__name__} {value!r}; allowed: {', '.join(cls.names())}")


def _lib():
    from ..library import lib  # the converters live in the loaded library

    return lib()


class RNGType(_CEnum):
    """Random number generator for the initial noise (CUDA_RNG matches most web UIs, CPU_RNG matches ComfyUI)."""

    STD_DEFAULT = 0
    CUDA = 1
    CPU = 2


class SampleMethod(_CEnum):
    """Sampler; the engine's names are gouache's sampler vocabulary (``gouache._vocabulary.SAMPLERS``)."""

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


class Scheduler(_CEnum):
    """Sigma schedule; the engine's names are gouache's vocabulary (``gouache._vocabulary.SCHEDULERS``)."""

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


class Prediction(_CEnum):
    """What the model predicts (eps, v, edm_v, flow, flux_flow, flux2_flow); normally detected from the file."""

    EPS = 0
    V = 1
    EDM_V = 2
    FLOW = 3
    FLUX_FLOW = 4
    FLUX2_FLOW = 5


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


class LogLevel(_CEnum):
    """Level of an engine log line (mapped onto ``logging`` levels on the ``gouache.engine`` logger)."""

    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3


class PreviewMode(_CEnum):
    """How previews are decoded: none, proj (fast latent projection), tae (tiny autoencoder), vae (full VAE)."""

    NONE = 0
    PROJ = 1
    TAE = 2
    VAE = 3


class LoraApplyMode(_CEnum):
    """When LoRAs are applied: auto, immediately (merged into weights), at_runtime (kept separate)."""

    AUTO = 0
    IMMEDIATELY = 1
    AT_RUNTIME = 2


class CacheMode(_CEnum):
    """Step/feature cache: disabled, easycache, ucache, dbcache, taylorseer, cache_dit, spectrum."""

    DISABLED = 0
    EASYCACHE = 1
    UCACHE = 2
    DBCACHE = 3
    TAYLORSEER = 4
    CACHE_DIT = 5
    SPECTRUM = 6


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

#: Enum -> (C type, member prefix, member suffix, ``*_COUNT`` sentinel or "").
C_SPELLINGS: dict[type[_CEnum], tuple[str, str, str, str]] = {
    RNGType: ("enum rng_type_t", "", "_RNG", "RNG_TYPE_COUNT"),
    SampleMethod: ("enum sample_method_t", "", "_SAMPLE_METHOD", "SAMPLE_METHOD_COUNT"),
    Scheduler: ("enum scheduler_t", "", "_SCHEDULER", "SCHEDULER_COUNT"),
    Prediction: ("enum prediction_t", "", "_PRED", "PREDICTION_COUNT"),
    SDType: ("enum sd_type_t", "SD_TYPE_", "", "SD_TYPE_COUNT"),
    LogLevel: ("enum sd_log_level_t", "SD_LOG_", "", ""),
    PreviewMode: ("enum preview_t", "PREVIEW_", "", "PREVIEW_COUNT"),
    LoraApplyMode: ("enum lora_apply_mode_t", "LORA_APPLY_", "", "LORA_APPLY_MODE_COUNT"),
    CacheMode: ("enum sd_cache_mode_t", "SD_CACHE_", "", ""),
    HiresUpscaler: ("enum sd_hires_upscaler_t", "SD_HIRES_UPSCALER_", "", "SD_HIRES_UPSCALER_COUNT"),
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
