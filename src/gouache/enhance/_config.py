"""EnhanceConfig: every setting of an enhancement run, with working defaults, presets and
environment overrides.

Where a field's value comes from, first match wins: the value passed to the constructor
(or assigned later) > the environment variable ``GOUACHE_ENHANCE_<FIELD>`` (for
``depth_model``: ``GOUACHE_DEPTH_MODEL``), read when the config is created > the preset's
value (``for_t4_gpu`` ...) > the class default.  Model fields hold a file path or a
catalog name; names are resolved to files when the models are loaded
(:mod:`gouache.enhance._models`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from ._gouache import parse_device

PathLike = str | Path

ENV_PREFIX = "GOUACHE_ENHANCE_"
#: Fields whose environment variable is not ``GOUACHE_ENHANCE_<FIELD>``.
ENV_NAMES = {"depth_model": "GOUACHE_DEPTH_MODEL"}

DEFAULT_MODEL = "sdxl-lightning-4step"
#: ``controlnet="auto"``: the depth ControlNet of the model's family (see _models.py).
AUTO = "auto"
OUTPUT_SIZES = ("input", "working")
COLOR_MATCHES = (None, "lab_meanstd", "histogram")
ENGINES = ("auto", "sdcpp", "torch")


def denoising_steps(steps: int, strength: float) -> int:
    """Total scheduler steps so that ``int(total * strength) >= steps``: img2img at strength s
    runs only ``int(total * s)`` denoising steps, so 2 steps at strength 0.3 must schedule 7,
    never 0.  ``steps`` is the number of denoising steps actually run."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be an integer >= 1; got {steps!r}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
        raise InvalidInputError(f"strength must be in (0, 1]; got {strength!r}")
    total = max(steps, math.ceil(steps / strength - 1e-9))
    while int(total * strength) < steps:
        total += 1
    return total


