"""gouache's own job API: submit, follow (Server-Sent Events), cancel, download.

Everything ``SDModel.generate``, ``generate_video``, ``upscale`` and ``gouache.enhance`` can do,
as jobs: ``POST /v1/jobs`` answers at once with the job id; ``GET /v1/jobs/{id}`` tells the
state; ``GET /v1/jobs/{id}/events`` streams progress, previews, results and the end;
``POST /v1/jobs/{id}/cancel`` stops it; ``GET /v1/jobs/{id}/results/{index}`` downloads a
result.  Finished jobs are kept for ``result_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import _build as B
from .. import _images as I
from .._errors import ApiError, bad
from .._jobs import Job

router = APIRouter(tags=["jobs"])

#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


def _state(request: Request):
    return request.app.state.gouache


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraIn(_Strict):
    name: str
    weight: float = 1.0


class ControlIn(_Strict):
    """A ControlNet: ``model`` a listed ControlNet name, ``image`` base64; ``preprocess``
    "canny" turns the image into edges first."""

    model: str
    image: str
    preprocess: Literal["none", "canny"] = "none"
    strength: float = 0.9
    start: float = 0.0
    end: float = 1.0


class HiresIn(_Strict):
    scale: float = 2.0
    upscaler: str = "latent"
    steps: int = 0
    denoising_strength: float = 0.7
    width: int = 0
    height: int = 0


class GenerateJob(_Strict):
    """Text to image, image to image (``init_image``), inpainting (``mask``, white = repaint),
    ControlNet, LoRA (listed names; ``<lora:name:w>`` tags in the prompt work too), hires fix.
    Sampler and scheduler are gouache's names (``euler_a``, ``karras``)."""

    kind: Literal["generate"]
    model: str | None = None
    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int = -1
    batch: int = 1
    clip_skip: int = -1
    loras: list[LoraIn] = Field(default_factory=list)
    init_image: str | None = None
    strength: float = 0.75
    mask: str | None = None
    control: ControlIn | None = None
    eta: float | None = None
    image_cfg_scale: float | None = None
    hires: HiresIn | None = None
    previews: bool = True


class VideoJob(_Strict):
    """A video with a Wan model (``frames`` = 4k+1), written as ``format`` (webp, gif, mp4)."""

    kind: Literal["video"]
    model: str | None = None
    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int = -1
    init_image: str | None = None
    end_image: str | None = None
    strength: float = 0.75
    fps: int = 16
    format: str = "webp"


class UpscaleJob(_Strict):
    """Upscale with a listed ESRGAN upscaler (or "Lanczos"/"Nearest"): by ``scale`` or to
    ``width`` x ``height`` (``crop`` keeps the aspect ratio)."""

    kind: Literal["upscale"]
    image: str
    upscaler: str
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    crop: bool = False


class EnhanceJob(_Strict):
    """Enhance a rendered view of a 3D scene (``gouache.enhance``): ``image`` (RGBA keeps its
    alpha), ``depth`` a grayscale depth image (8- or 16-bit PNG) guiding the ``controlnet``,
    ``mask`` where to enhance; settings from ``preset`` unless given."""

    kind: Literal["enhance"]
    model: str | None = None
    controlnet: str | None = None
    image: str
    depth: str | None = None
    mask: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    subject: str | None = None
    preset: Literal["cpu", "speed", "quality", "t4_gpu"] = "cpu"
    steps: int | None = None
    strength: float | None = None
    controlnet_scale: float | None = None
    working_size: int | None = None
    color_match: Literal["lab_meanstd", "histogram", "none"] | None = None
    prompt_template: str | None = None
    seed: int | None = None


JobRequest = Annotated[GenerateJob | VideoJob | UpscaleJob | EnhanceJob, Field(discriminator="kind")]


# --------------------------------------------------------------------------- building


def _image(state, value: str | None, field: str, *, rgb: bool = True):
    if value is None:
        return None
    im = I.decode_image(value, field, state.config.limits)
    return I.rgb(im) if rgb else im


