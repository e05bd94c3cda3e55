"""Per-family generation defaults (size, steps, CFG, sampler) with their sources."""

from __future__ import annotations

import dataclasses

from .._errors import InvalidInputError
from .families import Family

__all__ = ["FamilyDefaults", "defaults_for"]


@dataclasses.dataclass(frozen=True)
class FamilyDefaults:
    """Generation settings that suit a model family.

    ``sampler``/``scheduler`` are engine names, ``None`` meaning the engine's own choice for
    the model.  ``distilled_guidance`` (Flux-style guidance embedding), ``flow_shift`` and
    ``video_frames`` are ``None`` where they do not apply or the engine's default is right.
    """

    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str | None = None
    scheduler: str | None = None
    distilled_guidance: float | None = None
    flow_shift: float | None = None
    video_frames: int | None = None


_D = FamilyDefaults
# Engine defaults (stable-diffusion.cpp sd_sample_params_init / sd_img_gen_params_init:
# 20 steps, CFG 7, 512x512; sd_get_default_sample_method: euler_a for UNets, euler for DiTs).
_ENGINE = _D(512, 512, 20, 7.0)
_SD = _D(512, 512, 20, 7.0, "euler_a")
_SDXL = _D(1024, 1024, 20, 7.0, "euler_a")  # SDXL is trained at 1024^2 (sd.cpp docs/sd.md runs -W 1024 -H 1024)
_WAN = _D(832, 480, 30, 6.0, "euler", flow_shift=3.0, video_frames=33)

# (family, few_step) -> defaults.  Sources:
_DEFAULTS: dict[tuple[Family, bool], FamilyDefaults] = {
    (Family.SD1, False): _SD,
    (Family.SD1_INPAINT, False): _SD,
    (Family.SD1_PIX2PIX, False): _SD,
    # BK-SDM-Tiny-style tiny UNets are ordinary (multi-step) diffusion models.
    (Family.SD1_TINY, False): _SD,
    # SD1.5 LCM / Hyper / Turbo merges: sd.cpp docs/lcm.md (2-8 steps, CFG 1, lcm or euler_a).
    (Family.SD1, True): _D(512, 512, 4, 1.0, "lcm"),
    (Family.SD1_INPAINT, True): _D(512, 512, 4, 1.0, "lcm"),
    # SDXS-512: sd.cpp docs/distilled_sd.md ("--cfg-scale 1 --steps 1 are mandatory").
    (Family.SD1_TINY, True): _D(512, 512, 1, 1.0, "euler_a"),
    (Family.SD2, False): _SD,  # 768x768 for v-prediction models, see defaults_for
    (Family.SD2_INPAINT, False): _SD,
    (Family.SD2_TINY, False): _SD,
    # SD-Turbo (SD2.1 distilled): stabilityai/sd-turbo model card (1 step, guidance 0 = CFG 1 here).
    (Family.SD2, True): _D(512, 512, 1, 1.0, "euler_a"),
    (Family.SD2_TINY, True): _D(512, 512, 1, 1.0, "euler_a"),  # SDXS-512-0.9: docs/distilled_sd.md
    (Family.SDXL, False): _SDXL,
    (Family.SDXL_INPAINT, False): _SDXL,
    (Family.SDXL_PIX2PIX, False): _SDXL,
    (Family.SDXL_DISTILLED, False): _SDXL,
    # SDXL-Lightning model card (4-step: Euler, sgm_uniform, CFG off).  Also fits Turbo/Hyper/DMD2
    # merges at 1024; note the original SDXL-Turbo was trained at 512x512.
    (Family.SDXL, True): _D(1024, 1024, 4, 1.0, "euler", "sgm_uniform"),
    (Family.SDXL_INPAINT, True): _D(1024, 1024, 4, 1.0, "euler", "sgm_uniform"),
    (Family.SDXL_DISTILLED, True): _D(1024, 1024, 4, 1.0, "euler", "sgm_uniform"),
    # SD3/3.5: sd.cpp docs/sd3.md (1024^2, --cfg-scale 4.5, euler); 28 steps: SAI's SD3 model cards.
    (Family.SD3, False): _D(1024, 1024, 28, 4.5, "euler"),
    # SD3.5 Large Turbo model card: 4 steps, guidance 0 (= CFG 1 here).
    (Family.SD3, True): _D(1024, 1024, 4, 1.0, "euler"),
    # Flux.1 dev: sd.cpp docs/flux.md (CFG 1, euler, engine default 20 steps, guidance 3.5).
    (Family.FLUX, False): _D(1024, 1024, 20, 1.0, "euler", distilled_guidance=3.5),
    # Flux.1 schnell: sd.cpp docs/flux.md (--steps 4, CFG 1); schnell has no guidance input.
    (Family.FLUX, True): _D(1024, 1024, 4, 1.0, "euler"),
    # Flux.1 Fill dev model card: guidance 30.
    (Family.FLUX_FILL, False): _D(1024, 1024, 20, 1.0, "euler", distilled_guidance=30.0),
    # Flux.2 dev: sd.cpp docs/flux2.md (CFG 1, euler); guidance 4: FLUX.2-dev model card.
    (Family.FLUX2, False): _D(1024, 1024, 20, 1.0, "euler", distilled_guidance=4.0),
    # Flux.2 klein (distilled): sd.cpp docs/flux2.md (--cfg-scale 1 --steps 4).
    (Family.FLUX2, True): _D(1024, 1024, 4, 1.0, "euler"),
    # Qwen-Image (and -Edit): sd.cpp docs/qwen_image.md, qwen_image_edit.md (1024^2, --cfg-scale 2.5,
    # euler, --flow-shift 3; the docs' runs keep the engine's 20 steps).
    (Family.QWEN_IMAGE, False): _D(1024, 1024, 20, 2.5, "euler", flow_shift=3.0),
    # Z-Image base: sd.cpp docs/z_image.md (--cfg-scale 5; 20 steps, the engine's, as the docs' run).
    (Family.Z_IMAGE, False): _D(1024, 1024, 20, 5.0, "euler"),
    # Z-Image-Turbo: sd.cpp docs/z_image.md (--cfg-scale 1); 8 steps: the Turbo model card (8 NFEs).
    (Family.Z_IMAGE, True): _D(1024, 1024, 8, 1.0, "euler"),
    # Wan2.1 T2V-1.3B: sd.cpp docs/wan.md (832x480, 33 frames, CFG 6, euler, --flow-shift 3);
    # 30 steps sits between the docs' engine default (20) and Wan's reference (50).
    (Family.WAN2_1, False): _WAN,
    # Wan 2.2 A14B: sd.cpp docs/wan.md (CFG 3.5, 10 low-noise + 8 high-noise steps ~ 20, flow shift 3).
    (Family.WAN2_2, False): dataclasses.replace(_WAN, steps=20, cfg_scale=3.5),
    # Wan lightx2v / CausVid / Lightning distillations: 4 steps at CFG 1 (lightx2v model cards).
    (Family.WAN2_1, True): dataclasses.replace(_WAN, steps=4, cfg_scale=1.0),
    (Family.WAN2_2, True): dataclasses.replace(_WAN, steps=4, cfg_scale=1.0),
}

