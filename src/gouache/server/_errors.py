"""Errors answered to clients, in the shape each API's clients expect."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server answers with ``status`` and a message naming the bad field.

    ``kind`` is OpenAI's error ``type`` (``invalid_request_error``, ``server_error`` ...);
    ``field`` the request field at fault (OpenAI's ``param``); ``headers`` extra response
    headers (``Retry-After`` for 429).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.code = code
        self.headers = headers or {}


def bad(field: str, message: str, status: int = 422) -> ApiError:
    """A 4xx naming ``field``: ``"{field}: {message}"``."""
    return ApiError(status, f"{field}: {message}", field=field)


def is_a1111_path(path: str) -> bool:
    return path.startswith(("/sdapi/", "/controlnet/"))


def error_body(path: str, err: ApiError) -> dict[str, Any]:
    """The JSON body for ``err`` on ``path``: AUTOMATIC1111's shape under ``/sdapi`` (what its
    API middleware sends: ``error``, ``detail``, ``body``, ``errors``), OpenAI's
    (``{"error": {"message", "type", "param", "code"}}``) everywhere else."""
    if is_a1111_path(path):
        return {"error": type_name(err), "detail": err.message, "body": "", "errors": err.message, "field": err.field}
    return {"error": {"message": err.message, "type": err.kind, "param": err.field, "code": err.code}}


def type_name(err: ApiError) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        404: "NotFound",
        409: "Conflict",
        413: "PayloadTooLarge",
        422: "InvalidInput",
        429: "TooManyRequests",
        503: "ServiceUnavailable",
    }.get(err.status, "ServerError")
