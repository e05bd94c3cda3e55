"""AUTOMATIC1111-compatible generation parameters ("infotext") in image files.

AUTOMATIC1111's stable-diffusion-webui (A1111) stores how an image was made as one text::

    a lighthouse at dusk, oil painting
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model: v1-5

in the PNG ``parameters`` text chunk, or, for JPEG and WebP, in the EXIF ``UserComment``
tag.  Most image tools (Civitai, ComfyUI readers, Forge, InvokeAI importers) read that text,
so gouache writes and reads exactly that format.  The formatting and parsing rules are
ports of A1111's ``modules/infotext_utils.py`` (``quote``, ``unquote``,
``parse_generation_parameters``) and ``modules/processing.py`` (``create_infotext``).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .._errors import InvalidInputError
from .._files import write_atomic
from .._modelfiles.headers import check_file
from .._version import __version__
from .._vocabulary import SAMPLERS, SCHEDULERS

__all__ = [
    "A1111_SAMPLER_NAMES",
    "A1111_SCHEDULE_NAMES",
    "engine_sampler_from_a1111",
    "engine_scheduler_from_a1111",
    "exif_for",
    "format_infotext",
    "generation_infotext",
    "parse_infotext",
    "pnginfo_for",
    "read_parameters",
    "save_image",
    "split_a1111_sampler",
]

# --------------------------------------------------------------------------- names

#: Sampler name -> A1111 "Sampler" display name (from the one vocabulary).
A1111_SAMPLER_NAMES: dict[str, str] = {t.name: t.a1111 for t in SAMPLERS}
#: Scheduler name -> A1111 "Schedule type" display name (from the one vocabulary).
A1111_SCHEDULE_NAMES: dict[str, str] = {t.name: t.a1111 for t in SCHEDULERS}

# A1111 names -> engine names, case-insensitive; extra aliases A1111 and other UIs write.
_SAMPLER_FROM_A1111: dict[str, str] = {v.lower(): k for k, v in A1111_SAMPLER_NAMES.items()} | {
    "euler_a": "euler_a",
    "euler ancestral": "euler_a",
    "dpm++ 2s ancestral": "dpm++2s_a",
    "ddim trailing": "ddim_trailing",
}
_SCHEDULER_FROM_A1111: dict[str, str | None] = {v.lower(): k for k, v in A1111_SCHEDULE_NAMES.items()} | {
    "automatic": None,  # the sampler's own default: let the engine pick
    "uniform": "discrete",
    "normal": "discrete",
    "sgmuniform": "sgm_uniform",
}
# Suffixes of A1111's pre-1.9 combined sampler names ("DPM++ 2M Karras", "DPM++ 2M SDE Exponential").
_COMBINED_SUFFIXES = (" karras", " exponential", " sgm uniform", " sgmuniform", " kl optimal", " simple")


def engine_sampler_from_a1111(name: str) -> str | None:
    """The engine sampler for an A1111 "Sampler" value (``"Euler a"`` -> ``"euler_a"``).

    Old combined names (``"DPM++ 2M Karras"``) give their sampler part; ``None`` when the
    engine has no such sampler (``"UniPC"``, ``"DPM++ SDE"``).  See :func:`split_a1111_sampler`.
    """
    return split_a1111_sampler(name)[0]


def engine_scheduler_from_a1111(name: str) -> str | None:
    """The engine scheduler for an A1111 "Schedule type" value (``"Karras"`` -> ``"karras"``).

    ``None`` for ``"Automatic"`` (the engine's default for the sampler) and for schedules the
    engine lacks (``"Beta"``, ``"Polyexponential"``).
    """
    return _SCHEDULER_FROM_A1111.get(name.strip().lower())


def split_a1111_sampler(name: str) -> tuple[str | None, str | None]:
    """``(engine sampler, engine scheduler)`` for an A1111 "Sampler" value.

    ``"Euler a"`` -> ``("euler_a", None)``; A1111's pre-1.9 combined names carry the schedule:
    ``"DPM++ 2M Karras"`` -> ``("dpm++2m", "karras")``, ``"DPM2 a Karras"`` -> ``(None, "karras")``
    (the engine has no DPM2 a).  Either part is ``None`` when unknown or absent.
    """
    key = name.strip().lower()
    if key in _SAMPLER_FROM_A1111:
        return _SAMPLER_FROM_A1111[key], None
    for suffix in _COMBINED_SUFFIXES:
        if key.endswith(suffix):
            base = key[: -len(suffix)].strip()
            return _SAMPLER_FROM_A1111.get(base), _SCHEDULER_FROM_A1111.get(suffix.strip())
    return None, None


# --------------------------------------------------------------------------- formatting

# A1111's parameter regex (modules/infotext_utils.py, re_param_code).
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_KEY = re.compile(r"\w[\w \-/]+")
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_MIN_PARAMS = 3  # A1111 takes the last line as the parameter line only with 3+ "key: value" pairs


def _quote(text: str) -> str:
    """A1111's ``quote``: JSON-quote values holding ``,``, newlines or ``:``.

    One addition: a value that starts with ``"`` is quoted too, since A1111's reader would
    otherwise unquote it (A1111 writes such values bare and reads them back changed).
    """
    if "," not in text and "\n" not in text and ":" not in text and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    """A1111's ``unquote``: JSON-decode a ``"..."`` value, else return it unchanged."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _value_text(value: object) -> str:
    """How a parameter value is written: integral floats without ``.0`` (``CFG scale: 7``),
    ``(w, h)`` pairs as ``WxH``, everything else as ``str()``."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not _RE_KEY.fullmatch(key):
        raise InvalidInputError(
            f"infotext parameter name {key!r} is not allowed; allowed: a word character followed by"
            " one or more letters, digits, '_', ' ', '-' or '/' (what A1111's reader recognises)"
        )
    return key


def _params_line(params: Mapping[str, object]) -> str:
    parts = []
    for key, value in params.items():
        _check_key(key)
        if value is None:  # A1111 drops None values
            continue
        text = _value_text(value)
        parts.append(key if text == key else f"{key}: {_quote(text)}")
    if len(parts) < _MIN_PARAMS:
        raise InvalidInputError(
            f"infotext needs at least {_MIN_PARAMS} parameters that are not None, got {len(parts)}"
            f" ({', '.join(parts) or 'none'}); A1111 readers only recognise a parameter line with"
            f" {_MIN_PARAMS} or more 'key: value' pairs"
        )
    return ", ".join(parts)


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The text A1111 writes into an image's ``parameters``, as ``create_infotext`` does.

    The prompt (may span lines), a ``Negative prompt: ...`` line (omitted when empty), then
    ``params`` on the last line in the given order, e.g. ``Steps: 20, Sampler: Euler a, CFG
    scale: 7, Seed: 42, Size: 512x512, Model: name``.  Values holding ``,``, ``:`` or a newline
    are JSON-quoted (A1111's ``quote``); ``None`` values are left out; a value equal to its
    key is written bare (A1111 does this for flags); floats print without a trailing ``.0``;
    a ``(width, height)`` tuple prints as ``WxH``.  Raises :class:`InvalidInputError` for a
    key A1111 cannot read back, or fewer than 3 parameters (A1111 would not find the line).

    Readers strip each prompt line, so leading/trailing spaces on a line do not survive, and
    a prompt line starting with ``Negative prompt:`` is read as the negative prompt (as in A1111).
    """
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a str, got {type(value).__name__}")
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"params must be a mapping of name -> value, got {type(params).__name__}")
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{_params_line(params)}".strip()


