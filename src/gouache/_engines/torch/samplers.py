"""The torch engine's samplers and schedules: names of the vocabulary -> diffusers schedulers."""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any

from ..._errors import InvalidInputError

#: sampler name -> (diffusers scheduler class, extra config)
SAMPLERS: MappingProxyType[str, tuple[str, dict[str, Any]]] = MappingProxyType(
    {
        "euler": ("EulerDiscreteScheduler", {}),
        "euler_a": ("EulerAncestralDiscreteScheduler", {}),
        "heun": ("HeunDiscreteScheduler", {}),
        "dpm2": ("KDPM2DiscreteScheduler", {}),
        "dpm++2s_a": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        "lcm": ("LCMScheduler", {}),
        "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing", "set_alpha_to_one": False}),
        "tcd": ("TCDScheduler", {}),
    }
)
#: scheduler name -> config overrides
SCHEDULERS: MappingProxyType[str, dict[str, Any]] = MappingProxyType(
    {
        "discrete": {},
        "karras": {"use_karras_sigmas": True},
        "exponential": {"use_exponential_sigmas": True},
        "sgm_uniform": {"timestep_spacing": "trailing"},
        "lcm": {},
    }
)


def make_scheduler(base_config, sampler: str | None, scheduler: str | None):
    """A fresh scheduler for one call, always derived from the model's pristine config."""
    import diffusers

    base = dict(base_config)
    name = sampler or ("euler_a" if not base.get("_class_name", "").startswith("LCM") else "lcm")
    if name not in SAMPLERS:
        raise InvalidInputError(
            f"sampler {name!r} is not supported by the torch engine; supported: {', '.join(SAMPLERS)}"
        )
    cls_name, extra = SAMPLERS[name]
    cls = getattr(diffusers, cls_name)
    overrides = dict(extra)
    sched = scheduler or "discrete"
    if sched not in SCHEDULERS:
        raise InvalidInputError(
            f"scheduler {sched!r} is not supported by the torch engine; supported: {', '.join(SCHEDULERS)}"
        )
    if sched == "lcm" and name != "lcm":
        raise InvalidInputError(
            f"the lcm schedule is the LCM sampler's own on the torch engine; with {name!r} use:"
            f" {', '.join(s for s in SCHEDULERS if s != 'lcm')}"
        )
    params = inspect.signature(cls.__init__).parameters
    for key, value in SCHEDULERS[sched].items():
        if key not in params:
            ok = [s for s, o in SCHEDULERS.items() if all(k in params for k in o)]
            raise InvalidInputError(
                f"sampler {name!r} cannot use scheduler {sched!r} on the torch engine;"
                f" with {name!r} use: {', '.join(ok)}"
            )
        overrides[key] = value
    cfg = {k: v for k, v in base.items() if not k.startswith("_")}
    cfg.update(overrides)
    return cls.from_config(cfg)
