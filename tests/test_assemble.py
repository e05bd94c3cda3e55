"""``gouache.assemble_checkpoint``: base checkpoint + UNet-only file (SDXL-Lightning's published
form) -> one file both engines load; the diffusers -> ldm UNet name map it relies on."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

import gouache as g
from gouache._modelfiles.assemble import _unet_names_to_ldm
from gouache._modelfiles.convert import unet_name_to_ldm
from gouache.testing import forge

from .conftest import run_isolated


def _header(path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def _digests(path) -> dict[str, str]:
    """sha256 of every tensor's bytes, streamed."""
    header, start = _header(path)
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(start + a)
            h = hashlib.sha256()
            left = b - a
            while left:
                chunk = f.read(min(left, 1 << 24))
                h.update(chunk)
                left -= len(chunk)
            out[name] = h.hexdigest()
    return out


def _diffusers_unet_shapes(family: str) -> dict[str, tuple]:
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from gouache._engines.torch.configs import FAMILIES

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(FAMILIES[family]["unet/config.json"])
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_diffusers_unet_names_map_onto_the_ldm_unet(family):
    """Every tensor of diffusers' own UNet2DConditionModel maps to exactly the ldm UNet the
    engine loads (the forge's layout), with the same shape."""
    diffusers = _diffusers_unet_shapes(family)
    mapping = _unet_names_to_ldm(list(diffusers), "unet")
    ldm = {k: tuple(v) for k, v in forge._layout(family).items() if k.startswith("model.diffusion_model.")}
    assert len(set(mapping.values())) == len(mapping)
    assert {mapping[k]: s for k, s in diffusers.items()} == ldm


def test_forged_lightning_unet_is_diffusers_layout():
    assert {k: tuple(v) for k, v in forge._layout("sdxl_unet_diffusers").items()} == _diffusers_unet_shapes("sdxl")


def test_upsampler_index_depends_on_attention():
    assert (
        unet_name_to_ldm("up_blocks.0.upsamplers.0.conv.weight", 2, frozenset({1, 2}))
        == "model.diffusion_model.output_blocks.2.1.conv.weight"
    )
    assert (
        unet_name_to_ldm("up_blocks.1.upsamplers.0.conv.weight", 2, frozenset({1, 2}))
        == "model.diffusion_model.output_blocks.5.2.conv.weight"
    )
    assert unet_name_to_ldm("controlnet_down_blocks.0.weight") is None


