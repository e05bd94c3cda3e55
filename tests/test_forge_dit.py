"""The forge's DiT families (Flux, Wan 2.1) and their companions (CLIP-L, Flux VAE, TAEHV).

Layout checks only (no engine generation): names and shapes the engine reads, block
counts, caching.  The engine runs are in test_dit_engine.py.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from safetensors import safe_open

from gouache._modelfiles import architecture
from gouache._modelfiles import headers as _modelfile
from gouache.testing import forge
from gouache.testing.forge import blocks, dit_family
from gouache.testing.forge.io import _spec_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "forge-cache"
    monkeypatch.setenv("GOUACHE_FORGE_CACHE", str(path))
    return path


def n_params(layout) -> int:
    return sum(int(np.prod(s)) for s in layout.values())


def infos(layout, prefix=""):
    return {prefix + k: _modelfile.TensorInfo("F16", v) for k, v in layout.items()}


# --------------------------------------------------------------------------- Flux


def test_flux_layout():
    L = forge._layout("flux")
    assert len(L) == 52 and n_params(L) == 5_092_928
    assert L["img_in.weight"] == (256, 64)  # 16 latent channels x 2x2 patch
    assert L["txt_in.weight"] == (256, 4096)  # T5-XXL width: the engine reads context_in_dim and hidden_size here
    assert L["vector_in.in_layer.weight"] == (256, 768)  # CLIP-L pooled
    assert L["time_in.in_layer.weight"] == (256, 256)
    assert L["guidance_in.out_layer.weight"] == (256, 256)
    assert L["double_blocks.0.img_attn.qkv.weight"] == (768, 256)
    assert L["double_blocks.0.txt_attn.norm.key_norm.scale"] == (128,)  # head_dim -> 2 heads
    assert L["double_blocks.0.img_mod.lin.weight"] == (1536, 256)
    assert L["double_blocks.0.txt_mlp.0.weight"] == (1024, 256)
    assert L["single_blocks.0.linear1.weight"] == (256 * 3 + 1024, 256)
    assert L["single_blocks.0.linear2.weight"] == (256, 256 + 1024)
    assert L["single_blocks.0.norm.key_norm.scale"] == (128,)
    assert L["single_blocks.0.modulation.lin.weight"] == (768, 256)
    assert L["final_layer.linear.weight"] == (64, 256)
    assert L["final_layer.adaLN_modulation.1.weight"] == (512, 256)
    # gouache's own architecture sniffing sees a Flux model without a text encoder
    assert architecture.is_flux(infos(L)) and architecture.is_flux(infos(L, "model.diffusion_model."))
    assert not architecture.has_text_encoder(infos(L))


def test_flux_options_change_the_layout():
    L = forge._layout("flux", hidden=384, depth=3, depth_single=2, guidance=False)
    assert not any(k.startswith("guidance_in.") for k in L)
    blocks = {int(k.split(".")[1]) for k in L if k.startswith("double_blocks.")}
    singles = {int(k.split(".")[1]) for k in L if k.startswith("single_blocks.")}
    assert blocks == {0, 1, 2} and singles == {0, 1}
    assert L["txt_in.weight"] == (384, 4096)
    assert L["double_blocks.2.img_attn.norm.query_norm.scale"] == (128,)  # 3 heads


def test_flux_bad_arguments(cache):
    for kw in ({"hidden": 200}, {"hidden": 0}, {"depth": 0}, {"depth_single": -1}, {"dtype": "bf16"}, {"seed": -1}):
        with pytest.raises(ValueError):
            forge.flux(**kw)
    with pytest.raises(ValueError):
        forge.flux_vae(decoder_ch=48)
    assert not cache.exists() or os.listdir(cache) == []


def test_flux_vae_layout():
    L = forge._layout("flux_vae")
    assert len(L) == 244 and n_params(L) == 83_819_683  # the real Flux ae.safetensors
    assert L["encoder.conv_in.weight"] == (128, 3, 3, 3)
    assert L["encoder.conv_out.weight"] == (32, 512, 3, 3)  # 2 x 16 latent channels
    assert L["decoder.conv_in.weight"] == (512, 16, 3, 3)
    assert L["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert not any("quant_conv" in k for k in L)
    small = forge._layout("flux_vae", decoder_ch=32)
    # the engine reads the decoder's ch from decoder.conv_in; its encoder is always ch=128
    assert small["decoder.conv_in.weight"] == (128, 16, 3, 3)
    assert {k: v for k, v in small.items() if k.startswith("encoder.")} == {
        k: v for k, v in L.items() if k.startswith("encoder.")
    }


def test_kl_halves_match_the_sd_vae():
    """The Flux VAE halves are the SD KL-VAE's (same block structure) minus the quant convs."""
    sd = {
        k[len("first_stage_model.") :]: v for k, v in forge._layout("sd1").items() if k.startswith("first_stage_model.")
    }
    halves = {
        n: s
        for part in (
            blocks._kl_encoder("encoder", 128, (1, 2, 4, 4), 2, 4),
            blocks._kl_decoder("decoder", 128, (1, 2, 4, 4), 2, 4),
        )
        for n, s, _ in part
    }
    assert halves == {k: v for k, v in sd.items() if "quant_conv" not in k}