# --------------------------------------------------------------------------- parsing


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """A1111: stripped lines before ``Negative prompt:`` are the prompt, the rest the negative."""
    prompt = negative = ""
    done_with_prompt = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    return prompt, negative


def _typed(res: dict) -> None:
    """Add the convenience keys (``steps``, ``cfg_scale``, ``seed``, ``width``, ``height``,
    ``sampler``, ``scheduler``) where the raw values parse."""
    for key, raw, conv in (("steps", "Steps", int), ("cfg_scale", "CFG scale", float), ("seed", "Seed", int)):
        try:
            res[key] = conv(res[raw])
        except (KeyError, ValueError):
            pass
    size = _RE_SIZE.match(res.get("Size", ""))
    if size:
        res["width"], res["height"] = int(size.group(1)), int(size.group(2))
    sampler, scheduler = split_a1111_sampler(res.get("Sampler", ""))
    if "Schedule type" in res:
        scheduler = engine_scheduler_from_a1111(res["Schedule type"]) or scheduler
    if sampler:
        res["sampler"] = sampler
    if scheduler:
        res["scheduler"] = scheduler


def parse_infotext(text: str) -> dict:
    """Parse A1111 generation parameters (the inverse of :func:`format_infotext`).

    A port of A1111's ``parse_generation_parameters``: the last line is the parameter line
    when it holds at least 3 ``key: value`` pairs; lines before ``Negative prompt:`` are the
    prompt.  Returns ``{"prompt": str, "negative_prompt": str, "Steps": "20", "Sampler":
    "Euler a", ...}`` with every raw value a str (quoted values unquoted), plus, where present
    and valid, typed keys: ``steps`` (int), ``cfg_scale`` (float), ``seed`` (int), ``width``
    and ``height`` (int, from ``Size``), and ``sampler`` / ``scheduler`` as *engine* names
    (``"euler_a"``, ``"karras"``; from ``Sampler`` and ``Schedule type``, or from an old
    combined name like ``"DPM++ 2M Karras"``; absent when the engine has no equivalent).
    Unlike A1111, no defaults are filled in for missing keys.  Prompt text (``<lora:...>``
    tags included) is returned untouched.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"infotext must be a str, got {type(text).__name__}")
    *lines, last = text.replace("\r\n", "\n").strip().split("\n")
    if len(_RE_PARAM.findall(last)) < _MIN_PARAMS:
        lines.append(last)
        last = ""
    prompt, negative = _split_prompts(lines)
    res: dict = {"prompt": prompt, "negative_prompt": negative}
    for key, value in _RE_PARAM.findall(last):
        if key not in ("prompt", "negative_prompt"):
            res[key] = _unquote(value)
    _typed(res)
    return res


# --------------------------------------------------------------------------- image files

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\0"


def pnginfo_for(infotext: str) -> PngImagePlugin.PngInfo:
    """A ``PngInfo`` holding ``infotext`` as the ``parameters`` chunk, for ``image.save(path, pnginfo=...)``.

    Latin-1 text goes into a ``tEXt`` chunk (as A1111 writes it), anything else into ``iTXt``.
    """
    if not isinstance(infotext, str):
        raise InvalidInputError(f"infotext must be a str, got {type(infotext).__name__}")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    return info


def exif_for(infotext: str) -> Image.Exif:
    """EXIF holding ``infotext`` in ``UserComment``, for saving JPEG/WebP (``image.save(path, exif=...)``).

    Encoded as A1111 does (piexif's ``UserComment.dump(..., encoding="unicode")``): the
    ``UNICODE\\0`` header followed by UTF-16 big-endian text.
    """
    if not isinstance(infotext, str):
        raise InvalidInputError(f"infotext must be a str, got {type(infotext).__name__}")
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE + infotext.encode("utf-16-be")
    return exif


def _utf16_order(data: bytes) -> str:
    """``utf-16-be`` or ``utf-16-le`` for BOM-less UTF-16: ASCII-range text has its zero byte
    first in big-endian; big-endian (A1111/piexif) when undecidable."""
    zeros_even = data[0::2].count(0)
    zeros_odd = data[1::2].count(0)
    return "utf-16-le" if zeros_odd > zeros_even else "utf-16-be"


def _decode_user_comment(raw: bytes | str) -> str:
    """Text of an EXIF UserComment: an 8-byte charset header, then the text."""
    if isinstance(raw, str):
        return raw.rstrip("\0")
    header, data = raw[:8], raw[8:]
    if header == _UNICODE:
        if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = data.decode("utf-16")
        else:
            text = data[: len(data) // 2 * 2].decode(_utf16_order(data), errors="replace")
    elif header == b"JIS\0\0\0\0\0":
        text = data.decode("shift_jis", errors="replace")
    elif header in (b"ASCII\0\0\0", b"\0" * 8):
        text = data.decode("utf-8", errors="replace")
    else:  # no header at all: some writers put the bare text in
        text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def _parameters_text(im: Image.Image) -> str | None:
    """The raw infotext of an opened image: PNG text chunks, else EXIF UserComment."""
    text = getattr(im, "text", None)  # PNG: tEXt/zTXt/iTXt, also those after the image data
    if isinstance(text, dict) and isinstance(text.get("parameters"), str):
        return text["parameters"]
    if isinstance(im.info.get("parameters"), str):
        return im.info["parameters"]
    comment = im.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if comment:
        decoded = _decode_user_comment(comment)
        return decoded if decoded.strip() else None
    return None


def _text_of_file(path: str | os.PathLike[str]) -> str | None:
    p = check_file(path, "image file")
    try:
        with Image.open(p) as im:
            return _parameters_text(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InvalidInputError(
            f"image file {str(p)!r} could not be read ({exc}); allowed: PNG, JPEG or WebP images"
        ) from None


def _text_of_bytes(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _parameters_text(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InvalidInputError(
            f"the {len(data)} bytes given are not a readable image ({exc}); allowed: PNG, JPEG or WebP file contents"
        ) from None


def read_parameters(source: str | os.PathLike[str] | bytes | Image.Image) -> dict:
    """Generation parameters of an image, parsed with :func:`parse_infotext`.

    ``source`` is a file path, the bytes of an image file, or an opened PIL image (as
    ``Image.open`` returns it: the metadata lives in the file, so an image made in memory
    has none).  Reads the PNG ``parameters`` text chunk (``tEXt``/``iTXt``/``zTXt``) or, for
    JPEG/WebP (and PNG ``eXIf``), the EXIF ``UserComment`` A1111 writes (``UNICODE`` header
    with UTF-16 of either byte order, or ``ASCII``).  Raises :class:`InvalidInputError` for
    another type, a missing file, something that is not an image, or an image without
    generation parameters.
    """
    if isinstance(source, Image.Image):
        text, what = _parameters_text(source), "the image"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        text, what = _text_of_bytes(bytes(source)), "the image bytes"
    elif isinstance(source, (str, os.PathLike)):
        text, what = _text_of_file(source), f"image file {os.fspath(source)!r}"
    else:
        raise InvalidInputError(
            f"read_parameters takes a file path, the bytes of an image file or a PIL image; got {type(source).__name__}"
        )
    if text is None:
        raise InvalidInputError(
            f"{what} holds no generation parameters (no PNG 'parameters' text, no EXIF UserComment)"
        )
    return parse_infotext(text)


# --------------------------------------------------------------------------- gouache's own images


def _num(x: float) -> str:
    return f"{x:g}"


#: sd.cpp hires upscaler -> the name A1111 writes in ``Hires upscaler`` (a model: its file name).
_A1111_HIRES_UPSCALERS = {
    "latent": "Latent",
    "latent_nearest": "Latent (nearest)",
    "latent_nearest_exact": "Latent (nearest-exact)",
    "latent_antialiased": "Latent (antialiased)",
    "latent_bicubic": "Latent (bicubic)",
    "latent_bicubic_antialiased": "Latent (bicubic antialiased)",
    "lanczos": "Lanczos",
    "nearest": "Nearest",
}


def _hires_fields(h: dict) -> dict[str, object]:
    """A1111's hires-fix fields (``Hires upscale``/``Hires resize``, ``Hires steps`` when not
    the first pass's, ``Hires upscaler``)."""
    fields: dict[str, object] = {}
    if h["width"] or h["height"]:
        fields["Hires resize"] = f"{h['width']}x{h['height']}"
    else:
        fields["Hires upscale"] = _num(h["scale"])
    if h["steps"]:
        fields["Hires steps"] = h["steps"]
    key = str(h["upscaler"]).lower()
    if key == "model" and h["model"]:
        fields["Hires upscaler"] = os.path.splitext(os.path.basename(h["model"]))[0]
    else:
        fields["Hires upscaler"] = _A1111_HIRES_UPSCALERS.get(key, h["upscaler"])
    return fields


def generation_infotext(p: dict, seed: int) -> str:
    """The infotext of one generated image from ``GenerationResult.parameters``, in
    A1111's field order (``create_infotext``): ``Size`` is the first pass's size, as in A1111."""
    fields: dict[str, object] = {"Steps": p["steps"], "Sampler": A1111_SAMPLER_NAMES.get(p["sampler"], p["sampler"])}
    if p["scheduler"] != "default":
        fields["Schedule type"] = A1111_SCHEDULE_NAMES.get(p["scheduler"], p["scheduler"])
    fields.update({"CFG scale": _num(p["cfg_scale"]), "Seed": seed, "Size": f"{p['width']}x{p['height']}"})
    if p.get("model_hash"):
        fields["Model hash"] = p["model_hash"]
    fields["Model"] = p["model"]
    hires = p.get("hires")
    if "strength" in p:
        fields["Denoising strength"] = _num(p["strength"])
    elif hires is not None:
        fields["Denoising strength"] = _num(hires["denoising_strength"])
    if p["clip_skip"] not in (-1, 0, 1):
        fields["Clip skip"] = p["clip_skip"]
    if hires is not None:
        fields.update(_hires_fields(hires))
    if p.get("lora_hashes"):
        fields["Lora hashes"] = ", ".join(f"{name}: {h}" for name, h in p["lora_hashes"].items())
    fields["Engine"] = p["engine"]
    fields["Version"] = f"gouache {__version__}"
    return format_infotext(p["prompt"], p["negative_prompt"], fields)


_IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def save_image(
    image: Image.Image, path: str | os.PathLike[str], *, infotext: str | None = None, overwrite: bool = False
):
    """Save a PIL image atomically (``.png``, ``.jpg``/``.jpeg``, ``.webp``) with the usual file
    permissions; ``infotext`` goes into PNG's ``parameters`` text chunk, or the EXIF
    ``UserComment`` of JPEG and WebP files (where A1111 puts it)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    fmt = _IMAGE_FORMATS.get(suffix)
    if fmt is None:
        raise InvalidInputError(f"unsupported image extension {suffix!r}; allowed: {', '.join(_IMAGE_FORMATS)}")

    def write(tmp: str) -> None:
        if not infotext:
            image.save(tmp, format=fmt)
        elif fmt == "PNG":
            image.save(tmp, format="PNG", pnginfo=pnginfo_for(infotext))
        else:  # JPEG and WebP: EXIF UserComment, as A1111 writes them
            image.save(tmp, format=fmt, exif=exif_for(infotext))

    return write_atomic(path, write, overwrite=overwrite)
