"""Today's families on the real engine with forged weights: FLUX.2 klein, Chroma, FLUX.1 Kontext,
Qwen-Image(-Edit, 2511), Z-Image and Wan 2.2 TI2V 5B (full size: forge_large), InstructPix2Pix;
``SDModel.generate``, ``SDModel.edit``, ``SDModel.generate_video``, ``gouache txt2img`` and
``gouache edit``.

Random weights barely carry a reference image to the output (a level or two of 255), so edits
are checked on what must hold exactly: the engine runs in edit mode, the same reference and
seed give the same image, another reference gives another image, the result has the input's
size.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache._engines.requests import EngineOptions, ModelFiles
from gouache._engines.sdcpp import context_params
from gouache.testing import forge

pytestmark = [pytest.mark.slow]

# a 128x64 reference: left half white, right half black (and its negative)
_REF = np.zeros((64, 128, 3), np.uint8)
_REF[:, :64] = 255


def klein_files() -> dict:
    return dict(diffusion_model=forge.flux2("klein"), vae=forge.flux2_vae(), llm=forge.llm("qwen3", hidden=64))


def qwen_files(edit: bool = False, zero_cond_t: bool = False) -> dict:
    return dict(
        diffusion_model=forge.qwen_image(edit=edit, zero_cond_t=zero_cond_t),
        vae=forge.wan_vae(),
        llm=forge.llm("qwen2.5_vl", hidden=forge.QWEN_IMAGE_CONTEXT, layers=1, wtype="q4_0"),
    )


def kontext_files() -> dict:
    return dict(diffusion_model=forge.flux_kontext(), vae=forge.flux_vae(decoder_ch=32), clip_l=forge.clip_l())


def pixels(result: g.GenerationResult) -> np.ndarray:
    return np.asarray(result.images[0], np.int16)


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("make", "family", "variant"),
    [
        (lambda: forge.flux2("klein"), "flux2", "klein"),
        (lambda: forge.flux2("dev"), "flux2", "dev"),
        (lambda: forge.chroma(), "flux", "chroma"),
        (lambda: forge.flux_kontext(), "flux", "kontext"),
        (lambda: forge.qwen_image(), "qwen_image", None),
        (lambda: forge.qwen_image(edit=True), "qwen_image", "edit"),
        (lambda: forge.qwen_image(edit=True, zero_cond_t=True), "qwen_image", "edit_2511"),
        (lambda: forge.llm("qwen3"), "text_encoder", "qwen3"),
        (lambda: forge.llm("mistral"), "text_encoder", "mistral"),
        (lambda: forge.llm("qwen2.5_vl", hidden=3584, layers=1, wtype="q4_0"), "text_encoder", "qwen2.5_vl_7b"),
        (lambda: forge.flux2_vae(), "vae", "32ch"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_inspect_names_each_part(make, family, variant):
    info = g.inspect(make())
    assert (info.family.value, info.variant) == (family, variant)


def test_z_image_layout_is_detected():
    from gouache._modelfiles.families import detect_family
    from gouache._modelfiles.headers import TensorInfo
    from gouache.testing.forge import zimage_family

    layout = {name: TensorInfo("F16", shape) for name, shape, _ in zimage_family.BUILDERS["z_image"]({})}
    assert detect_family(layout) == (g.Family.Z_IMAGE, None)


def test_sd3_forge_is_detected():
    from gouache._modelfiles.families import detect_family
    from gouache._modelfiles.headers import TensorInfo
    from gouache.testing.forge import sd3_family

    def layout(**spec):
        return {name: TensorInfo("F16", shape) for name, shape, _ in sd3_family.BUILDERS["sd3"](spec)}

    assert detect_family(layout(depth=24)) == (g.Family.SD3, "sd3_medium")
    assert detect_family(layout(depth=24, qk_norm="rms", x_blocks=13)) == (g.Family.SD3, "sd3.5_medium")
    assert detect_family(layout(depth=38, qk_norm="rms")) == (g.Family.SD3, "sd3.5_large")


_SD3_RUN = """
import sys
import gouache as g
from gouache.testing import forge
try:
    with g.SDModel(diffusion_model=forge.sd3(), vae=forge.flux_vae(decoder_ch=32), {clips}) as m:
        m.generate("a cube", width=64, height=64, steps=1)
except g.InvalidInputError as e:
    print("REFUSED", e)
