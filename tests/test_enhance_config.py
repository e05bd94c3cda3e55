"""EnhanceConfig (defaults, presets, environment, checks), device= and finding the models.

No model is loaded here: resolution runs on small files, the forged SD1 header, a filled
Hugging Face cache and, for "the Hub answers", the hub calls replaced at the network edge.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from gouache import InvalidInputError, MissingDependencyError
from gouache._modelfiles.catalog import RECIPES, DownloadError
from gouache.enhance import EnhanceConfig, EnhanceService, SDXLLightningPipeline, denoising_steps
from gouache.enhance._models import auto_controlnet, resolve_depth_model, resolve_model
from gouache.testing import forge

from .enhance_support import fill_hf_cache

pytestmark = pytest.mark.usefixtures("clean_env")


# --------------------------------------------------------------------------- defaults and presets


def test_defaults_are_the_production_models():
    c = EnhanceConfig()
    assert (c.model, c.controlnet, c.depth_model) == ("sdxl-lightning-4step", "auto", "MiDaS_small")
    assert c.use_controlnet and c.optimize_memory and c.auto_depth and c.device == "auto"
    assert c.model in RECIPES and RECIPES[c.model] == ("ByteDance/SDXL-Lightning", "sdxl_lightning_4step.safetensors")
    c.check()


def test_presets_carry_the_documented_values():
    t4 = EnhanceConfig.for_t4_gpu()
    assert (t4.lightning_steps, t4.use_controlnet, t4.optimize_memory, t4.depth_model) == (4, True, True, "MiDaS_small")
    quality = EnhanceConfig.for_quality()
    assert quality.strength == 0.65 and quality.depth_model == "DPT_Large"
    speed = EnhanceConfig.for_speed()
    assert (speed.lightning_steps, speed.strength) == (2, 0.5) and speed.depth_model == "MiDaS_small"
    cpu = EnhanceConfig.for_cpu()
    assert cpu.device == "cpu" and cpu.working_size == 512
    assert EnhanceConfig.for_speed(strength=0.3).strength == 0.3  # explicit values win over the preset's
    for preset in (t4, quality, speed, cpu):
        preset.check()


def test_fields_are_settable_and_checked_when_used():
    """The README's troubleshooting code, then a bad value that only using the config finds."""
    config = EnhanceConfig()
    config.optimize_memory = True
    config.lightning_steps = 2  # Fewer steps
    config.use_controlnet = False  # Disable if needed
    config.check()
    assert config.steps == 2
    config.lightning_steps = 0
    with pytest.raises(InvalidInputError, match="steps must be an integer >= 1; got 0"):
        EnhanceService(config)
    config.lightning_steps = 2
    config.strength = 1.5
    with pytest.raises(InvalidInputError, match=r"strength must be in \(0, 1\]; got 1.5"):
        config.check()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("working_size", 100, "working_size must be a multiple of 64"),
        ("output_size", "big", "output_size must be one of 'input', 'working'"),
        ("color_match", "warm", "color_match must be one of None"),
        ("engine", "onnx", "engine must be one of 'auto', 'sdcpp', 'torch'"),
        ("device", "gpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("use_controlnet", "yes", "use_controlnet must be True or False"),
        ("controlnet_scale", 11, r"controlnet_scale must be a number in \[0, 10\]"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("threads", 0, "threads must be 'auto' or an integer >= 1"),
        ("loras", (("a.safetensors",),), r"loras must be \(\(path, weight\), ...\)"),
        ("model", "", "model must be a file path, a catalog name"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    config = EnhanceConfig()
    setattr(config, field, value)
    with pytest.raises(InvalidInputError, match=message):
        config.check()


def test_controlnet_needed_when_used_and_memory_switch_consistent():
    with pytest.raises(InvalidInputError, match="use_controlnet is True but controlnet is None"):
        EnhanceConfig(controlnet=None).check()
    EnhanceConfig(controlnet=None, use_controlnet=False).check()
    with pytest.raises(InvalidInputError, match="optimize_memory is False but memory_preset is 't4_minimal'"):
        EnhanceConfig(optimize_memory=False, memory_preset="t4_minimal").check()
    assert EnhanceConfig(optimize_memory=False).memory_preset_name() == "none"
    assert EnhanceConfig().memory_preset_name() == "auto"


@pytest.mark.parametrize("steps, strength", [(1, 0.1), (2, 0.3), (4, 0.5), (2, 0.5), (1, 1.0), (3, 0.65)])
def test_denoising_steps_never_zero(steps, strength):
    total = denoising_steps(steps, strength)
    assert int(total * strength) >= steps and total >= steps


# --------------------------------------------------------------------------- environment


def test_environment_overrides_defaults_and_presets_but_not_arguments(clean_env):
    clean_env.setenv("GOUACHE_ENHANCE_MODEL", "/models/custom.safetensors")
    clean_env.setenv("GOUACHE_ENHANCE_CONTROLNET", "none")
    clean_env.setenv("GOUACHE_DEPTH_MODEL", "/models/depth.onnx")
    clean_env.setenv("GOUACHE_ENHANCE_WORKING_SIZE", "512")
    clean_env.setenv("GOUACHE_ENHANCE_ENGINE", "torch")
    clean_env.setenv("GOUACHE_ENHANCE_USE_CONTROLNET", "off")
    clean_env.setenv("GOUACHE_ENHANCE_LIGHTNING_STEPS", "3")
    clean_env.setenv("GOUACHE_ENHANCE_LORAS", '[["lightning.safetensors", 0.8]]')
    c = EnhanceConfig()
    assert (c.model, c.controlnet, c.depth_model) == ("/models/custom.safetensors", None, "/models/depth.onnx")
    assert (c.working_size, c.engine, c.use_controlnet, c.lightning_steps) == (512, "torch", False, 3)
    assert c.loras == (("lightning.safetensors", 0.8),)
    assert EnhanceConfig.for_speed().lightning_steps == 3  # the environment beats the preset
    assert EnhanceConfig(working_size=256).working_size == 256  # an argument beats the environment
    assert dataclasses.replace(c, seed=7).working_size == 512


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("GOUACHE_ENHANCE_WORKING_SIZE", "big", r"GOUACHE_ENHANCE_WORKING_SIZE='big' is not a valid working_size"),
        ("GOUACHE_ENHANCE_USE_CONTROLNET", "maybe", "not a valid use_controlnet"),
        (
            "GOUACHE_ENHANCE_STEPS",
            "2",
            "unknown environment variable GOUACHE_ENHANCE_STEPS; known: .*GOUACHE_ENHANCE_LIGHTNING_STEPS",
        ),
        ("GOUACHE_ENHANCE_DEPTH_MODEL", "x", "the depth model's variable is GOUACHE_DEPTH_MODEL"),
    ],
)
def test_bad_environment_is_named(clean_env, name, value, message):
    clean_env.setenv(name, value)
    with pytest.raises(InvalidInputError, match=message):
        EnhanceConfig()


# --------------------------------------------------------------------------- device


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error_before_anything_loads(device, monkeypatch):
    import torch

    # what PyTorch reports on a machine without a GPU (or with CUDA_VISIBLE_DEVICES=""), here and on GPU machines
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match=rf"device '{device}': PyTorch .* sees no CUDA GPU"):
        EnhanceService(device=device)
    with pytest.raises(InvalidInputError, match="sees no CUDA GPU"):
        SDXLLightningPipeline("cuda", 4, True)


