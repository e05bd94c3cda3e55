"""AUTOMATIC1111's API (``/sdapi/v1``), with the request and response JSON its clients send
and expect: images as base64 PNG carrying the ``parameters`` infotext, ``info`` as a JSON
string, ControlNet through ``alwayson_scripts.controlnet.args`` (sd-webui-controlnet's shape).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from .. import _build as B
from .. import _images as I
from .._errors import ApiError, bad
from .._gouache import (
    A1111_SAMPLER_NAMES,
    A1111_SCHEDULE_NAMES,
    parameters_text,
    parse_infotext,
)
from .._jobs import Job, JobState
from .._models import BUILTIN_UPSCALERS, CONTROLNET_MODULES
from .a1111_requests import (
    LATENT_MODES,
    ExtrasRequest,
    Img2ImgRequest,
    PngInfoRequest,
    Txt2ImgRequest,
    _Common,
    _control,
    _hires,
    _order,
)

router = APIRouter(tags=["AUTOMATIC1111"])

#: Response header naming the job behind a request (its details: GET /v1/jobs/{id}).
JOB_HEADER = "X-Gouache-Job"

#: Options ``POST /sdapi/v1/options`` accepts (A1111 names).
OPTION_NAMES = (
    "sd_model_checkpoint",
    "CLIP_stop_at_last_layers",
    "sd_vae",
    "samples_format",
    "live_previews_enable",
    "eta_noise_seed_delta",
)


def _state(request: Request):
    return request.app.state.gouache


@router.post("/sdapi/v1/txt2img")
async def txt2img(req: Txt2ImgRequest, request: Request, response: Response) -> dict[str, Any]:
    """Text to image (A1111 ``StableDiffusionTxt2ImgProcessingAPI``)."""
    state = _state(request)
    control = _control(state, req, req.width, req.height, None)
    job = B.image_job(state, _order(state, req, control=control, hires=_hires(req)), "a1111")
    response.headers[JOB_HEADER] = job.id
    await state.run(job)
    return _response(state, job, req, req.model_dump())


@router.post("/sdapi/v1/img2img")
async def img2img(req: Img2ImgRequest, request: Request, response: Response) -> dict[str, Any]:
    """Image to image and inpainting (A1111 ``StableDiffusionImg2ImgProcessingAPI``)."""
    state = _state(request)
    limits = state.config.limits
    if not req.init_images:
        raise bad("init_images", "at least one image is required")
    images = [I.rgb(I.decode_image(s, f"init_images[{i}]", limits)) for i, s in enumerate(req.init_images)]
    mode = I.resize_mode(req.resize_mode, "resize_mode")
    width = req.width or images[0].width
    height = req.height or images[0].height
    B.check_size(state, width, height)
    images = [I.resize(im, width, height, mode) for im in images]
    mask = None
    seed_for_fill = req.seed if req.seed >= 0 else 0
    if req.mask:
        mask = I.resize(I.mask_l(I.decode_image(req.mask, "mask", limits)), width, height, mode)
        if req.inpainting_fill not in I.INPAINTING_FILL:
            raise bad("inpainting_fill", f"must be one of {I.INPAINTING_FILL}; got {req.inpainting_fill}")
        blur = 4 if req.mask_blur is None else req.mask_blur
        if not 0 <= blur <= 64:
            raise bad("mask_blur", f"must be in [0, 64]; got {blur}")
        prepared = [
            I.prepare_inpaint(
                im,
                mask,
                fill=req.inpainting_fill,
                blur=blur,
                invert=bool(req.inpainting_mask_invert),
                seed=seed_for_fill,
            )
            for im in images
        ]
        images = [p[0] for p in prepared]
        mask = prepared[0][1]
    strength = 0.75 if req.denoising_strength is None else req.denoising_strength
    control = _control(state, req, width, height, images[0])
    order = _order(
        state, req, init_images=images, mask=mask, strength=strength, image_cfg=req.image_cfg_scale, control=control
    )
    order.width, order.height = width, height
    job = B.image_job(state, order, "a1111")
    response.headers[JOB_HEADER] = job.id
    await state.run(job)
    echo = req.model_dump()
    if not req.include_init_images:
        echo["init_images"] = None
        echo["mask"] = None
    return _response(state, job, req, echo)


def _response(state, job: Job, req: _Common, echo: dict[str, Any]) -> dict[str, Any]:
    """A1111's response: ``images`` (base64 PNG with infotext), ``parameters`` (the request),
    ``info`` (a JSON string).  An interrupted job answers with the images finished so far."""
    if job.state == JobState.FAILED:
        B.raise_job_error(job)
    results = job.results
    images = [I.b64_file(r.path) for r in results] if req.send_images else []
    return {"images": images, "parameters": echo, "info": json.dumps(_info(state, job))}


def _info(state, job: Job) -> dict[str, Any]:
    s = job.summary
    params = job.results[0].parameters if job.results else {}
    seeds = [r.seed for r in job.results]
    sampler = params.get("sampler", s.get("sampler"))
    prompt = s.get("prompt", "")
    model = s.get("model")
    n = len(job.results)
    return {
        "prompt": prompt,
        "all_prompts": [prompt] * n,
        "negative_prompt": s.get("negative_prompt", ""),
        "all_negative_prompts": [s.get("negative_prompt", "")] * n,
        "seed": seeds[0] if seeds else s.get("seed"),
        "all_seeds": seeds,
        "subseed": seeds[0] if seeds else -1,
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": params.get("width", s.get("width")),
        "height": params.get("height", s.get("height")),
        "sampler_name": A1111_SAMPLER_NAMES.get(sampler, sampler),
        "cfg_scale": params.get("cfg_scale", s.get("cfg_scale")),
        "steps": params.get("steps", s.get("steps")),
        "batch_size": s.get("count"),
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model,
        "sd_model_hash": state.catalog.short_hash(model) if model in state.catalog.checkpoints else None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": s.get("strength"),
        "extra_generation_params": {"Engine": params.get("engine")},
        "index_of_first_image": 0,
        "infotexts": [r.infotext for r in job.results],
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
        "clip_skip": params.get("clip_skip", 1),
        "is_using_inpainting_conditioning": False,
        "version": f"gouache {_version()}",
        "interrupted": job.state == JobState.CANCELLED,
    }


def _version() -> str:
    from ..._version import __version__

    return __version__


# --------------------------------------------------------------------------- progress, interrupt


@router.get("/sdapi/v1/progress")
async def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    """Progress of the job running now (A1111 ``ProgressResponse``)."""
    state = _state(request)
    running = sorted(state.pool.running(), key=lambda j: j.started or 0)
    queued = state.pool.queued()
    if not running:
        return {
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {
                "skipped": False,
                "interrupted": False,
                "stopping_generation": False,
                "job": "",
                "job_count": queued,
                "job_timestamp": "0",
                "job_no": 0,
                "sampling_step": 0,
                "sampling_steps": 0,
            },
            "current_image": None,
            "textinfo": None,
        }
    job = running[-1]
    with state.store.lock:
        p, eta = job.progress(), job.eta()
        preview = None if skip_current_image or job.preview is None else job.preview_data_url().split(",", 1)[1]
        st = {
            "skipped": job.skip_requested,
            "interrupted": job.cancel_requested,
            "stopping_generation": False,
            "job": f"task({job.id})",
            "job_count": len(running) + queued,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)),
            "job_no": job.unit,
            "sampling_step": job.step,
            "sampling_steps": job.total,
        }
    return {
        "progress": round(p, 4),
        "eta_relative": round(eta or 0.0, 3),
        "state": st,
        "current_image": preview,
        "textinfo": f"{job.phase}: step {job.step}/{job.total}",
    }


@router.post("/sdapi/v1/interrupt")
async def interrupt(request: Request) -> dict[str, Any]:
    """Stop the running job(s); their requests answer with the images finished so far."""
    state = _state(request)
    jobs = state.pool.running()
    for job in jobs:
        state.pool.cancel(job)
    return {"interrupted": [j.id for j in jobs]}


@router.post("/sdapi/v1/skip")
async def skip(request: Request) -> dict[str, Any]:
    """Skip the image being made now; the job goes on with the next one."""
    state = _state(request)
    jobs = state.pool.running()
    for job in jobs:
        state.pool.cancel(job, skip=True)
    return {"skipped": [j.id for j in jobs]}


# --------------------------------------------------------------------------- options and lists


@router.get("/sdapi/v1/options")
async def get_options(request: Request) -> dict[str, Any]:
    state = _state(request)
    default = state.catalog.default
    return {
        "sd_model_checkpoint": state.catalog.title(default) if default else None,
        "sd_checkpoint_hash": state.catalog.short_hash(default) if default else None,
        "sd_checkpoints_limit": state.config.max_loaded_models,
        **state.options,
    }


@router.post("/sdapi/v1/options")
async def set_options(request: Request) -> None:
    """Change options; ``sd_model_checkpoint`` switches the default model and answers once it
    is loaded (after the jobs running on the model it replaces)."""
    state = _state(request)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(422, "body: malformed JSON", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(422, "body: must be a JSON object of option name -> value", field="body")
    unknown = [k for k in body if k not in OPTION_NAMES]
    if unknown:
        raise bad(unknown[0], f"unknown or unsupported option; allowed: {', '.join(OPTION_NAMES)}")
    values = dict(body)
    if "CLIP_stop_at_last_layers" in values:
        v = values["CLIP_stop_at_last_layers"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 12:
            raise bad("CLIP_stop_at_last_layers", f"must be an integer in [1, 12]; got {v!r}")
    if "sd_vae" in values and values["sd_vae"] not in ("Automatic", "None"):
        raise bad(
            "sd_vae",
            f"only 'Automatic' is supported (the server's --vae applies to every model); got {values['sd_vae']!r}",
        )
    if "samples_format" in values and values["samples_format"] != "png":
        raise bad("samples_format", "only 'png' is supported")
    if "live_previews_enable" in values and not isinstance(values["live_previews_enable"], bool):
        raise bad("live_previews_enable", "must be true or false")
    name = None
    if "sd_model_checkpoint" in values:
        name = state.catalog.model_name(values.pop("sd_model_checkpoint"), "sd_model_checkpoint")
    state.options.update({k: v for k, v in values.items()})
    if name is not None:
        job = await state.run(B.load_job(state, name, "a1111"))
        if job.state != JobState.DONE:
            B.raise_job_error(job)
            raise ApiError(409, f"sd_model_checkpoint: loading {name!r} was cancelled", field="sd_model_checkpoint")
        state.catalog.default = name
    return None


@router.get("/sdapi/v1/sd-models")
async def sd_models(request: Request) -> list[dict[str, Any]]:
    cat = _state(request).catalog
    return [
        {
            "title": cat.title(n),
            "model_name": n,
            "hash": cat.short_hash(n),
            "sha256": None,
            "filename": n + spec.main_file.suffix,
            "config": None,
        }
        for n, spec in cat.checkpoints.items()
    ]


@router.get("/sdapi/v1/samplers")
async def samplers(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    return [
        {"name": A1111_SAMPLER_NAMES.get(s, s), "aliases": [s], "options": {}}
        for s in state.catalog.samplers(state.catalog.default)
    ]


@router.get("/sdapi/v1/schedulers")
async def schedulers(request: Request) -> list[dict[str, Any]]:
    state = _state(request)
    out = [{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1, "need_inner_model": False}]
    for s in state.catalog.schedulers(state.catalog.default):
        out.append(
            {
                "name": s,
                "label": A1111_SCHEDULE_NAMES.get(s, s),
                "aliases": None,
                "default_rho": -1,
                "need_inner_model": False,
            }
        )
    return out


@router.get("/sdapi/v1/loras")
async def loras(request: Request) -> list[dict[str, Any]]:
    cat = _state(request).catalog
    return [
        {"name": e.name, "alias": e.name.rsplit("/", 1)[-1], "path": e.filename, "metadata": {}}
        for e in cat.tables["lora"].values()
    ]


@router.get("/sdapi/v1/upscalers")
async def upscalers(request: Request) -> list[dict[str, Any]]:
    cat = _state(request).catalog
    out: list[dict[str, Any]] = [
        {"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": None} for n in BUILTIN_UPSCALERS
    ]
    out += [
        {"name": e.name, "model_name": "ESRGAN", "model_path": e.filename, "model_url": None, "scale": 4}
        for e in cat.tables["upscaler"].values()
    ]
    return out


@router.get("/sdapi/v1/latent-upscale-modes")
async def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": n} for n in LATENT_MODES]


@router.get("/sdapi/v1/sd-vae")
async def sd_vae(request: Request) -> list[dict[str, Any]]:
    cat = _state(request).catalog
    return [{"model_name": e.name, "filename": e.filename} for e in cat.tables["vae"].values()]


@router.get("/sdapi/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    cat = _state(request).catalog
    return {
        "loaded": {},
        "skipped": {
            e.name: {"reason": "embeddings are not loaded by the server"} for e in cat.tables["embedding"].values()
        },
    }


@router.get("/sdapi/v1/scripts")
async def scripts() -> dict[str, list[str]]:
    return {"txt2img": ["controlnet"], "img2img": ["controlnet"]}


@router.get("/sdapi/v1/cmd-flags")
async def cmd_flags(request: Request) -> dict[str, Any]:
    c = _state(request).config
    return {
        "listen": c.host != "127.0.0.1",
        "port": c.port,
        "api": True,
        "nowebui": False,
        "api_auth": bool(c.api_key),
        "cors_allow_origins": ",".join(c.cors) or None,
    }


@router.get("/sdapi/v1/prompt-styles")
@router.get("/sdapi/v1/face-restorers")
@router.get("/sdapi/v1/hypernetworks")
@router.get("/sdapi/v1/realesrgan-models")
async def empty_list() -> list[Any]:
    return []


@router.post("/sdapi/v1/refresh-checkpoints")
@router.post("/sdapi/v1/refresh-loras")
async def refresh(request: Request) -> None:
    await asyncio.to_thread(_state(request).catalog.refresh)
    return None


# --------------------------------------------------------------------------- extras, png-info


@router.post("/sdapi/v1/extra-single-image")
async def extra_single_image(req: ExtrasRequest, request: Request) -> dict[str, Any]:
    """Upscale one image with ESRGAN (a listed upscaler) or Lanczos/Nearest."""
    state = _state(request)
    if req.gfpgan_visibility > 0 or req.codeformer_visibility > 0:
        field = "gfpgan_visibility" if req.gfpgan_visibility > 0 else "codeformer_visibility"
        raise bad(field, "face restoration is not available in gouache; send 0")
    image = I.rgb(I.decode_image(req.image, "image", state.config.limits))
    up1, up2 = req.upscaler_1 or "None", req.upscaler_2 or "None"
    crop = False
    if up1 == "None" and up2 == "None":
        width, height = image.size
    elif req.resize_mode == 1:
        width, height, crop = req.upscaling_resize_w, req.upscaling_resize_h, req.upscaling_crop
    elif req.resize_mode == 0:
        if not 0 < req.upscaling_resize <= 16:
            raise bad("upscaling_resize", f"must be in (0, 16]; got {req.upscaling_resize}")
        width, height = round(image.width * req.upscaling_resize), round(image.height * req.upscaling_resize)
    else:
        raise bad(
            "resize_mode",
            f"must be 0 (scale by upscaling_resize) or 1 (to upscaling_resize_w x h); got {req.resize_mode}",
        )
    job = B.upscale_job(
        state,
        image,
        up1,
        width,
        height,
        crop=crop,
        upscaler_2=up2,
        visibility_2=req.extras_upscaler_2_visibility,
        api="a1111",
        fields=("upscaler_1", "upscaler_2"),
    )
    await state.run(job)
    if job.state != JobState.DONE:
        B.raise_job_error(job)
        raise ApiError(409, "the upscale was cancelled")
    return {"html_info": "", "image": I.b64_file(job.results[0].path)}


@router.post("/sdapi/v1/png-info")
async def png_info(req: PngInfoRequest, request: Request) -> dict[str, Any]:
    """The generation parameters stored in an image (PNG text chunk or EXIF UserComment)."""
    state = _state(request)
    image = I.open_image(I.decode_bytes(req.image, "image"), "image", state.config.limits)
    text = parameters_text(image) or ""
    items = {k: v for k, v in image.info.items() if isinstance(v, str) and k != "parameters"}
    return {"info": text, "items": items, "parameters": parse_infotext(text) if text else {}}


# --------------------------------------------------------------------------- sd-webui-controlnet discovery


@router.get("/controlnet/version")
async def controlnet_version() -> dict[str, int]:
    return {"version": 2}


@router.get("/controlnet/model_list")
async def controlnet_models(request: Request) -> dict[str, list[str]]:
    return {"model_list": _state(request).catalog.names("controlnet")}


@router.get("/controlnet/module_list")
async def controlnet_modules() -> dict[str, Any]:
    return {"module_list": list(CONTROLNET_MODULES), "module_detail": {m: {"sliders": []} for m in CONTROLNET_MODULES}}