@dataclasses.dataclass(kw_only=True, eq=True)
class EnhanceConfig:
    """Settings of :class:`EnhanceService`; every field can be set, and is checked when used.

    Models (a file path, or a catalog name fetched on first use; ``gouache pull NAME``):

    * ``model`` (``GOUACHE_ENHANCE_MODEL``): SDXL-Lightning 4-step by default, or any
      SDXL/SD1.x checkpoint the engines load; ``loras``: e.g. the Lightning LoRA on base
      SDXL, as ``((path, weight), ...)``; ``vae``, ``taesd``: optional replacements.
    * ``use_controlnet`` (README name) and ``controlnet`` (``GOUACHE_ENHANCE_CONTROLNET``):
      a depth ControlNet; ``"auto"`` picks the catalog's depth ControlNet of the model's
      family; ``controlnet_scale``, ``control_guidance_start``/``end`` (torch engine).
    * ``auto_depth`` and ``depth_model`` (``GOUACHE_DEPTH_MODEL``): estimate depth for views
      given without one; ``"MiDaS_small"``/``"DPT_Large"`` (Glimpse3D's names), a family
      name or an ``.onnx`` path (see :class:`~gouache.enhance.depth.DepthEstimator`).

    Running: ``engine`` ("auto", "sdcpp", "torch"); ``device`` ("auto", "cpu", "cuda",
    "cuda:N": the torch engine's device and the depth model's); ``lightning_steps``:
    denoising steps actually run (the schedule is stretched for img2img, see
    :func:`denoising_steps`); ``strength``, ``cfg_scale``, ``sampler``, ``scheduler``;
    ``seed``: the same for every view of a batch (consistency across views);
    ``optimize_memory``: use ``memory_preset`` (``None``: chosen from the GPU and RAM,
    see :class:`~gouache.enhance.memory_utils.MemoryConfig`); False: no memory-saving
    measures; ``threads``.

    Images: ``working_size`` (long side of the canvas the model sees, multiple of 64);
    ``output_size``: "input" (restore exactly) or "working"; ``color_match``: None,
    "lab_meanstd" or "histogram"; ``prompt_template``, ``templates_file``,
    ``default_subject``: the prompt when none is given (:class:`PromptBuilder`).
    """

    model: PathLike = DEFAULT_MODEL
    use_controlnet: bool = True
    controlnet: PathLike | None = AUTO
    vae: PathLike | None = None
    taesd: PathLike | None = None
    loras: tuple[tuple[PathLike, float], ...] = ()
    engine: str = "auto"
    device: str = "auto"
    lightning_steps: int = 4
    strength: float = 0.5
    cfg_scale: float = 1.0
    sampler: str | None = "euler"
    scheduler: str | None = "sgm_uniform"
    controlnet_scale: float = 0.5
    control_guidance_start: float = 0.0
    control_guidance_end: float = 1.0
    prompt_template: str = "default"
    templates_file: PathLike | None = None
    default_subject: str = "an object"
    auto_depth: bool = True
    depth_model: PathLike | None = "MiDaS_small"
    seed: int = 42
    optimize_memory: bool = True
    memory_preset: str | None = None
    working_size: int = 1024
    output_size: str = "input"
    color_match: str | None = "lab_meanstd"
    threads: int | str = "auto"

    def __new__(cls, *args: Any, **kwargs: Any) -> EnhanceConfig:
        self = super().__new__(cls)
        object.__setattr__(self, "_explicit", frozenset(kwargs))
        return self

    def __post_init__(self) -> None:
        from_env = set()
        for name, value in environment_values().items():
            if name not in self._explicit:
                setattr(self, name, value)
                from_env.add(name)
        object.__setattr__(self, "_from_env", frozenset(from_env))

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def _preset(cls, values: dict[str, Any], overrides: dict[str, Any]) -> EnhanceConfig:
        config = cls(**overrides)
        for name, value in values.items():
            if name not in overrides and name not in config._from_env:
                setattr(config, name, value)
        return config

    @classmethod
    def for_t4_gpu(cls, **overrides: Any) -> EnhanceConfig:
        """16 GB T4 (Colab/Kaggle): 4 Lightning steps, depth ControlNet, memory optimisation
        (``t4_balanced``), MiDaS-small-class depth model."""
        return cls._preset(
            {
                "lightning_steps": 4,
                "use_controlnet": True,
                "optimize_memory": True,
                "memory_preset": "t4_balanced",
                "depth_model": "MiDaS_small",
                "strength": 0.5,
                "controlnet_scale": 0.5,
            },
            overrides,
        )

    @classmethod
    def for_quality(cls, **overrides: Any) -> EnhanceConfig:
        """Quality first: strength 0.65 (keeps more of the original), a DPT-Large-class depth
        model, ControlNet scale 0.6."""
        return cls._preset(
            {
                "lightning_steps": 4,
                "use_controlnet": True,
                "strength": 0.65,
                "controlnet_scale": 0.6,
                "depth_model": "DPT_Large",
                "color_match": "lab_meanstd",
            },
            overrides,
        )

    @classmethod
    def for_speed(cls, **overrides: Any) -> EnhanceConfig:
        """Speed first: 2 Lightning steps at strength 0.5, MiDaS-small-class depth model."""
        return cls._preset(
            {
                "lightning_steps": 2,
                "use_controlnet": True,
                "strength": 0.5,
                "controlnet_scale": 0.5,
                "depth_model": "MiDaS_small",
                "memory_preset": "t4_speed",
            },
            overrides,
        )

    @classmethod
    def for_cpu(cls, **overrides: Any) -> EnhanceConfig:
        """No GPU (gouache's own preset): 512 working size, 2 steps, the CPU memory preset."""
        return cls._preset(
            {
                "lightning_steps": 2,
                "strength": 0.5,
                "working_size": 512,
                "memory_preset": "cpu",
                "depth_model": "MiDaS_small",
                "device": "cpu",
            },
            overrides,
        )

    # -- checks --------------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """The same as ``lightning_steps`` (gouache 0.1 name)."""
        return self.lightning_steps

    def memory_preset_name(self) -> str:
        """The memory preset in effect: ``memory_preset``, or "auto" (optimisation on) /
        "none" (off) when it is None."""
        if self.memory_preset is None:
            return "auto" if self.optimize_memory else "none"
        return self.memory_preset

    def check(self) -> None:
        """Raise :class:`InvalidInputError` naming the first field that is not valid."""
        _check_path_or_name("model", self.model, optional=False)
        for name in ("controlnet", "vae", "taesd", "depth_model", "templates_file"):
            _check_path_or_name(name, getattr(self, name), optional=True)
        for name in ("use_controlnet", "auto_depth", "optimize_memory"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"EnhanceConfig.{name} must be True or False; got {getattr(self, name)!r}")
        if self.use_controlnet and self.controlnet is None:
            raise InvalidInputError(
                "EnhanceConfig.use_controlnet is True but controlnet is None: give a depth"
                " ControlNet (path or catalog name, or 'auto') or set use_controlnet=False"
            )
        _check_choice("engine", self.engine, ENGINES)
        parse_device(self.device)
        denoising_steps(self.lightning_steps, self.strength)
        _check_number("cfg_scale", self.cfg_scale, 0.0, 30.0)
        _check_number("controlnet_scale", self.controlnet_scale, 0.0, 10.0)
        _check_number("control_guidance_start", self.control_guidance_start, 0.0, 1.0)
        _check_number("control_guidance_end", self.control_guidance_end, 0.0, 1.0)
        if not self.control_guidance_start < self.control_guidance_end:
            raise InvalidInputError(
                "control guidance must satisfy 0 <= start < end <= 1; got"
                f" {self.control_guidance_start}, {self.control_guidance_end}"
            )
        if (
            isinstance(self.working_size, bool)
            or not isinstance(self.working_size, int)
            or self.working_size < 64
            or self.working_size % 64
        ):
            raise InvalidInputError(
                f"EnhanceConfig.working_size must be a multiple of 64 >= 64; got {self.working_size!r}"
            )
        _check_choice("output_size", self.output_size, OUTPUT_SIZES)
        _check_choice("color_match", self.color_match, COLOR_MATCHES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"EnhanceConfig.seed must be an integer >= 0; got {self.seed!r}")
        if not (
            self.threads == "auto"
            or (isinstance(self.threads, int) and not isinstance(self.threads, bool) and self.threads >= 1)
        ):
            raise InvalidInputError(f"EnhanceConfig.threads must be 'auto' or an integer >= 1; got {self.threads!r}")
        _check_loras(self.loras)
        for name in ("prompt_template", "default_subject"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise InvalidInputError(f"EnhanceConfig.{name} must be a non-empty string; got {getattr(self, name)!r}")
        preset = self.memory_preset
        if preset is not None and not isinstance(preset, str):
            raise InvalidInputError(f"EnhanceConfig.memory_preset must be a preset name or None; got {preset!r}")
        if not self.optimize_memory and preset not in (None, "none"):
            raise InvalidInputError(
                f"EnhanceConfig.optimize_memory is False but memory_preset is {preset!r};"
                " set memory_preset=None (or 'none'), or optimize_memory=True"
            )

    def key(self) -> tuple[Any, ...]:
        """A hashable snapshot of every field (configs are mutable, so not hashable)."""
        return tuple(_hashable(getattr(self, f.name)) for f in dataclasses.fields(self))


# -- environment -------------------------------------------------------------------------------


def env_name(field: str) -> str:
    return ENV_NAMES.get(field, ENV_PREFIX + field.upper())


def environment_values() -> dict[str, Any]:
    """The fields set by ``GOUACHE_ENHANCE_*`` / ``GOUACHE_DEPTH_MODEL``, parsed; an unknown
    ``GOUACHE_ENHANCE_*`` name or a value of the wrong type is an error naming it."""
    fields = {f.name: f for f in dataclasses.fields(EnhanceConfig)}
    known = {env_name(name): name for name in fields}
    out: dict[str, Any] = {}
    for var, text in os.environ.items():
        if var in known:
            out[known[var]] = _parse(var, text, fields[known[var]])
        elif var.startswith(ENV_PREFIX):
            hint = " (the depth model's variable is GOUACHE_DEPTH_MODEL)" if var == ENV_PREFIX + "DEPTH_MODEL" else ""
            raise InvalidInputError(f"unknown environment variable {var}{hint}; known: {', '.join(sorted(known))}")
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(var: str, text: str, field: dataclasses.Field) -> Any:
    kind = str(field.type)
    raw = text.strip()
    optional = "None" in kind
    if optional and raw.lower() in ("", "none"):
        return None
    try:
        if kind == "bool":
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError("expected 1/0, true/false, yes/no or on/off")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "int | str":
            return raw if raw == "auto" else int(raw)
        if kind.startswith("tuple"):
            data = json.loads(raw)
            return tuple((str(p), float(w)) for p, w in data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"environment variable {var}={text!r} is not a valid {field.name} ({kind}): {exc}"
        ) from None
    return raw


# -- field checks -------------------------------------------------------------------------------


def _check_path_or_name(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        allowed = "a file path, a catalog name" + (" or None" if optional else "")
        raise InvalidInputError(f"EnhanceConfig.{name} must be {allowed}; got {value!r}")


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"EnhanceConfig.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_number(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidInputError(f"EnhanceConfig.{name} must be a number in [{lo:g}, {hi:g}]; got {value!r}")


def _check_loras(loras: Any) -> None:
    ok = isinstance(loras, (tuple, list)) and all(
        isinstance(e, (tuple, list))
        and len(e) == 2
        and isinstance(e[0], (str, os.PathLike))
        and isinstance(e[1], (int, float))
        and not isinstance(e[1], bool)
        for e in loras
    )
    if not ok:
        raise InvalidInputError(f"EnhanceConfig.loras must be ((path, weight), ...); got {loras!r}")


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
