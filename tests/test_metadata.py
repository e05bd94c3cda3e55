"""A1111-compatible generation parameters: format, parse, and read them from PNG/JPEG/WebP files."""

from __future__ import annotations

import json

import pytest
from PIL import Image, PngImagePlugin

from gouache._errors import InvalidInputError
from gouache._pipeline.infotext import (
    A1111_SAMPLER_NAMES,
    A1111_SCHEDULE_NAMES,
    engine_sampler_from_a1111,
    engine_scheduler_from_a1111,
    exif_for,
    format_infotext,
    parse_infotext,
    pnginfo_for,
    read_parameters,
    split_a1111_sampler,
)
from gouache._sdcpp.native import SampleMethod, Scheduler

BASE = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 42, "Size": "512x512", "Model": "v1-5"}

# A verbatim-style AUTOMATIC1111 v1.10.1 infotext.
A1111_TEXT = (
    "masterpiece, best quality, 1girl, (red hair:1.2), <lora:detailTweaker:0.6>, standing in a field of flowers\n"
    "Negative prompt: (worst quality, low quality:1.4), EasyNegative, bad hands\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1234567890, Size: 512x768, "
    "Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, "
    "Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "name: abc123, other: def456", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1'
)

TRICKY = [
    ("a lighthouse at dusk", "blurry"),
    ("line one\nline two\n\nline four", "bad\nworse"),
    ('commas, colons: yes, and "quotes" \\ backslash', "a: b, c"),
    ("猫 🐱 café, naïve — ünïcödé", "ぼやけた"),
    ("<lora:style:0.8> portrait, (detailed:1.2)", ""),
    ("Steps: 1, Sampler: x, Seed: 2\nstill the prompt", ""),  # a prompt line that looks like parameters
    ("", "only a negative prompt"),
]


def _png(tmp_path, infotext: str, name: str = "img.png", **save):
    path = tmp_path / name
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, pnginfo=pnginfo_for(infotext), **save)
    return path


def _with_user_comment(tmp_path, raw: bytes, ext: str):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    path = tmp_path / f"img.{ext}"
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    return path


# --------------------------------------------------------------------------- format


def test_format_exact_a1111_layout():
    params = {
        "Steps": 20,
        "Sampler": "Euler a",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 42,
        "Size": "512x512",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
    }
    assert format_infotext("a cat", "blurry", params) == (
        "a cat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
    )


def test_format_omits_empty_negative_prompt_and_none_values():
    text = format_infotext("a cat", "", {**BASE, "Denoising strength": None})
    assert text == "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: v1-5"


@pytest.mark.parametrize(
    "value, written",
    [
        ("plain", "plain"),
        ("a, b", '"a, b"'),
        ("key: value", '"key: value"'),
        ("two\nlines", '"two\\nlines"'),
        ("é, ü", '"é, ü"'),  # non-ASCII kept as is (json.dumps(..., ensure_ascii=False))
        ('say "hi"', 'say "hi"'),  # A1111 leaves quotes bare when nothing else needs quoting
        ('"quoted"', json.dumps('"quoted"')),  # ... except a leading quote, which readers would strip
        (7.5, "7.5"),
        (7.0, "7"),
        ((640, 480), "640x480"),
        (True, "True"),
    ],
)
def test_format_quotes_values_like_a1111(value, written):
    text = format_infotext("p", "", {**BASE, "Extra": value})
    assert text.endswith(f", Extra: {written}")
    assert parse_infotext(text)["Extra"] == (value if isinstance(value, str) else written)


def test_format_writes_flag_keys_bare():
    text = format_infotext("p", "", {**BASE, "Hires fix": "Hires fix"})
    assert text.endswith("Model: v1-5, Hires fix")


@pytest.mark.parametrize("key", ["X", "bad,key", "colon: key", "new\nline", " leading", 3])
def test_format_rejects_keys_a1111_cannot_read(key):
    with pytest.raises(InvalidInputError, match="parameter name"):
        format_infotext("p", "", {**BASE, key: "v"})


