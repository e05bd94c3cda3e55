"""Prompt templates for enhancing rendered views: a subject in, ``(prompt, negative)`` out.

Built-in templates: ``default``, ``photorealistic``, ``product``, ``character``,
``environment``, ``object``, ``anime_style``.  A templates file (JSON, or TOML read with
:mod:`tomllib`) adds or overrides templates; it maps a name to a table with ``prompt``
(must contain ``{subject}``, may contain ``{extra}``) and optionally ``negative``:

.. code-block:: toml

    [clay]
    prompt = "{subject}, {extra}, clay render, soft studio light"
    negative = "photo, noisy"
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError

__all__ = [
    "BUILTIN_TEMPLATES",
    "PromptBuilder",
    "PromptTemplate",
    "load_templates",
]

_COMMON_NEGATIVE = "blurry, low quality, lowres, jpeg artifacts, deformed, distorted, watermark, text, signature"


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A positive template (with ``{subject}`` and optionally ``{extra}``) and its negative prompt."""

    prompt: str
    negative: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or "{subject}" not in self.prompt:
            raise InvalidInputError(f"a prompt template must be a string containing '{{subject}}'; got {self.prompt!r}")
        if not isinstance(self.negative, str):
            raise InvalidInputError(f"a negative prompt must be a string; got {self.negative!r}")


BUILTIN_TEMPLATES: Mapping[str, PromptTemplate] = {
    "default": PromptTemplate(
        "{subject}, {extra}, highly detailed, sharp focus, consistent lighting", _COMMON_NEGATIVE
    ),
    "photorealistic": PromptTemplate(
        "a photograph of {subject}, {extra}, photorealistic, realistic materials and textures,"
        " natural lighting, 35mm, sharp focus, high dynamic range",
        _COMMON_NEGATIVE + ", cartoon, illustration, painting, cgi, 3d render, plastic",
    ),
    "product": PromptTemplate(
        "professional product photo of {subject}, {extra}, studio lighting, clean background,"
        " crisp details, realistic materials, commercial photography",
        _COMMON_NEGATIVE + ", cluttered background, harsh shadows, fingerprints, dust",
    ),
    "character": PromptTemplate(
        "{subject}, {extra}, character, detailed face, detailed clothing, expressive, cinematic lighting, high detail",
        _COMMON_NEGATIVE + ", extra limbs, extra fingers, bad anatomy, disfigured face, cross-eyed",
    ),
    "environment": PromptTemplate(
        "{subject}, {extra}, environment, detailed scenery, atmospheric perspective, volumetric light,"
        " wide shot, high detail",
        _COMMON_NEGATIVE + ", people, tilted horizon, oversaturated",
    ),
    "object": PromptTemplate(
        "{subject}, {extra}, detailed object, realistic surface texture, accurate shape,"
        " soft even lighting, sharp focus",
        _COMMON_NEGATIVE + ", cropped, duplicate, warped geometry",
    ),
    "anime_style": PromptTemplate(
        "{subject}, {extra}, anime style, cel shading, clean line art, vibrant colors, detailed illustration",
        _COMMON_NEGATIVE + ", photorealistic, photo, 3d render, realistic",
    ),
}


class _NamesDescriptor:
    """``templates()`` on the class (built-ins) and on an instance (built-ins + its file)."""

    def __init__(self, func: Callable[..., list[str]]) -> None:
        self._func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: type) -> Callable[[], list[str]]:
        source = obj._templates if obj is not None else BUILTIN_TEMPLATES
        return lambda: self._func(source)


def _names(source: Mapping[str, PromptTemplate]) -> list[str]:
    """The template names available, sorted (``PromptBuilder.templates()`` lists the built-ins)."""
    return sorted(source)


class PromptBuilder:
    """Builds ``(prompt, negative)`` pairs from a named template.

    ``template``: the template name (see :meth:`templates`); ``templates_file``: a JSON or
    TOML file of extra templates (same names override the built-ins).  An unknown name
    raises :class:`InvalidInputError` listing the available ones.
    """

    templates = _NamesDescriptor(_names)

    def __init__(self, template: str = "default", templates_file: str | os.PathLike[str] | None = None) -> None:
        self._templates: dict[str, PromptTemplate] = dict(BUILTIN_TEMPLATES)
        if templates_file is not None:
            self._templates.update(load_templates(templates_file))
        if template not in self._templates:
            raise InvalidInputError(
                f"unknown prompt template {template!r}; available: {', '.join(sorted(self._templates))}"
            )
        self.template = template

    def __repr__(self) -> str:
        return f"PromptBuilder(template={self.template!r})"

    @property
    def spec(self) -> PromptTemplate:
        """The selected template."""
        return self._templates[self.template]

    def build(self, subject: str, extra: str | Sequence[str] | None = None) -> tuple[str, str]:
        """``(prompt, negative)`` for ``subject``, with ``extra`` (a phrase or a list of them)
        put where the template has ``{extra}`` (or appended when it has none)."""
        if not isinstance(subject, str) or not subject.strip():
            raise InvalidInputError(f"subject must be a non-empty string; got {subject!r}")
        extra_text = _extra_text(extra)
        prompt = self.spec.prompt
        if "{extra}" not in prompt and extra_text:
            prompt = prompt + ", {extra}"
        return _fill(prompt, subject.strip(), extra_text), self.spec.negative


def load_templates(path: str | os.PathLike[str]) -> dict[str, PromptTemplate]:
    """Templates from a ``.json`` or ``.toml`` file mapping name -> ``{prompt, negative}``."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"templates_file not found: {str(p)!r}")
    data = _read_table(p)
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            f"templates_file {str(p)!r} must map template names to tables; got {type(data).__name__}"
        )
    return {str(name): _template_from(entry, str(name), p) for name, entry in data.items()}


def _read_table(p: Path) -> Any:
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(p.read_text(encoding="utf-8"))
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError as exc:  # Python 3.10
                raise InvalidInputError("TOML templates files need Python >= 3.11; use a .json file") from exc
            return tomllib.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"templates_file {str(p)!r} cannot be parsed: {exc}") from None
    raise InvalidInputError(f"templates_file must be a .json or .toml file; got {p.name!r}")


def _template_from(entry: Any, name: str, p: Path) -> PromptTemplate:
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"template {name!r} in {p.name} must be a table with 'prompt' and 'negative'")
    unknown = sorted(set(entry) - {"prompt", "negative"})
    if unknown or "prompt" not in entry:
        raise InvalidInputError(
            f"template {name!r} in {p.name} must have 'prompt' (and optionally 'negative'); got keys {sorted(entry)}"
        )
    return PromptTemplate(entry["prompt"], entry.get("negative", ""))


def _extra_text(extra: str | Sequence[str] | None) -> str:
    if extra is None:
        return ""
    if isinstance(extra, str):
        return extra.strip()
    if isinstance(extra, Sequence) and all(isinstance(e, str) for e in extra):
        return ", ".join(e.strip() for e in extra if e.strip())
    raise InvalidInputError(f"extra must be a string, a list of strings or None; got {extra!r}")


def _fill(template: str, subject: str, extra: str) -> str:
    """The template's comma-separated parts with the placeholders filled, the parts an empty
    ``{extra}`` leaves empty dropped; the user's text is never split or re-spaced
    ("a 1,5 litre bottle" stays as written)."""
    parts = (part.strip().replace("{subject}", subject).replace("{extra}", extra) for part in template.split(","))
    return ", ".join(p.strip() for p in parts if p.strip())
