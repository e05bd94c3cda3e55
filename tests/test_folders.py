"""Diffusers folders: detected from their configs, listed by `gouache models`, taken as models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import gouache as g
from gouache._engines.torch.configs import config_dir
from gouache._modelfiles.folders import folder_family, is_diffusers_folder


def diffusers_folder(tmp_path, family: str, name: str = "model"):
    """A diffusers folder with the real configs of ``family`` (the torch engine's templates)."""
    target = tmp_path / name
    shutil.copytree(config_dir(family), target)
    return target


@pytest.mark.parametrize(
    ("family", "expected", "variant"),
    [("sd1", "sd1", None), ("sdxl", "sdxl", None), ("sd1_inpaint", "sd1_inpaint", None), ("sd2_v", "sd2", "768-v")],
)
def test_family_from_configs(tmp_path, family, expected, variant):
    folder = diffusers_folder(tmp_path, family)
    assert is_diffusers_folder(folder)
    assert folder_family(folder) == (g.Family(expected), variant)
    info = g.inspect(folder)
    assert info.family.value == expected and info.file_kind == "diffusers"


def test_tiny_unet_and_transformer_folders(tmp_path):
    folder = diffusers_folder(tmp_path, "sd1")
    unet = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**unet, "mid_block_type": None}))
    assert folder_family(folder)[0] is g.Family.SD1_TINY
    shutil.rmtree(folder / "unet")
    (folder / "transformer").mkdir()
    (folder / "transformer" / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel"}))
    assert folder_family(folder)[0] is g.Family.FLUX


def test_models_lists_folders_as_checkpoints(tmp_path):
    root = tmp_path / "models"
    diffusers_folder(root / "diffusers", "sd1", "my-sd15")
    diffusers_folder(root / "checkpoints", "sdxl", "xl/base")
    (root / "checkpoints" / "one.safetensors").write_bytes(b"x")
    res = subprocess.run(
        [sys.executable, "-m", "gouache", "models", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    found = {(e["kind"], e["name"]) for e in json.loads(res.stdout)}
    assert found == {("checkpoint", "my-sd15"), ("checkpoint", "xl/base"), ("checkpoint", "one")}


def test_a_plain_folder_is_refused_by_name(tmp_path):
    with pytest.raises(g.InvalidInputError, match="not a diffusers folder"):
        g.SDModel(tmp_path)


def _write_sd1_folder(target):
    """The forged full SD1 checkpoint as a diffusers folder: the torch engine's SD1 configs, and
    each component's tensors converted by diffusers' own ldm -> diffusers name conversion."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from safetensors.torch import load_file, save_file

    from gouache.testing import forge

    shutil.copytree(config_dir("sd1"), target, dirs_exist_ok=True)
    ckpt = load_file(str(forge.sd1()))
    unet_cfg = json.loads((target / "unet" / "config.json").read_text())
    vae_cfg = json.loads((target / "vae" / "config.json").read_text())
    parts = {
        "unet/diffusion_pytorch_model.safetensors": convert_ldm_unet_checkpoint(ckpt, unet_cfg),
        "vae/diffusion_pytorch_model.safetensors": convert_ldm_vae_checkpoint(ckpt, vae_cfg),
        "text_encoder/model.safetensors": {
            k[len("cond_stage_model.transformer.") :]: v
            for k, v in ckpt.items()
            if k.startswith("cond_stage_model.transformer.")
        },
    }
    for rel, state in parts.items():
        save_file({k: v.contiguous() for k, v in state.items()}, str(target / rel))


@pytest.fixture(scope="module")
def sd1_folder():
    from gouache._files import publish_dir
    from gouache.testing import forge

    target = forge.cache_dir() / f"sd1_diffusers-{forge.FORGE_VERSION}"
    if not (target / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        publish_dir(target, _write_sd1_folder)
    return target


@pytest.mark.slow
def test_sdcpp_generates_from_a_diffusers_folder(sd1_folder, tmp_path):
    import numpy as np

    assert g.inspect(sd1_folder).family is g.Family.SD1
    with g.SDModel(sd1_folder, engine="sdcpp") as m:
        res = m.generate("a cube", width=64, height=64, steps=1, cfg_scale=1.0, seed=2)
    assert res.images[0].size == (64, 64) and np.asarray(res.images[0]).std() > 1
    assert res.parameters["model"] == sd1_folder.name and "Model hash" not in res.infotexts[0]


@pytest.mark.slow
@pytest.mark.torch
def test_torch_generates_from_a_diffusers_folder(sd1_folder):
    import diffusers  # noqa: F401  (the test extra installs it)
    import numpy as np

    options = g.EngineOptions(precision="bf16")  # half the memory of fp32 for the 1B-parameter forge
    with g.SDModel(sd1_folder, engine="torch", options=options) as m:
        res = m.generate("a cube", width=64, height=64, steps=1, cfg_scale=1.0, seed=2)
        assert m.engine_name == "torch"
    assert res.images[0].size == (64, 64) and np.asarray(res.images[0]).std() > 1