def test_cuda_needs_the_torch_engine():
    with pytest.raises(InvalidInputError, match="device 'cuda' needs the torch engine"):
        EnhanceService(EnhanceConfig(engine="sdcpp"), device="cuda")


def test_device_argument_is_used_and_leaves_the_config_alone():
    config = EnhanceConfig()
    service = EnhanceService(config, device="cpu")
    assert service.config.device == "cpu" and service.device == "cpu" and config.device == "auto"
    assert service.pipeline.config.device == "cpu"
    lean = EnhanceService(device="cpu", optimize_memory=False)  # Glimpse3D's service took this too
    assert lean.config.memory_preset_name() == "none"


def test_missing_torch_for_cuda_names_the_extra(monkeypatch):
    from gouache.enhance import _device

    monkeypatch.setattr(_device, "_torch", lambda: None)
    with pytest.raises(MissingDependencyError, match=r"gouache\[torch\]"):
        EnhanceService(device="cuda:0")


# --------------------------------------------------------------------------- finding the models


def test_paths_are_used_as_they_are(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    assert resolve_model(f, "model", "checkpoint") == f
    with pytest.raises(InvalidInputError, match="model 'nope.safetensors' is neither a file nor a catalog name"):
        resolve_model("nope.safetensors", "model", "checkpoint")


def test_catalog_names_found_in_model_folders(clean_env, tmp_path):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "controlnet").mkdir(parents=True)
    ckpt = comfy / "checkpoints" / "sdxl_lightning_4step.safetensors"
    ckpt.write_bytes(b"x")
    cn = comfy / "controlnet" / "diffusion_pytorch_model.fp16.safetensors"
    cn.write_bytes(b"x")
    plain = tmp_path / "plain"
    plain.mkdir()
    clean_env.setenv("GOUACHE_MODEL_DIRS", f"{plain}:{tmp_path / 'ComfyUI'}")
    assert resolve_model("sdxl-lightning-4step", "model", "checkpoint") == ckpt
    assert resolve_model("controlnet-depth-sdxl", "controlnet", "controlnet") == cn