def test_format_needs_three_parameters():
    with pytest.raises(InvalidInputError, match="at least 3"):
        format_infotext("p", "", {"Steps": 20, "Seed": 1, "Model": None})


def test_format_rejects_non_strings():
    with pytest.raises(InvalidInputError, match="prompt must be a str"):
        format_infotext(None, "", BASE)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="params must be a mapping"):
        format_infotext("p", "", [("Steps", 20)])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- parse


def test_parse_verbatim_a1111_text():
    r = parse_infotext(A1111_TEXT)
    assert r["prompt"].startswith("masterpiece, best quality") and r["prompt"].endswith("field of flowers")
    assert "<lora:detailTweaker:0.6>" in r["prompt"]  # prompt text untouched
    assert r["negative_prompt"] == "(worst quality, low quality:1.4), EasyNegative, bad hands"
    assert r["Steps"] == "28" and r["Sampler"] == "DPM++ 2M" and r["Schedule type"] == "Karras"
    assert r["Model hash"] == "7f96a1a9ca" and r["Model"] == "anything-v5"
    assert r["Hires upscale"] == "2" and r["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert r["Lora hashes"] == "name: abc123, other: def456"
    assert r["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert r["Version"] == "v1.10.1" and r["Clip skip"] == "2" and r["Denoising strength"] == "0.45"
    assert (r["steps"], r["cfg_scale"], r["seed"], r["width"], r["height"]) == (28, 7.5, 1234567890, 512, 768)
    assert (r["sampler"], r["scheduler"]) == ("dpm++2m", "karras")


def test_parse_old_combined_sampler_name():
    r = parse_infotext("a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 965400086, Size: 512x512")
    assert (r["sampler"], r["scheduler"]) == ("dpm++2m", "karras")
    assert r["Sampler"] == "DPM++ 2M Karras"


def test_parse_without_parameter_line_is_all_prompt():
    r = parse_infotext("just a prompt\nwith: two, lines")
    assert r == {"prompt": "just a prompt\nwith: two, lines", "negative_prompt": ""}


def test_parse_unknown_sampler_keeps_raw_value_only():
    r = parse_infotext("p\nSteps: 20, Sampler: UniPC, Schedule type: Automatic, CFG scale: 7, Seed: 1")
    assert r["Sampler"] == "UniPC" and "sampler" not in r and "scheduler" not in r


def test_parse_tolerates_bad_numbers_and_crlf():
    r = parse_infotext("p\r\nNegative prompt: n\r\nSteps: many, CFG scale: high, Seed: 7, Size: big")
    assert (r["prompt"], r["negative_prompt"], r["seed"]) == ("p", "n", 7)
    assert "steps" not in r and "cfg_scale" not in r and "width" not in r


def test_parse_rejects_non_string():
    with pytest.raises(InvalidInputError, match="infotext must be a str"):
        parse_infotext(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt, negative", TRICKY)
def test_format_parse_round_trip(prompt, negative):
    params = {**BASE, "Model": "my, model: v2", "Lora weights": 'style: 0.8, "odd": 1', "Version": "gouache 0.2"}
    r = parse_infotext(format_infotext(prompt, negative, params))
    assert (r["prompt"], r["negative_prompt"]) == (prompt, negative)
    assert r["Model"] == "my, model: v2" and r["Lora weights"] == 'style: 0.8, "odd": 1'
    typed = (r["steps"], r["cfg_scale"], r["seed"], r["width"], r["height"], r["sampler"])
    assert typed == (20, 7.0, 42, 512, 512, "euler_a")


# --------------------------------------------------------------------------- sampler names


def test_sampler_and_schedule_tables_cover_the_engine():
    assert set(A1111_SAMPLER_NAMES) == set(SampleMethod.names())
    assert set(A1111_SCHEDULE_NAMES) == set(Scheduler.names())


@pytest.mark.parametrize("engine", sorted(A1111_SAMPLER_NAMES))
def test_sampler_names_round_trip(engine):
    assert engine_sampler_from_a1111(A1111_SAMPLER_NAMES[engine]) == engine
    assert split_a1111_sampler(A1111_SAMPLER_NAMES[engine].upper()) == (engine, None)


@pytest.mark.parametrize("engine", sorted(set(A1111_SCHEDULE_NAMES) - {"discrete"}))
def test_schedule_names_round_trip(engine):
    assert engine_scheduler_from_a1111(A1111_SCHEDULE_NAMES[engine]) == engine


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Euler a", ("euler_a", None)),
        ("DPM++ 2M Karras", ("dpm++2m", "karras")),
        ("DPM++ 2S a Karras", ("dpm++2s_a", "karras")),
        ("DPM2 Karras", ("dpm2", "karras")),
        ("DPM2 a Karras", (None, "karras")),  # the engine has no DPM2 a
        ("DPM++ 2M SDE Exponential", (None, "exponential")),
        ("UniPC", (None, None)),
        ("", (None, None)),
    ],
)
def test_split_a1111_sampler(name, expected):
    assert split_a1111_sampler(name) == expected


def test_schedule_aliases():
    assert engine_scheduler_from_a1111("Automatic") is None  # the engine's own choice
    assert engine_scheduler_from_a1111("Uniform") == "discrete"
    assert engine_scheduler_from_a1111("SGMUniform") == "sgm_uniform"
    assert engine_scheduler_from_a1111("Beta") is None


# --------------------------------------------------------------------------- image files


@pytest.mark.parametrize("prompt, negative", TRICKY)
def test_png_round_trip(tmp_path, prompt, negative):
    path = _png(tmp_path, format_infotext(prompt, negative, BASE))
    r = read_parameters(path)
    assert (r["prompt"], r["negative_prompt"], r["seed"], r["Model"]) == (prompt, negative, 42, "v1-5")


def test_png_chunk_types(tmp_path):
    latin = format_infotext("a cat", "", BASE)
    with Image.open(_png(tmp_path, latin, "latin.png")) as im:
        assert im.text["parameters"] == latin
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", format_infotext("猫", "", BASE), zip=True)  # iTXt, compressed
    path = tmp_path / "itxt.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert read_parameters(path)["prompt"] == "猫"


@pytest.mark.parametrize("ext", ["jpg", "webp"])
def test_exif_round_trip(tmp_path, ext):
    text = format_infotext("猫, a: cat\nsecond line", "blurry, ugly", BASE)
    path = tmp_path / f"img.{ext}"
    Image.new("RGB", (8, 8)).save(path, exif=exif_for(text))
    r = read_parameters(path)
    assert (r["prompt"], r["negative_prompt"], r["steps"]) == ("猫, a: cat\nsecond line", "blurry, ugly", 20)


def test_exif_for_writes_piexif_unicode_big_endian():
    raw = exif_for("ab").get_ifd(0x8769)[0x9286]
    assert raw == b"UNICODE\0\0a\0b"


@pytest.mark.parametrize(
    "raw",
    [
        b"UNICODE\0" + A1111_TEXT.encode("utf-16-be"),  # A1111 / piexif
        b"UNICODE\0" + A1111_TEXT.encode("utf-16-le"),  # writers that follow the TIFF byte order
        b"UNICODE\0" + A1111_TEXT.encode("utf-16"),  # with a BOM
        b"ASCII\0\0\0" + A1111_TEXT.encode("utf-8"),
        b"UNICODE\0" + A1111_TEXT.encode("utf-16-be") + b"\0\0",  # NUL-terminated
    ],
)
def test_user_comment_encodings(tmp_path, raw):
    r = read_parameters(_with_user_comment(tmp_path, raw, "jpg"))
    assert r["Lora hashes"] == "name: abc123, other: def456" and r["steps"] == 28


def test_read_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="not found") as exc:
        read_parameters(tmp_path / "missing.png")
    assert "missing.png" in str(exc.value)
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    with pytest.raises(InvalidInputError, match="could not be read"):
        read_parameters(not_image)
    for ext in ("png", "jpg", "webp"):
        bare = tmp_path / f"bare.{ext}"
        Image.new("RGB", (4, 4)).save(bare)
        with pytest.raises(InvalidInputError, match="no generation parameters") as exc:
            read_parameters(bare)
        assert str(bare) in str(exc.value)


