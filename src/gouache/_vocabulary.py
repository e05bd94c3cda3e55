"""The one sampler and scheduler vocabulary: the names the API, the CLI and image metadata use.

Names are stable-diffusion.cpp's spelling (``tests/test_params.py`` checks them against
the engine's own ``sd_sample_method_name`` / ``sd_scheduler_name``); each has the display
name AUTOMATIC1111 writes into image metadata.  Engines accept all of them (sdcpp) or a
subset (torch, which maps each name it runs onto a diffusers scheduler).  The CLI's help
text, the infotext tables and the engines' lists are built from here.
"""

from __future__ import annotations

import dataclasses

__all__ = ["SAMPLERS", "SCHEDULERS", "Term", "names"]


@dataclasses.dataclass(frozen=True)
class Term:
    """One sampler or scheduler: its name, and the name A1111 shows for it."""

    name: str
    a1111: str


#: Samplers in the engine's enum order.  A1111 names are A1111's own where it has the sampler
#: (``modules/sd_samplers_kdiffusion.py``, ``sd_samplers_lcm.py``, ``sd_samplers_timesteps.py``);
#: for samplers A1111 lacks, the name other UIs (Forge, ComfyUI) show, in A1111's spelling style.
SAMPLERS: tuple[Term, ...] = (
    Term("euler", "Euler"),
    Term("euler_a", "Euler a"),
    Term("heun", "Heun"),
    Term("dpm2", "DPM2"),
    Term("dpm++2s_a", "DPM++ 2S a"),
    Term("dpm++2m", "DPM++ 2M"),
    Term("dpm++2mv2", "DPM++ 2M v2"),  # not in A1111
    Term("ipndm", "iPNDM"),  # not in A1111 (ComfyUI: ipndm)
    Term("ipndm_v", "iPNDM v"),  # not in A1111 (ComfyUI: ipndm_v)
    Term("lcm", "LCM"),
    Term("ddim_trailing", "DDIM"),  # A1111's DDIM; the engine's uses trailing timestep spacing
    Term("tcd", "TCD"),  # not in A1111 (Forge: TCD)
    Term("res_multistep", "RES Multistep"),  # not in A1111 (ComfyUI: res_multistep)
    Term("res_2s", "RES 2S"),  # not in A1111 (RES4LYF: res_2s)
    Term("er_sde", "ER SDE"),  # not in A1111 (ComfyUI: er_sde)
)

#: Sigma schedules in the engine's enum order (A1111 "Schedule type", ``modules/sd_schedulers.py``).
#: ``discrete`` is the engine's default schedule: what A1111 calls "Automatic" for the
#: k-diffusion samplers (the model's own discrete sigmas).
SCHEDULERS: tuple[Term, ...] = (
    Term("discrete", "Automatic"),
    Term("karras", "Karras"),
    Term("exponential", "Exponential"),
    Term("ays", "Align Your Steps"),
    Term("gits", "Align Your Steps GITS"),
    Term("sgm_uniform", "SGM Uniform"),
    Term("simple", "Simple"),
    Term("smoothstep", "Smoothstep"),  # not in A1111
    Term("kl_optimal", "KL Optimal"),
    Term("lcm", "LCM"),  # not in A1111 (the schedule the engine pairs with the LCM/TCD samplers)
    Term("bong_tangent", "Bong Tangent"),  # not in A1111 (RES4LYF: bong_tangent)
)


def names(terms: tuple[Term, ...]) -> list[str]:
    """The names of ``terms``, in order."""
    return [t.name for t in terms]