def test_catalog_names_found_in_the_hugging_face_cache(tmp_path):
    repo, filename = RECIPES["sdxl-lightning-4step"]
    snapshot = fill_hf_cache(tmp_path / "hf_home" / "hub", repo, {filename: b"weights"})
    assert resolve_model("sdxl-lightning-4step", "model", "checkpoint") == snapshot / filename


def test_hf_home_chooses_the_cache(clean_env, tmp_path):
    import os

    repo, filename = RECIPES["controlnet-depth-sd15"]
    snapshot = fill_hf_cache(tmp_path / "content" / "hf_cache" / "hub", repo, {filename: b"cn"})
    os.environ["HF_HOME"] = str(tmp_path / "content" / "hf_cache")  # as the README's "Model Download Issues"
    assert resolve_model("controlnet-depth-sd15", "controlnet", "controlnet") == snapshot / filename


def test_missing_model_offline_is_one_line_naming_the_pull_command():
    with pytest.raises(DownloadError) as info:
        resolve_model("sdxl-lightning-4step", "model", "checkpoint")
    message = str(info.value)
    assert "\n" not in message
    assert "`gouache pull sdxl-lightning-4step`" in message and "GOUACHE_ENHANCE_MODEL" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_unreachable_hub_fails_fast_with_the_pull_command(clean_env):
    clean_env.delenv("HF_HUB_OFFLINE")
    with pytest.raises(DownloadError, match=r"cannot be reached \(OSError\); run `gouache pull controlnet-depth-sdxl`"):
        resolve_model("controlnet-depth-sdxl", "controlnet", "controlnet")


def test_reachable_hub_fetches_with_progress(clean_env, tmp_path, caplog):
    """The Hub answers (the connection probe succeeds): the file is downloaded once through
    huggingface_hub, whose progress bar shows; its calls are replaced here (no hub)."""
    import socket

    import huggingface_hub

    clean_env.delenv("HF_HUB_OFFLINE")
    clean_env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    clean_env.setattr(socket, "create_connection", lambda *a, **k: socket.socket())
    calls = []

    def download(repo, filename, **kw):
        if kw["local_files_only"]:
            raise type("LocalEntryNotFoundError", (Exception,), {})("not cached")
        calls.append((repo, filename))
        return str(tmp_path / filename)

    clean_env.setattr(huggingface_hub, "hf_hub_download", download)
    with caplog.at_level(logging.WARNING, logger="gouache.enhance"):
        got = resolve_depth_model("MiDaS_small")
    assert got == (tmp_path / "onnx/model.onnx", "depth_anything")
    assert calls == [("onnx-community/depth-anything-v2-small", "onnx/model.onnx")]
    assert "downloading onnx/model.onnx" in caplog.text


def test_depth_model_names_prefer_local_files(clean_env, tmp_path):
    folder = tmp_path / "depth"
    folder.mkdir()
    (folder / "dpt_large.onnx").write_bytes(b"x")
    clean_env.setenv("GOUACHE_DEPTH_MODELS", str(folder))
    assert resolve_depth_model("DPT_Large") == (folder / "dpt_large.onnx", None)
    with pytest.raises(
        DownloadError,
        match=r"looked for midas_small.onnx.*gouache pull onnx-community/depth-anything-v2-small onnx/model.onnx",
    ):
        resolve_depth_model("MiDaS_small")
    with pytest.raises(InvalidInputError, match="DPT_Hybrid.*not found.*GOUACHE_DEPTH_MODEL"):
        resolve_depth_model("DPT_Hybrid")
    with pytest.raises(InvalidInputError, match="neither an .onnx file nor a depth model name"):
        resolve_depth_model("zoe")


def test_auto_controlnet_follows_the_model_family():
    assert auto_controlnet(forge.sd1_tiny()) == "controlnet-depth-sd15"
    assert auto_controlnet(Path(forge.sd1())) == "controlnet-depth-sd15"


def test_pipeline_resolves_every_file(clean_env, tmp_path):
    clean_env.setenv("GOUACHE_ENHANCE_MODEL", str(forge.sd1_tiny()))
    repo, filename = RECIPES["controlnet-depth-sd15"]
    snapshot = fill_hf_cache(tmp_path / "hf_home" / "hub", repo, {filename: b"cn"})
    files = SDXLLightningPipeline().resolve()
    assert files.model == forge.sd1_tiny() and files.controlnet == snapshot / filename
    assert SDXLLightningPipeline(use_controlnet=False).resolve().controlnet is None
