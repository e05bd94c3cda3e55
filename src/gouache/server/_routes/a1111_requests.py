"""AUTOMATIC1111's request bodies (pydantic models with its field names) and their translation
into gouache jobs: sampler and scheduler names, ControlNet units in sd-webui-controlnet's
shape, hires fix, refused options.  The routes are in :mod:`.a1111`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import _build as B
from .. import _images as I
from .._errors import bad
from .._gouache import A1111_SAMPLER_NAMES, A1111_SCHEDULE_NAMES, engine_scheduler_from_a1111, split_a1111_sampler
from .._models import BUILTIN_UPSCALERS, CONTROLNET_MODULES

#: A1111 latent upscale modes (``hr_upscaler``) -> engine hires upscalers.
LATENT_MODES = {
    "Latent": "latent",
    "Latent (nearest)": "latent_nearest",
    "Latent (nearest-exact)": "latent_nearest_exact",
    "Latent (antialiased)": "latent_antialiased",
    "Latent (bicubic)": "latent_bicubic",
    "Latent (bicubic antialiased)": "latent_bicubic_antialiased",
}


# --------------------------------------------------------------------------- request models


class _Common(BaseModel):
    """Fields of A1111's StableDiffusionProcessing API models that gouache reads; other
    fields A1111 clients send (subseed, s_churn, styles ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    eta: float | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None


class Txt2ImgRequest(_Common):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0


class Img2ImgRequest(_Common):
    init_images: list[str] | None = None
    resize_mode: int | str = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur: int | None = None
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    include_init_images: bool = False


class ExtrasRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    image: str
    resize_mode: int = 0
    show_extras_results: bool = True
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str | None = "None"
    upscaler_2: str | None = "None"
    extras_upscaler_2_visibility: float = 0.0
    upscale_first: bool = False


class PngInfoRequest(BaseModel):
    image: str


# --------------------------------------------------------------------------- generation


def _sampler(state, req: _Common) -> tuple[str | None, str | None]:
    """Engine sampler and scheduler from A1111's ``sampler_name`` (display or engine name,
    also old combined names like "DPM++ 2M Karras") and ``scheduler``."""
    name = req.sampler_name or req.sampler_index
    sampler = scheduler = None
    if name:
        key = name.strip().lower()
        engine_names = state.catalog.samplers(None)
        if key in engine_names:
            sampler = key
        else:
            sampler, scheduler = split_a1111_sampler(name)
            if sampler is None:
                allowed = sorted({A1111_SAMPLER_NAMES.get(s, s) for s in engine_names})
                raise bad("sampler_name", f"unknown sampler {name!r}; allowed: {', '.join(allowed)}")
    if req.scheduler and req.scheduler.strip().lower() != "automatic":
        key = req.scheduler.strip().lower()
        engine = key if key in state.catalog.schedulers(None) else engine_scheduler_from_a1111(req.scheduler)
        if engine is None:
            allowed = ["Automatic"] + sorted({A1111_SCHEDULE_NAMES.get(s, s) for s in state.catalog.schedulers(None)})
            raise bad("scheduler", f"unknown scheduler {req.scheduler!r}; allowed: {', '.join(allowed)}")
        scheduler = engine
    return sampler, scheduler


def _refuse_unsupported(req: _Common) -> None:
    if req.restore_faces:
        raise bad("restore_faces", "face restoration is not available in gouache; send false")
    if req.tiling:
        raise bad("tiling", "tiling (seamless textures) is not available per request; send false")
    if req.script_name:
        raise bad(
            "script_name", f"scripts are not available (got {req.script_name!r}); use alwayson_scripts.controlnet"
        )


def _model_and_clip_skip(state, req: _Common) -> tuple[str | None, int]:
    override = req.override_settings or {}
    model = override.get("sd_model_checkpoint")
    clip = override.get("CLIP_stop_at_last_layers", state.options["CLIP_stop_at_last_layers"])
    if isinstance(clip, bool) or not isinstance(clip, int) or not 1 <= clip <= 12:
        raise bad("override_settings.CLIP_stop_at_last_layers", f"must be an integer in [1, 12]; got {clip!r}")
    return model, (-1 if clip == 1 else clip)


def _control(state, req: _Common, width: int | None, height: int | None, init) -> B.Control | None:
    """The enabled sd-webui-controlnet unit of ``alwayson_scripts`` (one at most)."""
    scripts = {str(k).lower(): v for k, v in (req.alwayson_scripts or {}).items()}
    for name, script in scripts.items():
        args = script.get("args") if isinstance(script, dict) else None
        if name != "controlnet" and args:
            raise bad(f"alwayson_scripts.{name}", f"script {name!r} is not available; available: controlnet")
    script = scripts.get("controlnet")
    if not script:
        return None
    if not isinstance(script, dict) or not isinstance(script.get("args", []), list):
        raise bad("alwayson_scripts.controlnet", 'must be {"args": [unit, ...]}')
    if any(not isinstance(u, dict) for u in script.get("args", [])):
        raise bad("alwayson_scripts.controlnet.args", "each unit must be a JSON object")
    units = [u for u in script.get("args", []) if u.get("enabled", True) and str(u.get("model") or "None") != "None"]
    if not units:
        return None
    if len(units) > 1:
        raise bad(
            "alwayson_scripts.controlnet.args",
            f"{len(units)} enabled units; this server runs one ControlNet unit per request",
        )
    u = units[0]
    field = "alwayson_scripts.controlnet.args[0]"
    raw = u.get("image") or u.get("input_image")
    if isinstance(raw, dict):
        raw = raw.get("image")
    if raw:
        image = I.rgb(I.decode_image(raw, f"{field}.image", state.config.limits))
    elif init is not None:
        image = init
    else:
        raise bad(f"{field}.image", "a control image is required")
    module = str(u.get("module") or "none").strip().lower()
    if module not in CONTROLNET_MODULES:
        raise bad(
            f"{field}.module", f"unknown preprocessor {u.get('module')!r}; allowed: {', '.join(CONTROLNET_MODULES)}"
        )
    if width and height:
        image = I.resize(image, width, height, I.resize_mode(u.get("resize_mode", 2), f"{field}.resize_mode"))
    return B.Control(
        model=str(u["model"]),
        image=image,
        preprocess=module,
        strength=u.get("weight", 1.0),
        guidance=(u.get("guidance_start", 0.0), u.get("guidance_end", 1.0)),
        field=f"{field}.model",
    )


_FIELDS = {
    "count": "batch_size",
    "sampler": "sampler_name",
    "model": "override_settings.sd_model_checkpoint",
    "strength": "denoising_strength",
    "loras": "prompt",
    "clip_skip": "override_settings.CLIP_stop_at_last_layers",
}


def _order(
    state, req: _Common, *, init_images=(), mask=None, strength=0.75, image_cfg=None, control=None, hires=None
) -> B.ImageOrder:
    _refuse_unsupported(req)
    sampler, scheduler = _sampler(state, req)
    model, clip_skip = _model_and_clip_skip(state, req)
    for name in ("batch_size", "n_iter"):
        if getattr(req, name) < 1:
            raise bad(name, f"must be >= 1; got {getattr(req, name)}")
    count = req.batch_size * req.n_iter
    if count > state.config.limits.max_batch:
        raise bad(
            "batch_size",
            f"batch_size * n_iter = {count} exceeds the server limit max_batch={state.config.limits.max_batch}",
        )
    return B.ImageOrder(
        prompt=req.prompt,
        model=model,
        negative_prompt=req.negative_prompt,
        width=req.width,
        height=req.height,
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        sampler=sampler,
        scheduler=scheduler,
        seed=req.seed,
        count=count,
        clip_skip=clip_skip,
        init_images=list(init_images),
        strength=strength,
        mask=mask,
        control=control,
        eta=req.eta,
        hires=hires,
        image_cfg_scale=image_cfg,
        previews=bool(state.options.get("live_previews_enable", True)),
        fields=_FIELDS,
    )


def _hires(req: Txt2ImgRequest) -> dict[str, Any] | None:
    if not req.enable_hr:
        return None
    name = req.hr_upscaler or "Latent"
    upscaler = LATENT_MODES.get(name) or BUILTIN_UPSCALERS.get(name) or name
    return {
        "scale": req.hr_scale,
        "upscaler": upscaler,
        "steps": req.hr_second_pass_steps,
        "denoising_strength": 0.7 if req.denoising_strength is None else req.denoising_strength,
        "width": req.hr_resize_x,
        "height": req.hr_resize_y,
        "field": "hr_upscaler",
    }