def _save(path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    base = {
        "model.diffusion_model.input_blocks.0.0.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float16),
        "model.diffusion_model.input_blocks.1.0.in_layers.2.weight": rng.standard_normal((4, 4, 3, 3)).astype(
            np.float16
        ),
        "model.diffusion_model.out.2.bias": rng.standard_normal(4).astype(np.float16),
        "first_stage_model.decoder.conv_in.weight": rng.standard_normal((2, 2)).astype(np.float32),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": np.ones(3, np.float32),
    }
    unet = {
        "conv_in.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float16),
        "down_blocks.0.resnets.0.conv1.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float16),
        "conv_out.bias": rng.standard_normal(4).astype(np.float32),
    }
    _save(tmp_path / "base.safetensors", base)
    _save(tmp_path / "unet.safetensors", unet)
    return tmp_path, base, unet


def test_assemble_replaces_exactly_the_unet(small):
    from safetensors.numpy import load_file

    d, base, unet = small
    out = g.assemble_checkpoint(d / "base.safetensors", d / "unet.safetensors", d / "out.safetensors")
    got = load_file(str(out))
    assert set(got) == set(base)
    assert np.array_equal(got["model.diffusion_model.input_blocks.0.0.weight"], unet["conv_in.weight"])
    assert np.array_equal(
        got["model.diffusion_model.input_blocks.1.0.in_layers.2.weight"], unet["down_blocks.0.resnets.0.conv1.weight"]
    )
    assert got["model.diffusion_model.out.2.bias"].dtype == np.float32  # the UNet file's dtype is kept
    assert np.array_equal(
        got["first_stage_model.decoder.conv_in.weight"], base["first_stage_model.decoder.conv_in.weight"]
    )
    assert "gouache.assemble" in _header(out)[0]["__metadata__"]
    with pytest.raises(g.InvalidInputError, match="output file exists.*overwrite=True"):
        g.assemble_checkpoint(d / "base.safetensors", d / "unet.safetensors", out)
    g.assemble_checkpoint(d / "base.safetensors", d / "unet.safetensors", out, overwrite=True)
    with pytest.raises(g.InvalidInputError, match="must differ"):
        g.assemble_checkpoint(d / "base.safetensors", d / "unet.safetensors", d / "base.safetensors", overwrite=True)


def test_assemble_refuses_another_architecture(small):
    d, base, unet = small
    _save(d / "short.safetensors", {k: v for k, v in unet.items() if k != "conv_out.bias"})
    with pytest.raises(g.InvalidInputError, match=r"missing from unet: model\.diffusion_model\.out\.2\.bias"):
        g.assemble_checkpoint(d / "base.safetensors", d / "short.safetensors", d / "o1.safetensors")
    _save(d / "wide.safetensors", {**unet, "conv_in.weight": np.zeros((8, 4, 3, 3), np.float16)})
    with pytest.raises(g.InvalidInputError, match="shape differs: model.diffusion_model.input_blocks.0.0.weight"):
        g.assemble_checkpoint(d / "base.safetensors", d / "wide.safetensors", d / "o2.safetensors")
    _save(d / "vae.safetensors", {"encoder.conv_in.weight": np.zeros(2, np.float16)})
    with pytest.raises(g.InvalidInputError, match="is not a UNet"):
        g.assemble_checkpoint(d / "base.safetensors", d / "vae.safetensors", d / "o3.safetensors")
    with pytest.raises(g.InvalidInputError, match="has no UNet"):
        g.assemble_checkpoint(d / "unet.safetensors", d / "unet.safetensors", d / "o4.safetensors")
    assert not list(d.glob("o*.safetensors")) and not list(d.glob(".*.tmp"))


def test_cli_assemble(small, capsys):
    from gouache.cli import main

    d, _, _ = small
    assert (
        main(
            [
                "assemble",
                str(d / "base.safetensors"),
                str(d / "unet.safetensors"),
                "-o",
                str(d / "c.safetensors"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["path"] == str(d / "c.safetensors")
    assert (
        main(["assemble", str(d / "base.safetensors"), str(d / "unet.safetensors"), "-o", str(d / "c.safetensors")])
        == 2
    )
    assert "overwrite" in capsys.readouterr().err


@pytest.fixture
def big_tmp(tmp_path):
    """``tmp_path``, emptied after the test (pytest keeps the last runs' folders: not 6.9 GB each)."""
    yield tmp_path
    for path in tmp_path.iterdir():
        path.unlink()


@pytest.mark.forge_large
@pytest.mark.torch
@pytest.mark.slow
def test_sdxl_lightning_unet_assembled_and_loaded_by_both_engines(big_tmp):
    """Full size: forged SDXL base + a forged SDXL UNet in diffusers layout (seed 1, as
    SDXL-Lightning publishes it) -> one 6.9 GB file; every tensor's bytes come from the right
    source; sdcpp and torch both load it and generate, differently from the base (each load in its
    own subprocess)."""
    base, unet = forge.sdxl(), forge.sdxl_unet_diffusers()
    out = g.assemble_checkpoint(base, unet, big_tmp / "sdxl_lightning.safetensors")
    got, b, u = _digests(out), _digests(base), _digests(unet)
    mapping = _unet_names_to_ldm(list(u), "unet")
    expected = {
        **{k: v for k, v in b.items() if not k.startswith("model.diffusion_model.")},
        **{mapping[k]: v for k, v in u.items()},
    }
    assert got == expected
    assert g.inspect(out).family == g.Family.SDXL
    for engine in ("sdcpp", "torch"):
        lightning, plain = (_generated(engine, path, big_tmp / f"{engine}-{path.stem}.npy") for path in (out, base))
        assert lightning.std() > 1 and np.abs(lightning - plain).mean() > 1, engine


def _generated(engine: str, model, npy):
    """One 64x64 image of ``model`` on ``engine``, made in a subprocess that exits, so the full
    SDXL's memory (4.3 GB on sdcpp with q8_0 weights, ~7 GB in bf16 on torch) returns to the OS
    before the next load.  sdcpp quantizes as it loads: the same tensors are read and checked.
    torch gets bf16 on every CPU: "auto" picks fp32 on CPUs without AVX512-BF16, and SDXL in fp32
    is 14.5 GB (measured), over the test run's 12 GiB."""
    extra = ', weight_type="q8_0"' if engine == "sdcpp" else ', options=g.EngineOptions(precision="bf16")'
    proc = run_isolated(
        f"""
        import numpy as np
        import gouache as g
        with g.SDModel({str(model)!r}, engine={engine!r}{extra}) as m:
            image = m.generate("a vase", width=64, height=64, steps=1, cfg_scale=1.0, seed=5).images[0]
        np.save({str(npy)!r}, np.asarray(image))
        """,
        timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return np.load(npy).astype(float)
