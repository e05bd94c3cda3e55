"""The web page at ``/``: plain HTML, CSS and JavaScript shipped in the package (no build step,
no CDN), inlined into one response so ``/`` is the only route that needs no API key."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@functools.lru_cache(maxsize=1)
def page() -> str:
    static = resources.files("gouache.server") / "static"
    html = (static / "index.html").read_text(encoding="utf-8")
    html = html.replace("/*STYLE*/", (static / "style.css").read_text(encoding="utf-8"))
    return html.replace("/*SCRIPT*/", (static / "app.js").read_text(encoding="utf-8"))


@router.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(
        page(),
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:;"
            " style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )
