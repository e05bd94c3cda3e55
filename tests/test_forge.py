"""Tests of the random-weight model forge itself (no engine needed)."""

import hashlib
import os
import re

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from gouache.testing import forge
from gouache.testing.forge import io as forge_io
from gouache.testing.forge.sd1_family import _ldm_to_diffusers_block


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "forge-cache"
    monkeypatch.setenv("GOUACHE_FORGE_CACHE", str(path))
    return path


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(path):
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def shapes(path):
    with safe_open(str(path), framework="numpy") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


# --------------------------------------------------------------------------- cache


def test_cache_dir_env_override(cache):
    assert not cache.exists()
    assert forge.cache_dir() == cache
    assert cache.is_dir()
    p = forge.taesd()
    assert p.parent == cache


def test_cache_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("GOUACHE_FORGE_CACHE", raising=False)
    monkeypatch.delenv("GOUACHE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert forge.cache_dir() == tmp_path / ".cache" / "gouache" / "forge"
    monkeypatch.setenv("GOUACHE_CACHE", str(tmp_path / "elsewhere"))
    assert forge.cache_dir() == tmp_path / "elsewhere" / "forge"
    assert forge.cache_dir().is_dir()


def test_cached_file_is_not_rewritten(cache):
    p1 = forge.esrgan_x4()
    st1 = p1.stat()
    p2 = forge.esrgan_x4()
    st2 = p2.stat()
    assert p1 == p2
    assert (st1.st_mtime_ns, st1.st_ino) == (st2.st_mtime_ns, st2.st_ino)
    assert re.fullmatch(r"esrgan_x4-[0-9a-f]{12}\.safetensors", p1.name)
    assert sorted(os.listdir(cache)) == [p1.name]  # no temporary files left behind


def test_failed_write_leaves_nothing(cache, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(forge_io, "_materialize", boom)
    with pytest.raises(RuntimeError, match="boom"):
        forge.taesd()
    assert os.listdir(cache) == []


def test_spec_in_metadata(cache):
    p = forge.lora_sd1_tiny(naming="ldm", rank=2, seed=3, target="all")
    _, meta = read(p)
    assert meta["gouache.forge"] == "lora_sd1_tiny"
    spec = forge.spec_of(p)
    assert spec == {
        "kind": "lora_sd1_tiny",
        "forge_version": forge.FORGE_VERSION,
        "dtype": "f32",
        "seed": 3,
        "naming": "ldm",
        "rank": 2,
        "target": "all",
        "base": "sd1_tiny",
    }
    assert spec == forge.spec_of(str(p))


def test_spec_of_rejects_foreign_file(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(ValueError):
        forge.spec_of(p)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "make",
    [forge.taesd, forge.esrgan_x4, forge.lora_sd1, lambda seed: forge.lora_sd1_tiny(naming="ldm", seed=seed)],
    ids=["taesd", "esrgan_x4", "lora_sd1", "lora_sd1_tiny"],
)
def test_deterministic_per_seed(tmp_path, monkeypatch, make):
    monkeypatch.setenv("GOUACHE_FORGE_CACHE", str(tmp_path / "a"))
    a0 = make(seed=0)
    a1 = make(seed=1)
    monkeypatch.setenv("GOUACHE_FORGE_CACHE", str(tmp_path / "b"))
    b0 = make(seed=0)
    assert a0.name == b0.name and sha(a0) == sha(b0)
    assert a1.name != a0.name and sha(a1) != sha(a0)


def test_bad_arguments(cache):
    with pytest.raises(ValueError):
        forge.sd1(dtype="bf16")
    with pytest.raises(ValueError):
        forge.lora_sd1(naming="peft")
    with pytest.raises(ValueError):
        forge.lora_sd1(target="vae")
    with pytest.raises(ValueError):
        forge.lora_sd1(rank=0)
    with pytest.raises(ValueError):
        forge.taesd(seed=-1)
    assert not cache.exists() or os.listdir(cache) == []


# --------------------------------------------------------------------------- layouts (no writing)


def test_sd1_layout():
    L = forge._layout("sd1")
    unet = {k: v for k, v in L.items() if k.startswith("model.diffusion_model.")}
    clip = {k: v for k, v in L.items() if k.startswith("cond_stage_model.transformer.text_model.")}
    vae = {k: v for k, v in L.items() if k.startswith("first_stage_model.")}
    # tensor counts of the real SD1.5 checkpoint parts, as the engine loads them
    assert (len(unet), len(clip), len(vae), len(L)) == (686, 196, 248, 1130)
    u = "model.diffusion_model."
    assert L[u + "input_blocks.0.0.weight"] == (320, 4, 3, 3)
    assert L[u + "time_embed.0.weight"] == (1280, 320)
    assert L[u + "input_blocks.3.0.op.weight"] == (320, 320, 3, 3)
    assert L[u + "input_blocks.4.0.skip_connection.weight"] == (640, 320, 1, 1)
    assert L[u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)
    assert L[u + "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight"] == (2560, 320)
    assert L[u + "middle_block.1.proj_in.weight"] == (1280, 1280, 1, 1)
    assert L[u + "output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)
    assert L[u + "output_blocks.11.0.in_layers.0.weight"] == (640,)
    assert L[u + "out.2.weight"] == (4, 320, 3, 3)
    assert not any(k.startswith(u + "input_blocks.10.1") for k in L)  # no attention at ds=8
    t = "cond_stage_model.transformer.text_model."
    assert L[t + "embeddings.token_embedding.weight"] == (49408, 768)
    assert L[t + "embeddings.position_embedding.weight"] == (77, 768)
    assert L[t + "encoder.layers.11.mlp.fc1.weight"] == (3072, 768)
    assert t + "encoder.layers.12.mlp.fc1.weight" not in L
    v = "first_stage_model."
    assert L[v + "encoder.conv_out.weight"] == (8, 512, 3, 3)
    assert L[v + "quant_conv.weight"] == (8, 8, 1, 1)
    assert L[v + "post_quant_conv.weight"] == (4, 4, 1, 1)
    assert L[v + "decoder.conv_in.weight"] == (512, 4, 3, 3)
    assert L[v + "decoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert L[v + "decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert L[v + "decoder.conv_out.weight"] == (3, 128, 3, 3)


def test_sdxs_layout():
    L = forge._layout("sdxs")
    u = "model.diffusion_model."
    assert not any(k.startswith(u + "middle_block.") for k in L)
    assert not any(k.startswith(u + "output_blocks.7.1") for k in L)  # -> engine picks SDXS (512-DS)
    assert not any(k.startswith(u + "input_blocks.1.1") for k in L)
    assert L["first_stage_model.decoder.layers.18.weight"] == (3, 64, 3, 3)
    assert L["first_stage_model.encoder.layers.0.weight"] == (64, 3, 3, 3)
    assert len(L) == 280 + 196 + 134


def test_controlnet_layout():
    L = forge._layout("controlnet_sd1")
    c = "control_model."
    assert len(L) == 340
    assert all(k.startswith(c) for k in L)
    assert L[c + "input_hint_block.0.weight"] == (16, 3, 3, 3)
    assert L[c + "input_hint_block.14.weight"] == (320, 256, 3, 3)
    assert [k for k in L if k.startswith(c + "zero_convs.") and k.endswith(".weight")] == [
        f"{c}zero_convs.{i}.0.weight" for i in range(12)
    ]
    assert L[c + "zero_convs.11.0.weight"] == (1280, 1280, 1, 1)
    assert L[c + "middle_block_out.0.weight"] == (1280, 1280, 1, 1)
    assert c + "middle_block.1.transformer_blocks.0.attn1.to_q.weight" in L
    assert not any(k.startswith(c + "output_blocks.") or k.startswith(c + "out.") for k in L)


def test_kohya_block_names_match_engine_table():
    to_diffusers = _ldm_to_diffusers_block
    assert to_diffusers("input_blocks.1.1.proj_in") == "down_blocks.0.attentions.0.proj_in"
    assert to_diffusers("input_blocks.8.1.proj_in") == "down_blocks.2.attentions.1.proj_in"
    assert to_diffusers("output_blocks.0.1.proj_in") == "up_blocks.0.attentions.0.proj_in"
    assert to_diffusers("output_blocks.11.1.proj_in") == "up_blocks.3.attentions.2.proj_in"
    assert to_diffusers("middle_block.1.proj_in") == "mid_block.attentions.0.proj_in"


# --------------------------------------------------------------------------- written files


def test_sd1_tiny_file():
    # Uses the shared cache (or $GOUACHE_FORGE_CACHE): ~1 GB, written once.
    p = forge.sd1_tiny()
    assert p == forge.sd1_tiny()
    S = shapes(p)
    u = "model.diffusion_model."
    assert S == forge._layout("sd1_tiny")
    assert len(S) == 358 + 196 + 248
    assert S[u + "input_blocks.0.0.weight"] == (320, 4, 3, 3)
    assert not any(k.startswith(u + "middle_block.") for k in S)
    # distilled-UNet numbering used by the engine (BK-SDM layout)
    for block in ("input_blocks.1.1", "input_blocks.4.1", "input_blocks.7.1", "output_blocks.7.1"):
        assert u + block + ".proj_in.weight" in S
    assert u + "input_blocks.3.0.op.weight" in S and u + "input_blocks.6.0.op.weight" in S
    assert u + "output_blocks.2.1.conv.weight" in S and u + "output_blocks.5.2.conv.weight" in S
    assert not any(k.startswith((u + "input_blocks.2.", u + "input_blocks.9.", u + "output_blocks.8.")) for k in S)
    assert S["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)

    with safe_open(str(p), framework="numpy") as f:
        assert f.metadata()["gouache.forge"] == "sd1_tiny"
        gn = f.get_tensor(u + "input_blocks.1.0.in_layers.0.weight")
        ln = f.get_tensor("cond_stage_model.transformer.text_model.encoder.layers.0.layer_norm1.weight")
        vn = f.get_tensor("first_stage_model.decoder.norm_out.weight")
        for norm in (gn, ln, vn):
            assert norm.dtype == np.float16
            assert np.all(norm == 1)
        bias = f.get_tensor("first_stage_model.decoder.norm_out.bias").astype(np.float32)
        assert 0.005 < bias.std() < 0.05
        w = f.get_tensor(u + "output_blocks.7.1.transformer_blocks.0.ff.net.0.proj.weight").astype(np.float32)
        assert abs(w.mean()) < 0.001 and 0.019 < w.std() < 0.021


def test_taesd_file(cache):
    p = forge.taesd()
    tensors, meta = read(p)
    assert meta["gouache.forge"] == "taesd"
    assert len(tensors) == 134
    assert tensors["encoder.layers.0.weight"].shape == (64, 3, 3, 3)
    assert tensors["encoder.layers.14.weight"].shape == (4, 64, 3, 3)
    assert tensors["decoder.layers.0.weight"].shape == (64, 4, 3, 3)
    assert tensors["decoder.layers.3.conv.4.weight"].shape == (64, 64, 3, 3)
    assert tensors["decoder.layers.18.weight"].shape == (3, 64, 3, 3)
    assert "decoder.layers.6.weight" in tensors and "decoder.layers.6.bias" not in tensors  # bias-free conv
    assert "decoder.layers.1.weight" not in tensors  # ReLU
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert abs(tensors["decoder.layers.18.bias"].mean() - 0.5) < 0.05  # mid-grey output


def test_esrgan_file(cache):
    p = forge.esrgan_x4()
    tensors, _ = read(p)
    assert len(tensors) == 42
    assert tensors["conv_first.weight"].shape == (64, 3, 3, 3)
    assert tensors["body.0.rdb1.conv1.weight"].shape == (32, 64, 3, 3)
    assert tensors["body.0.rdb3.conv5.weight"].shape == (64, 192, 3, 3)
    assert "conv_up1.weight" in tensors and "conv_up2.weight" in tensors  # -> scale 4
    assert not any(k.startswith("body.1.") for k in tensors)
    assert tensors["conv_last.weight"].shape == (3, 64, 3, 3)


@pytest.mark.parametrize("base", ["sd1", "sd1_tiny"])
def test_lora_kohya_names(cache, base):
    p = forge.lora_sd1(base=base, target="all")
    tensors, _ = read(p)
    n_unet = len([k for k in tensors if k.startswith("lora_unet_")])
    n_te = len([k for k in tensors if k.startswith("lora_te_")])
    assert n_unet + n_te == len(tensors)
    assert n_te == 12 * 6 * 3  # q, k, v, out, fc1, fc2 per layer; down, up, alpha each
    assert n_unet == (16 if base == "sd1" else 9) * 8 * 3  # attn1/attn2 q, k, v, out per transformer
    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    assert tensors[k + ".lora_down.weight"].shape == (4, 768)
    assert tensors[k + ".lora_up.weight"].shape == (320, 4)
    assert tensors[k + ".alpha"].shape == () and float(tensors[k + ".alpha"]) == 4.0
    assert "lora_unet_up_blocks_2_attentions_1_transformer_blocks_0_attn1_to_out_0.lora_up.weight" in tensors
    assert ("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha" in tensors) == (base == "sd1")
    fc1 = tensors["lora_te_text_model_encoder_layers_11_mlp_fc1.lora_up.weight"]
    assert fc1.shape == (3072, 4)
    assert 0.1 < fc1.std() < 0.3  # strong enough to change the image


def test_lora_ldm_names_and_targets(cache):
    unet = read(forge.lora_sd1(naming="ldm", rank=8))[0]
    te = read(forge.lora_sd1(naming="ldm", rank=8, target="te"))[0]
    both = read(forge.lora_sd1(naming="ldm", rank=8, target="all"))[0]
    assert set(both) == set(unet) | set(te) and not set(unet) & set(te)
    assert all(k.startswith("model.diffusion_model.") for k in unet)
    assert all(k.startswith("cond_stage_model.transformer.text_model.encoder.layers.") for k in te)
    k = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q"
    assert unet[k + ".lora_down.weight"].shape == (8, 1280)
    assert unet[k + ".lora_up.weight"].shape == (1280, 8)
    assert float(unet[k + ".alpha"]) == 8.0
    assert te["cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.out_proj.lora_down.weight"].shape == (
        8,
        768,
    )
    # every LoRA module is a real module of the model it targets
    layout = forge._layout("sd1")
    for name in both:
        if name.endswith(".lora_up.weight"):
            module = name[: -len(".lora_up.weight")]
            assert layout[module + ".weight"] == (both[name].shape[0], both[module + ".lora_down.weight"].shape[1])


def test_lcm_lora_has_the_published_layer_set(cache):
    """lcm-lora-sdv1-5: 278 modules (834 tensors), 67.25M parameters, rank 64, convs as 4-D LoRAs."""
    tensors, _ = read(forge.lcm_lora_sd1())
    assert len(tensors) == 834 and all(k.startswith("lora_unet_") for k in tensors)
    assert sum(t.size for t in tensors.values()) == 67_252_502
    conv = "lora_unet_down_blocks_1_resnets_0_conv1"
    assert tensors[conv + ".lora_down.weight"].shape == (64, 320, 3, 3)
    assert tensors[conv + ".lora_up.weight"].shape == (640, 64, 1, 1)
    for module in (
        "down_blocks_0_downsamplers_0_conv",
        "up_blocks_0_upsamplers_0_conv",
        "mid_block_resnets_1_conv2",
        "down_blocks_1_resnets_0_conv_shortcut",
        "up_blocks_3_resnets_2_time_emb_proj",
        "mid_block_attentions_0_proj_in",
        "up_blocks_1_attentions_2_transformer_blocks_0_ff_net_2",
    ):
        assert f"lora_unet_{module}.alpha" in tensors, module
    with pytest.raises(ValueError, match="base 'sd1'"):
        forge.lora_sd1(target="lcm", base="sd1_tiny")
