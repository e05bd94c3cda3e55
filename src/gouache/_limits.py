"""The one table of numeric limits, and the one check that enforces them.

Every layer checks its numbers against :data:`LIMITS` with :func:`check`, so the Python
API, the low-level parameter objects and the command line accept exactly the same
ranges and word their refusals the same way (the bad value, its name and what is
allowed).  Ranges that the engine itself would not survive (sizes whose tensors
overflow, thread counts it cannot create) are the reason most of these exist.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Any

from ._errors import InvalidInputError

__all__ = ["LIMITS", "MAX_BATCH", "MAX_SEED", "MAX_SIDE", "MAX_STEPS", "Limit", "check"]

#: Largest accepted width/height in pixels (the engine's tensors overflow far beyond this).
MAX_SIDE = 16384
#: Largest accepted number of sampling steps.
MAX_STEPS = 1000
#: Largest accepted batch count in one call.
MAX_BATCH = 1024
#: Random seeds are drawn from [0, MAX_SEED]; any seed up to the engine's int64 is accepted.
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Limit:
    """An allowed range: ``lo <= value <= hi``; ``integer`` values must be ints; ``allow_inf``
    also accepts ``+inf``, which the engine reads as "choose automatically"."""

    lo: float
    hi: float
    integer: bool = False
    allow_inf: bool = False


def _int(lo: int, hi: int) -> Limit:
    return Limit(lo, hi, integer=True)


#: Every numeric limit of gouache, by quantity.
LIMITS: MappingProxyType[str, Limit] = MappingProxyType(
    {
        "side": _int(1, MAX_SIDE),  # width, height
        "video_side": _int(16, MAX_SIDE),  # Wan's VAE and patching need 16 pixels
        "side_or_auto": _int(0, MAX_SIDE),  # hires target size, VAE tile size (0: automatic)
        "tile": _int(1, MAX_SIDE),  # upscaler tiles
        "steps": _int(1, MAX_STEPS),
        "steps_or_auto": _int(0, MAX_STEPS),  # hires steps (0: same as the first pass)
        "batch": _int(1, MAX_BATCH),
        "frames": _int(1, 10000),
        "seed": _int(-(2**63), 2**63 - 1),  # the engine's int64
        "clip_skip": _int(-1, 12),
        "threads": _int(1, 4096),
        "upscale_factor": _int(1, 16),
        "slg_layer": _int(0, 1000),
        "cfg_scale": Limit(0.0, 100.0),
        "image_cfg_scale": Limit(0.0, 100.0, allow_inf=True),
        "guidance": Limit(0.0, 100.0),  # distilled guidance, SLG scale, PhotoMaker style strength
        "fraction": Limit(0.0, 1.0),  # strengths, start/end fractions of the steps, overlaps, thresholds
        "control_strength": Limit(0.0, 10.0),  # ControlNet and VACE strength
        "eta": Limit(0.0, 100.0, allow_inf=True),
        "flow_shift": Limit(0.0, 1000.0, allow_inf=True),
        "lora_weight": Limit(-100.0, 100.0),
        "hires_scale": Limit(0.0, 8.0),
        "sigma": Limit(0.0, math.inf),
        "memory_gb": Limit(0.0, math.inf),
    }
)


def check(name: str, value: Any, limit: str) -> Any:
    """``value`` (an ``int`` or a ``float``) when it lies in ``LIMITS[limit]``, else
    :class:`~gouache.InvalidInputError` naming ``name``, the value and the allowed range."""
    rng = LIMITS[limit]
    if rng.integer:
        lo, hi = int(rng.lo), int(rng.hi)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
        if not lo <= value <= hi:
            raise InvalidInputError(f"{name} must be in [{lo}, {hi}]; got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number in [{rng.lo:g}, {rng.hi:g}]; got {value!r}")
    v = float(value)
    if v == math.inf and rng.allow_inf:
        return v
    if not math.isfinite(v):
        raise InvalidInputError(f"{name} must be a finite number in [{rng.lo:g}, {rng.hi:g}]; got {value!r}")
    if not rng.lo <= v <= rng.hi:
        raise InvalidInputError(f"{name} must be in [{rng.lo:g}, {rng.hi:g}]; got {value!r}")
    return v
