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
        [sys.executable, "-m", "gouache", "models", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    found = {(e["kind"], e["name"]) for e in json.loads(res.stdout)}
    assert found == {("checkpoint", "my-sd15"), ("checkpoint", "xl/base"), ("checkpoint", "one")}


def test_a_plain_folder_is_refused_by_name(tmp_path):
    with pytest.raises(g.InvalidInputError, match="not a diffusers folder"):
        g.SDModel(tmp_path)