# (family, variant, few_step) -> defaults, where a sub-model differs from its family.
_VARIANT_DEFAULTS: dict[tuple[Family, str, bool], FamilyDefaults] = {
    # stabilityai/stable-diffusion-2(-1) 768-v models are trained at 768x768.
    (Family.SD2, "768-v", False): _D(768, 768, 20, 7.0, "euler_a"),
    # Model cards: SD3 Medium 28 steps CFG 7; SD3.5 Medium 40 steps CFG 4.5; SD3.5 Large 28 steps CFG 3.5.
    (Family.SD3, "sd3_medium", False): _D(1024, 1024, 28, 7.0, "euler"),
    (Family.SD3, "sd3.5_medium", False): _D(1024, 1024, 40, 4.5, "euler"),
    (Family.SD3, "sd3.5_large", False): _D(1024, 1024, 28, 3.5, "euler"),
    # Chroma: sd.cpp docs/chroma.md (CFG 4, euler; no guidance embedding).
    (Family.FLUX, "chroma", False): _D(1024, 1024, 20, 4.0, "euler"),
    # Flux.1 Kontext dev model card: guidance 2.5.
    (Family.FLUX, "kontext", False): _D(1024, 1024, 20, 1.0, "euler", distilled_guidance=2.5),
    # Flux.2 klein base (undistilled): sd.cpp docs/flux2.md (--cfg-scale 4 --steps 20).
    (Family.FLUX2, "klein", False): _D(1024, 1024, 20, 4.0, "euler"),
    # Wan2.2 TI2V-5B: sd.cpp docs/wan.md (CFG 6, flow shift 3, 33 frames).
    (Family.WAN2_2, "ti2v_5b", False): _WAN,
}


def defaults_for(family: Family | str, few_step: bool = False, *, variant: str | None = None) -> FamilyDefaults:
    """Generation defaults for a family (and sub-model ``variant``, see :func:`detect_family`).

    ``few_step`` picks the distilled settings (1-4 steps, CFG 1) where the family has such
    models.  Components and unknown files get the engine's own defaults (512x512, 20 steps,
    CFG 7, engine-chosen sampler).  SD2 is 512x512 unless ``variant="768-v"`` (v-prediction
    is not visible in tensor names, so :func:`inspect` only reports it from a ``v_pred``
    tensor, ``modelspec.prediction_type`` metadata or a ``768-v`` file name).
    """
    try:
        fam = Family(family)
    except ValueError:
        allowed = ", ".join(f.value for f in Family)
        raise InvalidInputError(f"unknown model family {family!r}; allowed: {allowed}") from None
    few = bool(few_step)
    if variant is not None and (fam, variant, few) in _VARIANT_DEFAULTS:
        return _VARIANT_DEFAULTS[(fam, variant, few)]
    return _DEFAULTS.get((fam, few)) or _DEFAULTS.get((fam, False)) or _ENGINE