def test_clip_l_layout():
    L = forge._layout("clip_l")
    sd1_clip = {
        k[len("cond_stage_model.transformer.") :]: v
        for k, v in forge._layout("sd1").items()
        if k.startswith("cond_stage_model.")
    }
    assert L == sd1_clip  # HF CLIPTextModel names; the engine adds text_encoders.clip_l.transformer.
    assert L["text_model.embeddings.token_embedding.weight"] == (49408, 768)


# --------------------------------------------------------------------------- Wan


def test_wan21_layout():
    L = forge._layout("wan21_t2v")
    blocks = {int(k.split(".")[1]) for k in L if k.startswith("blocks.")}
    assert blocks == set(range(30))  # the engine aborts on any count but 30 or 40
    assert len(L) == 825 and n_params(L) == 1_418_996_800
    assert L["patch_embedding.weight"] == (1536, 16, 1, 2, 2)  # Conv3d, 1x2x2 patches
    assert L["text_embedding.0.weight"] == (1536, 4096)
    assert L["time_embedding.0.weight"] == (1536, 256)
    assert L["time_projection.1.weight"] == (9216, 1536)
    assert L["blocks.29.modulation"] == (1, 6, 1536)
    assert L["blocks.0.self_attn.q.weight"] == (1536, 1536)
    assert L["blocks.0.cross_attn.norm_k.weight"] == (1536,)  # the engine's Wan marker
    assert L["blocks.0.norm3.bias"] == (1536,)
    assert L["blocks.0.ffn.0.weight"] == (8960, 1536)
    assert L["blocks.0.ffn.2.weight"] == (1536, 8960)
    assert L["head.modulation"] == (1, 2, 1536)
    assert L["head.head.weight"] == (64, 1536)  # 16 channels x 1x2x2
    assert not any("img_emb" in k or "vace" in k for k in L)  # T2V, not I2V/VACE
    assert architecture.wan_block_count(infos(L)) == 30
    assert architecture.wan_block_count(infos(L, "model.diffusion_model.")) == 30
    assert forge.WAN21_1_3B["num_heads"] == 12 and 1536 // 12 == 128


def test_taehv_layout():
    L = forge._layout("taehv")
    dec = {k for k in L if k.startswith("decoder.")}
    enc = {k for k in L if k.startswith("encoder.")}
    assert len(dec) == 64 and len(enc) == 64 and len(L) == 128
    assert {int(k.split(".")[1]) for k in dec} == {1, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 19, 20, 22}
    assert L["decoder.1.weight"] == (256, 16, 3, 3)  # Wan 2.1: 16 latent channels
    assert L["decoder.3.conv.0.weight"] == (256, 512, 3, 3)  # MemBlock sees [x, past]
    assert L["decoder.7.conv.weight"] == (256, 256, 1, 1)  # TGrow, stride 1
    assert L["decoder.13.conv.weight"] == (256, 128, 1, 1)  # TGrow, stride 2
    assert L["decoder.8.weight"] == (128, 256, 3, 3) and "decoder.8.bias" not in L
    assert L["decoder.22.weight"] == (3, 64, 3, 3)
    assert L["encoder.0.weight"] == (64, 3, 3, 3)
    assert L["encoder.2.conv.weight"] == (64, 128, 1, 1)  # TPool, stride 2
    assert L["encoder.12.conv.weight"] == (64, 64, 1, 1)  # TPool, stride 1
    assert L["encoder.17.weight"] == (16, 64, 3, 3)
    assert forge._layout("taehv", encoder=False).keys() == dec


def test_wan22_ti2v_5b_layout_is_detected_as_the_engine_does():
    from gouache._modelfiles.families import Family, detect_family

    L = forge._layout("wan22_ti2v")
    assert L["patch_embedding.weight"] == (3072, 48, 1, 2, 2)  # 3072 x 48: the engine's TI2V marker
    assert L["blocks.29.ffn.0.weight"] == (14336, 3072) and "blocks.30.ffn.0.weight" not in L
    assert L["head.head.weight"] == (192, 3072)  # 48 channels x 1x2x2
    assert detect_family(infos(L)) == (Family.WAN2_2, "ti2v_5b")
    n = sum(int(np.prod(v)) for v in L.values())
    assert 4.9e9 < n < 5.1e9, n  # the real model's size: the engine derives nothing smaller


def test_taehv_wan22_layout():
    from gouache._modelfiles.families import _taesd_variant

    L = forge._layout("taehv", latent="wan2.2")
    assert L["decoder.1.weight"] == (256, 48, 3, 3)  # 48 latent channels
    assert L["decoder.22.weight"] == (12, 64, 3, 3)  # 3 channels x 2x2 pixel patches
    assert L["encoder.0.weight"] == (64, 12, 3, 3) and L["encoder.17.weight"] == (48, 64, 3, 3)
    assert _taesd_variant(infos(L)) == "48ch_video"
    assert L.keys() == forge._layout("taehv").keys()
    with pytest.raises(ValueError, match="latent must be one of"):
        forge.taehv(latent="wan3")


# --------------------------------------------------------------------------- writing and caching


def test_small_dit_files_cached_by_spec(cache):
    files = {
        "flux": forge.flux(),
        "flux_vae": forge.flux_vae(decoder_ch=32),
        "clip_l": forge.clip_l(),
        "taehv": forge.taehv(),
    }
    for kind, p in files.items():
        assert re.fullmatch(rf"{kind}-[0-9a-f]{{12}}\.safetensors", p.name)
        assert forge.spec_of(p)["kind"] == kind
    assert forge.spec_of(files["flux"]) == {
        "kind": "flux",
        "forge_version": forge.FORGE_VERSION,
        "dtype": "f16",
        "seed": 0,
        "depth": 1,
        "depth_single": 1,
        "hidden": 256,
        "guidance": True,
    }
    st = files["flux"].stat()
    again = forge.flux(dtype="f16", seed=0, depth=1, depth_single=1, hidden=256, guidance=True)
    assert again == files["flux"] and again.stat().st_mtime_ns == st.st_mtime_ns
    assert forge.flux(seed=1) != files["flux"]
    assert (
        _spec_path("flux", {"dtype": "f16", "seed": 0, "depth": 1, "depth_single": 1, "hidden": 256, "guidance": True})
        == files["flux"]
    )
    with safe_open(str(files["flux"]), framework="numpy") as f:
        assert f.get_slice("double_blocks.0.img_attn.qkv.weight").get_dtype() == "F16"
        scale = f.get_tensor("single_blocks.0.norm.key_norm.scale")
        qkv = f.get_tensor("double_blocks.0.img_attn.qkv.weight").astype(np.float32)
    assert (scale == 1).all()
    assert abs(qkv.std() - 0.02) < 0.001
    with safe_open(str(files["taehv"]), framework="numpy") as f:
        assert f.get_slice("decoder.1.weight").get_dtype() == "F32"
        assert abs(float(f.get_tensor("decoder.22.bias").mean()) - 0.5) < 0.05  # mid-grey output
    assert sorted(os.listdir(cache)) == sorted([p.name for p in files.values()] + [forge.flux(seed=1).name])


def test_wan_gguf_pipeline(cache, monkeypatch):
    """wan21_t2v_gguf: f16 source in a temporary file, engine converter, only the .gguf stays.

    Run on a 30-block miniature (narrow widths) so that no 2.8 GB source is written here.
    """
    mini = dict(forge.WAN21_1_3B, dim=64, ffn_dim=64, num_heads=1, text_dim=64)
    monkeypatch.setattr(dit_family, "WAN21_1_3B", mini)
    p = forge.wan21_t2v_gguf(wtype="q8_0")
    assert re.fullmatch(r"gguf_wan21_t2v_q8_0-[0-9a-f]{12}\.gguf", p.name)
    assert os.listdir(cache) == [p.name]  # the temporary f16 source is gone
    tensors = _modelfile.read_tensors(p)
    assert architecture.wan_block_count(tensors) == 30
    assert tensors["blocks.0.ffn.0.weight"].dtype == "Q8_0"
    # the engine stores the Conv3d weight (dim, 16, 1, 2, 2) folded to 4 dims, as it loads it
    assert tensors["patch_embedding.weight"].shape == (16 * 64, 1, 2, 2)
    mtime = p.stat().st_mtime_ns
    assert forge.wan21_t2v_gguf(wtype="q8_0") == p and p.stat().st_mtime_ns == mtime
    # with the f16 source already cached, it is used and kept
    src = forge.wan21_t2v()
    q4 = forge.wan21_t2v_gguf(wtype="q4_0")
    assert sorted(os.listdir(cache)) == sorted([p.name, src.name, q4.name])
    assert forge.wan21_t2v_gguf(seed=1, wtype="q8_0") != p
