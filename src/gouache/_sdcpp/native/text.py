"""Text across the C boundary: exactly two functions, UTF-8 both ways."""

from __future__ import annotations

import os


def encode(text: str | os.PathLike[str] | None) -> bytes | None:
    """Python text (or path) -> NUL-terminated UTF-8 for C; ``None`` -> NULL."""
    if text is None:
        return None
    if isinstance(text, os.PathLike):
        return os.fsencode(text)
    if "\x00" in text:
        raise ValueError(f"text passed to the engine must not contain NUL characters: {text!r}")
    return text.encode("utf-8")


def decode(raw: bytes | None) -> str:
    """C text -> Python ``str`` (UTF-8, undecodable bytes replaced); NULL -> ``""``."""
    if raw is None:
        return ""
    return raw.decode("utf-8", errors="replace")