def _generate(state, r: GenerateJob) -> Job:
    init = _image(state, r.init_image, "init_image")
    mask = None if r.mask is None else I.mask_l(_image(state, r.mask, "mask", rgb=False))
    control = None
    if r.control is not None:
        c = r.control
        control = B.Control(
            model=c.model,
            image=_image(state, c.image, "control.image"),
            preprocess=c.preprocess,
            strength=c.strength,
            guidance=(c.start, c.end),
            field="control.model",
        )
    hires = None if r.hires is None else {**r.hires.model_dump(), "field": "hires"}
    order = B.ImageOrder(
        prompt=r.prompt,
        model=r.model,
        negative_prompt=r.negative_prompt,
        width=r.width,
        height=r.height,
        steps=r.steps,
        cfg_scale=r.cfg_scale,
        sampler=r.sampler,
        scheduler=r.scheduler,
        seed=r.seed,
        count=r.batch,
        clip_skip=r.clip_skip,
        loras=[(lora.name, lora.weight) for lora in r.loras],
        init_images=[init] if init is not None else [],
        strength=r.strength,
        mask=mask,
        control=control,
        eta=r.eta,
        image_cfg_scale=r.image_cfg_scale,
        hires=hires,
        previews=r.previews,
        fields={"count": "batch"},
    )
    return B.image_job(state, order, "jobs")


def _video(state, r: VideoJob) -> Job:
    kwargs = {
        k: v
        for k, v in r.model_dump().items()
        if k not in ("kind", "model", "fps", "format", "init_image", "end_image") and v is not None
    }
    kwargs["init_image"] = _image(state, r.init_image, "init_image")
    kwargs["end_image"] = _image(state, r.end_image, "end_image")
    return B.video_job(state, r.model, kwargs, fps=r.fps, fmt=r.format, api="jobs")


def _upscale(state, r: UpscaleJob) -> Job:
    image = _image(state, r.image, "image")
    if r.width is not None or r.height is not None:
        if r.width is None or r.height is None:
            raise bad("width" if r.width is None else "height", "give both width and height, or scale")
        width, height = r.width, r.height
    else:
        scale = 4.0 if r.scale is None else r.scale
        if not 0 < scale <= 16:
            raise bad("scale", f"must be in (0, 16]; got {scale}")
        width, height = round(image.width * scale), round(image.height * scale)
    return B.upscale_job(
        state, image, r.upscaler, width, height, crop=r.crop, api="jobs", fields=("upscaler", "upscaler")
    )


def _enhance(state, r: EnhanceJob) -> Job:
    image = _image(state, r.image, "image", rgb=False)
    depth = _image(state, r.depth, "depth", rgb=False)
    mask = None if r.mask is None else I.mask_l(_image(state, r.mask, "mask", rgb=False))
    config = {
        k: v
        for k, v in (
            ("preset", r.preset),
            ("lightning_steps", r.steps),  # EnhanceConfig's name for the steps actually run
            ("strength", r.strength),
            ("controlnet_scale", r.controlnet_scale),
            ("working_size", r.working_size),
            ("prompt_template", r.prompt_template),
        )
        if v is not None
    }
    if r.color_match is not None:
        config["color_match"] = None if r.color_match == "none" else r.color_match
    call = {"prompt": r.prompt, "negative_prompt": r.negative_prompt, "subject": r.subject, "seed": r.seed}
    return B.enhance_job(
        state,
        r.model,
        r.controlnet,
        image,
        depth=depth,
        mask=mask,
        config=config,
        call={k: v for k, v in call.items() if v is not None},
        api="jobs",
    )


_BUILDERS = {"generate": _generate, "video": _video, "upscale": _upscale, "enhance": _enhance}


# --------------------------------------------------------------------------- routes