"""


@pytest.mark.parametrize("clips", ["", "clip_l=forge.clip_l()"], ids=["no_clip", "clip_l_only"])
def test_sd3_without_both_clips_is_refused_not_crashed(clips):
    """The engine aborts (clip_l only: SIGABRT in a concat) or segfaults (none) without CLIP-G."""
    forge.sd3()  # forged (1.2 GB q4_0, the engine's smallest SD3) outside the timed child
    res = subprocess.run(
        [sys.executable, "-c", _SD3_RUN.format(clips=clips)], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "REFUSED an SD3 model needs both CLIP text encoders: set " in res.stdout
    assert "clip_g_path" in res.stdout


# --------------------------------------------------------------------------- engine mapping


def test_edit_2511_switches_the_engine_to_zero_cond_timesteps():
    def zero_cond(**files) -> bool:
        return context_params(ModelFiles(**files), EngineOptions(), None, None).qwen_image_zero_cond_t

    assert zero_cond(diffusion_model=forge.qwen_image(edit=True, zero_cond_t=True))
    assert not zero_cond(diffusion_model=forge.qwen_image(edit=True))
    assert not zero_cond(diffusion_model=forge.qwen_image())


def test_llm_files_reach_the_engine():
    p = context_params(
        ModelFiles(diffusion_model=forge.flux2(), llm=forge.llm(), llm_vision=forge.clip_l()),
        EngineOptions(),
        None,
        None,
    )
    assert (str(p.llm_path), str(p.llm_vision_path)) == (str(forge.llm()), str(forge.clip_l()))


# --------------------------------------------------------------------------- text to image


@pytest.mark.parametrize(
    ("files", "family", "cfg"),
    [
        (klein_files, "flux2", 1.0),
        (lambda: dict(diffusion_model=forge.chroma(), vae=forge.flux_vae(decoder_ch=32)), "flux", 4.0),
        (qwen_files, "qwen_image", 2.5),
    ],
    ids=["flux2_klein", "chroma", "qwen_image"],
)
def test_sdmodel_generates(files, family, cfg):
    with g.SDModel(**files()) as m:
        assert m.family == family and m.engine_name == "sdcpp"
        a = m.generate("a red cube", width=64, height=64, steps=1, seed=1)
        b = m.generate("a red cube", width=64, height=64, steps=1, seed=2)
    assert a.images[0].size == (64, 64)
    assert a.parameters["cfg_scale"] == cfg  # the family's documented default
    assert pixels(a).std() > 1
    assert not np.array_equal(pixels(a), pixels(b))  # the seed reaches the sampler


# --------------------------------------------------------------------------- editing


@pytest.mark.parametrize(
    "files",
    [klein_files, kontext_files, lambda: qwen_files(edit=True), lambda: qwen_files(edit=True, zero_cond_t=True)],
    ids=["flux2_klein", "kontext", "qwen_image_edit", "qwen_image_edit_2511"],
)
def test_sdmodel_edit_uses_the_images(files, caplog):
    with g.SDModel(**files()) as m:
        with caplog.at_level(logging.DEBUG, logger="gouache.engine"):
            a = m.edit(_REF, "make the white half red", steps=1, seed=5)
        assert "EDIT mode" in caplog.text  # the engine got the reference image
        again = m.edit(Image.fromarray(_REF), "make the white half red", steps=1, seed=5)
        other = m.edit(255 - _REF, "make the white half red", steps=1, seed=5)
    assert a.images[0].size == (128, 64)  # the input's size
    assert np.array_equal(pixels(a), pixels(again))
    assert not np.array_equal(pixels(a), pixels(other))


def test_instruct_pix2pix_edits_its_image_with_image_cfg():
    """InstructPix2Pix (SD1 UNet with 8 input channels): the edited image's latent is the UNet's
    second input, and ``image_cfg_scale`` weighs it against the instruction (a third UNet pass)."""
    path = forge.sd1_pix2pix()
    assert g.inspect(path).family == "sd1_pix2pix"
    with g.SDModel(path, engine="sdcpp") as m:
        a = m.edit(_REF, "make the white half red", steps=1, cfg_scale=3.0, seed=5)
        again = m.edit(_REF, "make the white half red", steps=1, cfg_scale=3.0, seed=5)
        other = m.edit(255 - _REF, "make the white half red", steps=1, cfg_scale=3.0, seed=5)
        image_cfg = m.edit(
            _REF, "make the white half red", steps=1, cfg_scale=3.0, seed=5, guidance=g.Guidance(image_cfg_scale=1.5)
        )
    assert a.images[0].size == (128, 64)
    assert np.array_equal(pixels(a), pixels(again))
    assert np.abs(pixels(a) - pixels(other)).mean() > 0.5  # the image reaches the UNet
    assert np.abs(pixels(a) - pixels(image_cfg)).mean() > 0.5  # image CFG changes the result


def test_edit_is_refused_for_models_that_do_not_edit():
    with g.SDModel(diffusion_model=forge.chroma(), vae=forge.flux_vae(decoder_ch=32)) as m:
        with pytest.raises(
            g.InvalidInputError, match=r"edit needs an image-editing model \(.*FLUX.1 Kontext.*flux/chroma"
        ):
            m.edit(_REF, "make it red", steps=1)


def test_edit_needs_an_image():
    from gouache._pipeline.requests import edit_images

    with pytest.raises(g.InvalidInputError, match="at least one image"):
        edit_images([])
    assert [im.size for im in edit_images(_REF)] == [(128, 64)]
    assert len(edit_images([_REF, Image.fromarray(_REF)])) == 2


def test_edit_size_follows_the_image_within_the_family_area():
    from gouache._modelfiles.defaults import defaults_for
    from gouache._pipeline.requests import edit_size

    d = defaults_for("flux", variant="kontext")
    assert edit_size(None, None, Image.new("RGB", (640, 480)), d) == (640, 480)
    w, h = edit_size(None, None, Image.new("RGB", (4000, 3000)), d)
    assert abs(w / h - 4 / 3) < 0.01 and w * h <= 1024 * 1024
    assert edit_size(320, None, Image.new("RGB", (640, 480)), d) == (320, None)


# --------------------------------------------------------------------------- the command line


def gouache(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gouache", *args], capture_output=True, text=True, timeout=600, check=False
    )


def klein_options() -> list[str]:
    f = klein_files()
    return ["--diffusion-model", str(f["diffusion_model"]), "--vae", str(f["vae"]), "--llm", str(f["llm"])]


def test_cli_txt2img_and_edit(tmp_path):
    out = tmp_path / "cube.png"
    res = gouache(
        "txt2img", *klein_options(), "a cube", "-W", "64", "-H", "64", "--steps", "1", "-o", str(out), "--json"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["parameters"]["family"] == "flux2"
    ref = tmp_path / "ref.png"
    Image.fromarray(_REF).save(ref)
    edited = tmp_path / "edited.png"
    res = gouache("edit", *klein_options(), "-i", str(ref), "make it red", "--steps", "1", "-o", str(edited), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["parameters"]["prompt"] == "make it red"
    with Image.open(edited) as im:
        assert im.size == (128, 64)


def test_cli_edit_refuses_options_it_has_no_use_for(tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(_REF).save(ref)
    res = gouache("edit", *klein_options(), "-i", str(ref), "x", "--eta", "1", "-o", str(tmp_path / "o.png"))
    assert res.returncode != 0 and "gouache edit does not take --eta" in res.stderr
    assert not (tmp_path / "o.png").exists()
    res = gouache("edit", *klein_options(), "-i", str(tmp_path / "missing.png"), "x", "-o", str(tmp_path / "o.png"))
    assert res.returncode != 0 and "--image file not found" in res.stderr


# --------------------------------------------------------------------------- Z-Image: full size only


@pytest.mark.forge_large
def test_z_image_turbo_full_size():
    """The engine fixes every Z-Image width (6.15e9 parameters): the forge writes it as a 3.5 GB q4_0 GGUF."""
    files = dict(
        diffusion_model=forge.z_image(),
        llm=forge.llm("qwen3", hidden=2560, layers=2, wtype="q4_0"),
        vae=forge.flux_vae(decoder_ch=32),
    )
    with g.SDModel(**files) as m:
        assert m.family == "z_image"
        a = m.generate("a cube", width=64, height=64, steps=1, cfg_scale=1.0, seed=1)
    assert a.images[0].size == (64, 64) and pixels(a).std() > 1


@pytest.mark.forge_large
def test_sd3_medium_size_with_both_clips():
    """The engine's smallest SD3 is SD3 Medium's 24 blocks (1.2 GB q4_0) and CLIP-G is fixed at
    6.9e8 parameters: about 3.2 GB of memory; T5-XXL (4.7e9, fixed) is left out (optional)."""
    files = dict(
        diffusion_model=forge.sd3(), vae=forge.flux_vae(decoder_ch=32), clip_l=forge.clip_l(), clip_g=forge.clip_g()
    )
    with g.SDModel(**files) as m:
        assert (m.family, m.info.variant) == ("sd3", "sd3_medium")
        a = m.generate("a cube", width=64, height=64, steps=1, cfg_scale=1.0, seed=1)
    assert a.images[0].size == (64, 64) and pixels(a).std() > 1


# --------------------------------------------------------------------------- Wan 2.2 TI2V 5B: full size only


@pytest.mark.forge_large
def test_wan22_ti2v_5b_full_size_text_and_image_to_video():
    """The engine fixes every width of TI2V 5B (5.0e9 parameters): a 2.9 GB q4_0 GGUF, decoded by
    TAEHV for the 48-channel Wan 2.2 latent space (16x per side); ~45 s with the forge, 2.9 GB."""
    start = np.zeros((64, 64, 3), np.uint8)
    start[:, :32] = 255
    with g.SDModel(diffusion_model=forge.wan22_ti2v(), taesd=forge.taehv(latent="wan2.2")) as m:
        assert (m.family, m.info.variant) == ("wan2.2", "ti2v_5b")
        t2v = m.generate_video("a wave", width=64, height=64, frames=5, steps=1, cfg_scale=1.0, seed=3)
        again = m.generate_video("a wave", width=64, height=64, frames=5, steps=1, cfg_scale=1.0, seed=3)
        i2v = m.generate_video(
            "a wave", width=64, height=64, frames=5, steps=1, cfg_scale=1.0, seed=3, init_image=Image.fromarray(start)
        )
    frames = np.stack([np.asarray(f, np.int16) for f in t2v.frames])
    assert len(t2v.frames) == 5 and t2v.frames[0].size == (64, 64) and frames.std() > 1
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(t2v.frames, again.frames))
    assert len(i2v.frames) == 5 and np.abs(np.asarray(i2v.frames[0], np.int16) - frames[0]).mean() > 1