def test_helpers_reject_non_strings():
    with pytest.raises(InvalidInputError):
        pnginfo_for(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        exif_for(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- gouache's own files


@pytest.fixture(scope="module")
def tiny(tiny_model, taesd_model):
    import gouache as g

    with g.SDModel(tiny_model, taesd=taesd_model, engine="sdcpp") as m:
        yield m


SMALL = dict(width=64, height=64, steps=1, cfg_scale=1.0, seed=3)


@pytest.mark.slow
def test_hires_fix_is_recorded_as_a1111_does(tiny):
    from gouache import Hires

    res = tiny.generate("a cube", hires=Hires(scale=2.0, steps=1, denoising_strength=0.6), **SMALL)
    assert res.images[0].size == (128, 128)
    r = parse_infotext(res.infotexts[0])
    assert r["Size"] == "64x64"  # A1111: the first pass's size
    assert (r["Hires upscale"], r["Hires steps"], r["Hires upscaler"]) == ("2", "1", "Latent")
    assert r["Denoising strength"] == "0.6"
    plain = parse_infotext(tiny.generate("a cube", **SMALL).infotexts[0])
    assert "Hires upscale" not in plain and "Denoising strength" not in plain


@pytest.mark.slow
def test_model_hash_is_a1111_short_hash_and_cached(tiny, tiny_model, tmp_path, monkeypatch):
    import hashlib

    from gouache._modelfiles import hashes

    expected = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    r = parse_infotext(tiny.generate("a cube", **SMALL).infotexts[0])
    assert r["Model hash"] == expected[:10] and r["Model"] == tiny_model.stem
    # the cache answers while size and mtime are unchanged: plant a fake digest and see it come back
    monkeypatch.setenv("GOUACHE_CACHE", str(tmp_path))
    copy = tmp_path / "m.safetensors"
    copy.write_bytes(b"x" * 100)
    real = hashes.file_sha256(copy)
    assert real == hashlib.sha256(b"x" * 100).hexdigest()
    data = json.loads(hashes.cache_file().read_text())
    (key,) = data
    data[key]["sha256"] = "f" * 64
    hashes.cache_file().write_text(json.dumps(data))
    assert hashes.model_short_hash(copy) == "f" * 10
    copy.write_bytes(b"y" * 100)  # changed file (new mtime): hashed again
    assert hashes.model_short_hash(copy) == hashlib.sha256(b"y" * 100).hexdigest()[:10]


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_saved_files_carry_their_parameters(tiny, tmp_path, ext):
    res = tiny.generate("a cube, red", negative_prompt="blurry", **SMALL)
    (path,) = res.save(tmp_path / f"out{ext}")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    r = read_parameters(path)
    assert (r["prompt"], r["negative_prompt"], r["seed"]) == ("a cube, red", "blurry", 3)
    assert r == read_parameters(path.read_bytes())  # bytes of the file
    with Image.open(path) as im:
        assert r == read_parameters(im)  # an opened image


def _umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old


@pytest.mark.parametrize("bad", [None, 3, ["a.png"]])
def test_read_parameters_rejects_other_types(bad):
    with pytest.raises(InvalidInputError, match="file path, the bytes of an image file or a PIL image; got"):
        read_parameters(bad)


def test_read_parameters_on_bad_bytes_and_bare_images():
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_parameters(b"not an image")
    with pytest.raises(InvalidInputError, match="holds no generation parameters"):
        read_parameters(Image.new("RGB", (4, 4)))