@router.post("/v1/jobs", status_code=202)
async def submit(request: Request, job: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    """Queue a job; answers at once with its id and state (202)."""
    state = _state(request)
    built = _BUILDERS[job.kind](state, job)
    state.submit(built)
    return built.as_dict()


@router.get("/v1/jobs")
async def list_jobs(
    request: Request, state_filter: str | None = Query(None, alias="state"), limit: int = 100
) -> dict[str, Any]:
    """This server's jobs, newest first (``?state=done``; at most ``limit``)."""
    state = _state(request)
    jobs = [j for j in reversed(state.store.list()) if j.api != "server"]
    if state_filter is not None:
        jobs = [j for j in jobs if j.state.value == state_filter]
    with state.store.lock:
        return {"jobs": [j.as_dict() for j in jobs[: max(1, min(limit, 1000))]]}


def _job(request: Request, job_id: str) -> Job:
    job = _state(request).store.get(job_id)
    if job is None:
        raise ApiError(
            404, f"no job {job_id!r} (unknown, or finished more than result_ttl seconds ago)", code="job_not_found"
        )
    return job


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    """State, progress (step/total, ETA), error text and results of a job."""
    job = _job(request, job_id)
    with _state(request).store.lock:
        return job.as_dict()


@router.post("/v1/jobs/{job_id}/cancel")
async def cancel(job_id: str, request: Request) -> dict[str, Any]:
    """Cancel a queued or running job (a running one stops within a second); a finished job is
    left as it is.  Results finished before the cancel are kept."""
    state = _state(request)
    job = _job(request, job_id)
    state.pool.cancel(job)
    with state.store.lock:
        return job.as_dict()


@router.get("/v1/jobs/{job_id}/results/{index}")
async def result(job_id: str, index: int, request: Request):
    """Download result ``index`` (PNG with the A1111 ``parameters`` infotext, or a video)."""
    job = _job(request, job_id)
    if not 0 <= index < len(job.results):
        raise ApiError(404, f"job {job_id} has {len(job.results)} result(s); no index {index}", code="result_not_found")
    r = job.results[index]
    if not r.path.is_file():
        raise ApiError(404, "the result file is gone (removed after result_ttl)", code="result_not_found")
    return FileResponse(r.path, media_type=r.media_type, filename=r.path.name)


@router.get("/v1/jobs/{job_id}/events")
async def events(job_id: str, request: Request):
    """Server-Sent Events: ``state``, ``progress``, ``preview`` (a JPEG data URL), ``result``,
    then one of ``done``, ``failed``, ``cancelled`` (the job as JSON), which ends the stream."""
    state = _state(request)
    job = _job(request, job_id)
    snapshot, queue, last = state.store.subscribe(job)

    async def stream():
        try:
            for _, name, data in snapshot:
                yield _sse(name, data)
                if name in ("done", "failed", "cancelled"):
                    return
            while True:
                try:
                    seq, name, data = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if seq <= last:
                    continue
                yield _sse(name, data)
                if name in ("done", "failed", "cancelled"):
                    return
        finally:
            state.store.unsubscribe(job, queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get("/v1/server")
async def server_status(request: Request) -> dict[str, Any]:
    """Models, loaded workers (pid, engine, phase), queue, limits, version."""
    from ..._version import __version__

    state = _state(request)
    cat = state.catalog
    return {
        "version": __version__,
        "default_model": cat.default,
        "models": list(cat.checkpoints),
        "loras": cat.names("lora"),
        "controlnets": cat.names("controlnet"),
        "upscalers": cat.names("upscaler"),
        "samplers": cat.samplers(cat.default) if cat.default else [],
        "schedulers": cat.schedulers(cat.default) if cat.default else [],
        "workers": state.pool.status(),
        "queued": state.pool.queued(),
        "max_queue": state.config.max_queue,
        "max_loaded_models": state.config.max_loaded_models,
        "limits": state.config.limits.as_dict(),
        "uptime": round(time.time() - state.started, 1),
    }
