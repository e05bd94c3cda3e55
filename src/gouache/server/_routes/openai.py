"""OpenAI's Images API (``/v1/images/generations``, ``/v1/images/edits``) and ``/v1/models``.

Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``).  Extensions
beyond OpenAI's fields: ``negative_prompt``, ``seed``, ``steps``, ``cfg_scale``, ``sampler``,
``scheduler`` (and ``strength`` for edits).  ``url`` results are served by this server under
an unguessable token for ``url_ttl`` seconds.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import _build as B
from .. import _images as I
from .._errors import ApiError, bad
from .._jobs import Job, JobState

router = APIRouter(tags=["OpenAI Images"])

#: OpenAI image model names clients send by default: they mean the server's default model.
OPENAI_MODEL_ALIASES = ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def _state(request: Request):
    return request.app.state.gouache


class GenerationRequest(BaseModel):
    """OpenAI ``images.generate`` body (fields gouache has no use for are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int = 1
    size: str | None = "auto"
    response_format: str | None = "b64_json"
    output_format: str | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    background: str | None = None
    negative_prompt: str = ""
    seed: int = -1
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None


def _model(state, value: str | None) -> str | None:
    if value is None or value in OPENAI_MODEL_ALIASES:
        return None
    return value


def _size(value: str | None, default: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    if value in (None, "", "auto"):
        return default
    m = _SIZE.match(str(value).strip())
    if not m:
        raise ApiError(
            400, f"size: {value!r} is not allowed; allowed: 'auto' or 'WIDTHxHEIGHT' such as '512x512'", field="size"
        )
    return int(m.group(1)), int(m.group(2))


def _format(response_format: str | None, output_format: str | None) -> str:
    fmt = response_format or "b64_json"
    if fmt not in ("b64_json", "url"):
        raise ApiError(400, f"response_format: {fmt!r} is not allowed; allowed: b64_json, url", field="response_format")
    if output_format not in (None, "png"):
        raise ApiError(400, f"output_format: {output_format!r} is not available; allowed: png", field="output_format")
    return fmt


def _check_url_allowed(state, fmt: str) -> None:
    """``url`` results live in one replica: refused when several replicas serve (Ray Serve)."""
    if fmt == "url" and state.several_replicas:
        from .._rayserve import needs_single_replica

        raise ApiError(409, needs_single_replica("response_format 'url'"), code="needs_single_replica")


def _openai_errors(exc: ApiError) -> ApiError:
    """OpenAI answers bad parameters with 400."""
    if exc.status == 422:
        exc.status = 400
    return exc


async def _answer(state, request: Request, job: Job, fmt: str, response: Response) -> dict[str, Any]:
    response.headers["X-Gouache-Job"] = job.id
    await state.run(job)
    if job.state == JobState.FAILED:
        try:
            B.raise_job_error(job)
        except ApiError as exc:
            raise _openai_errors(exc) from None
    if job.state != JobState.DONE:
        raise ApiError(409, "the request was cancelled before it finished", code="cancelled")
    data = []
    for r in job.results:
        if fmt == "url":
            token = state.store.share(r.path, r.media_type, state.config.url_ttl)
            data.append(
                {"url": f"{str(request.base_url).rstrip('/')}/v1/images/files/{token}.png", "revised_prompt": None}
            )
        else:
            data.append({"b64_json": I.b64_file(r.path), "revised_prompt": None})
    first = job.results[0] if job.results else None
    return {
        "created": int(job.created),
        "data": data,
        "output_format": "png",
        "size": f"{first.width}x{first.height}" if first else None,
    }


@router.post("/v1/images/generations")
async def generations(req: GenerationRequest, request: Request, response: Response) -> dict[str, Any]:
    """Create images from a prompt (OpenAI ``images.generate``)."""
    state = _state(request)
    fmt = _format(req.response_format, req.output_format)
    _check_url_allowed(state, fmt)
    width, height = _size(req.size, (None, None))
    order = B.ImageOrder(
        prompt=req.prompt,
        model=_model(state, req.model),
        negative_prompt=req.negative_prompt,
        width=width,
        height=height,
        steps=req.steps,
        cfg_scale=req.cfg_scale,
        sampler=req.sampler,
        scheduler=req.scheduler,
        seed=req.seed,
        count=req.n,
        previews=False,
        fields={"count": "n", "width": "size", "height": "size"},
    )
    try:
        job = B.image_job(state, order, "openai")
    except ApiError as exc:
        raise _openai_errors(exc) from None
    return await _answer(state, request, job, fmt, response)


@router.post("/v1/images/edits")
async def edits(request: Request, response: Response) -> dict[str, Any]:
    """Edit an image (OpenAI ``images.edit``, multipart): the transparent part of ``mask`` (or
    of ``image`` when there is no mask) is repainted; without any transparency the whole
    image is re-imagined with ``strength`` (extension, default 0.75)."""
    state = _state(request)
    limits = state.config.limits
    try:
        form = await request.form(max_files=16, max_fields=64, max_part_size=limits.max_body_bytes)
    except Exception as exc:  # noqa: BLE001 - python-multipart raises many kinds
        raise ApiError(
            400, f"body: expected multipart/form-data with image, prompt ... ({exc})", field="body"
        ) from None
    try:
        return await _edit(state, request, form, response)
    except ApiError as exc:
        raise _openai_errors(exc) from None


def _field(form, name: str, default: Any = None) -> Any:
    value = form.get(name)
    return default if value is None or value == "" else value


def _number(form, name: str, kind, default):
    value = _field(form, name)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise bad(name, f"must be {'an integer' if kind is int else 'a number'}; got {value!r}", 400) from None


async def _edit(state, request: Request, form, response: Response) -> dict[str, Any]:
    limits = state.config.limits
    uploads = form.getlist("image") + form.getlist("image[]")
    if not uploads:
        raise bad("image", "an image file is required", 400)
    if len(uploads) > 1:
        raise bad("image", f"{len(uploads)} images given; this server edits one image per request", 400)
    prompt = _field(form, "prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("prompt", "is required", 400)
    image = I.open_image(await _read(uploads[0], "image"), "image", limits)
    mask_file = form.get("mask")
    if mask_file is not None and not isinstance(mask_file, str):
        mask_src = I.open_image(await _read(mask_file, "mask"), "mask", limits)
        if mask_src.size != image.size:
            raise bad(
                "mask",
                f"must have the image's size {image.size[0]}x{image.size[1]}; got"
                f" {mask_src.size[0]}x{mask_src.size[1]}",
                400,
            )
        if "A" not in mask_src.getbands():
            raise bad(
                "mask", "must be a PNG with an alpha channel: fully transparent pixels mark the area to edit", 400
            )
        mask = mask_src.getchannel("A").point(lambda a: 255 if a == 0 else 0)
    elif "A" in image.getbands() and image.getchannel("A").getextrema()[0] == 0:
        mask = image.getchannel("A").point(lambda a: 255 if a == 0 else 0)
    else:
        mask = None
    fmt = _format(_field(form, "response_format"), _field(form, "output_format"))
    _check_url_allowed(state, fmt)
    width, height = _size(_field(form, "size"), image.size)
    init = I.rgb(image)
    if (width, height) != init.size:
        B.check_size(state, width, height, ("size", "size"))
        init = I.resize(init, width, height, 0)
        mask = None if mask is None else I.resize(mask, width, height, 0)
    strength = _number(form, "strength", float, 1.0 if mask is not None else 0.75)
    order = B.ImageOrder(
        prompt=prompt,
        model=_model(state, _field(form, "model")),
        negative_prompt=_field(form, "negative_prompt", ""),
        width=width,
        height=height,
        steps=_number(form, "steps", int, None),
        cfg_scale=_number(form, "cfg_scale", float, None),
        sampler=_field(form, "sampler"),
        scheduler=_field(form, "scheduler"),
        seed=_number(form, "seed", int, -1),
        count=_number(form, "n", int, 1),
        init_images=[init],
        strength=strength,
        mask=mask,
        previews=False,
        fields={"count": "n", "width": "size", "height": "size"},
    )
    job = B.image_job(state, order, "openai")
    return await _answer(state, request, job, fmt, response)


async def _read(upload, field: str) -> bytes:
    if isinstance(upload, str):
        raise bad(field, "must be a file upload (multipart), not a text field", 400)
    return await upload.read()


@router.get("/v1/images/files/{token}.png", include_in_schema=False)
async def shared_file(token: str, request: Request):
    """An OpenAI ``url`` result (the token is the credential; it expires after ``url_ttl``)."""
    found = _state(request).store.shared(token)
    if found is None:
        raise ApiError(404, "no such image (the link expired or never existed)", code="not_found")
    return FileResponse(found[0], media_type=found[1])


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The model names clients may use (OpenAI ``models.list``)."""
    cat = _state(request).catalog
    return {"object": "list", "data": [_model_object(n, spec) for n, spec in cat.checkpoints.items()]}


@router.get("/v1/models/{name:path}")
async def model(name: str, request: Request) -> dict[str, Any]:
    cat = _state(request).catalog
    found = cat.model_name(name, "model")
    return _model_object(found, cat.checkpoints[found])


def _model_object(name: str, spec) -> dict[str, Any]:
    try:
        created = int(spec.main_file.stat().st_mtime)
    except OSError:
        created = int(time.time())
    return {"id": name, "object": "model", "created": created, "owned_by": "gouache"}
