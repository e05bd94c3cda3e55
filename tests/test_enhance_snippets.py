"""Every code snippet of Glimpse3D's diffusion README runs on gouache as written.

The snippets below are copied verbatim from that README, with ``ai_modules.diffusion``
read as ``gouache.enhance`` and ``ai_modules.midas_depth`` as ``gouache.enhance.depth``
(the one change the contract allows).  What a snippet leaves to its reader is supplied
here: the files it opens (``rendered_view.png``, ``view.png``), ``rendered_views``,
``rgb_image``, and for the full loop ``render_from_3dgs``, ``model``, ``poses``,
``intrinsics`` and ``update_3dgs``.  The models are forged (random weights, real
architectures), chosen through the environment as a deployment would:
``GOUACHE_ENHANCE_MODEL``/``_CONTROLNET``, ``GOUACHE_DEPTH_MODEL`` (a tiny ONNX graph whose
output is the image's red channel, so the "estimate" of a rendered view is its inverse
depth up to the per-view scale and shift of a real estimator).  Snippets that need the
ControlNet run the SD1 pair on the torch engine; the others run the tiny SD1 + TAESD on
stable-diffusion.cpp.  The README's shell snippets (``pip install``) are not Python.
"""

from __future__ import annotations

import gc
import io
import os
from contextlib import redirect_stdout

import numpy as np
import pytest
from PIL import Image

from gouache import InvalidInputError
from gouache._modelfiles.catalog import RECIPES
from gouache.enhance import EnhanceService, unload_cached_service
from gouache.testing import forge, scenes

from .enhance_support import fill_hf_cache
from .test_enhance_depth import channel_model

SIMPLE = """
from gouache.enhance import enhance_view

# One-liner enhancement
enhanced = enhance_view("rendered_view.png")
"""

WITH_DEPTH = """
from gouache.enhance.depth import estimate_depth
from gouache.enhance import EnhanceService

# Get depth
depth = estimate_depth("rendered_view.png")

# Enhance with depth guidance
service = EnhanceService(device="cuda")
enhanced = service.enhance(
    image="rendered_view.png",
    depth_map=depth,
    prompt="photorealistic 3D render, detailed texture"
)
"""

BATCH = """
from gouache.enhance import EnhanceService, EnhanceConfig

# Optimized for T4 GPU
config = EnhanceConfig.for_t4_gpu()
service = EnhanceService(config=config)

# Enhance 16 views from SyncDreamer
enhanced_views = service.enhance_batch(
    images=rendered_views,
    prompt="high quality 3D model, studio lighting"
)

# Clean up
service.unload()
"""

INTEGRATION = """
from gouache.enhance.depth import (
    estimate_depth,
    estimate_depth_confidence,
    align_depth_scales,
)
from gouache.enhance import EnhanceService

# Estimate depth
depth = estimate_depth("view.png")

# Get confidence for smart blending
confidence = estimate_depth_confidence(depth, rgb_image)

# Enhance with confidence-aware blending
service = EnhanceService()
enhanced = service.enhance_with_depth_confidence(
    "view.png",
    blend_with_original=True,  # Preserve original in low-confidence regions
    confidence_threshold=0.6
)
"""

T4 = """
from gouache.enhance import EnhanceConfig, EnhanceService

config = EnhanceConfig.for_t4_gpu()
# Settings:
# - lightning_steps: 4
# - use_controlnet: True
# - optimize_memory: True
# - depth_model: "MiDaS_small"
"""

QUALITY = """
config = EnhanceConfig.for_quality()
# Settings:
# - strength: 0.65 (preserve more original)
# - depth_model: "DPT_Large"
"""

SPEED = """
config = EnhanceConfig.for_speed()
# Settings:
# - lightning_steps: 2
# - strength: 0.5
"""

MEMORY = """
from gouache.enhance.memory_utils import (
    setup_memory_optimization,
    MemoryConfig,
    get_memory_status,
    print_memory_report,
)

# Check available memory
print_memory_report()

# Custom optimization config
config = MemoryConfig.from_preset("t4_balanced")
"""

PROMPTS = """
from gouache.enhance import PromptBuilder

builder = PromptBuilder(template="photorealistic")
prompt, negative = builder.build(subject="a ceramic vase")

# Available templates:
# - default, photorealistic, product
# - character, environment, object
# - anime_style
"""

FULL_LOOP = """
# Full Glimpse3D enhancement loop
from gouache.enhance.depth import estimate_depth, align_depth_scales
from gouache.enhance import EnhanceService, EnhanceConfig

# Setup
config = EnhanceConfig.for_t4_gpu()
service = EnhanceService(config=config)

# Enhancement loop
for iteration in range(3):
    # Render views from current 3DGS
    rendered_views = render_from_3dgs(model)
    
    # Estimate depth for each view
    depth_maps = [estimate_depth(v) for v in rendered_views]
    
    # Align depth scales across views
    aligned_depths = align_depth_scales(depth_maps, poses, intrinsics)
    
    # Enhance views
    enhanced_views = service.enhance_batch(
        images=rendered_views,
        depth_maps=aligned_depths,
        prompt="high quality 3D render, detailed texture"
    )
    
    # Update 3DGS with enhanced views
    update_3dgs(model, enhanced_views)

# Cleanup
service.unload()
"""

OUT_OF_MEMORY = """
# Use minimal memory config
from gouache.enhance import EnhanceConfig

config = EnhanceConfig()
config.optimize_memory = True
config.lightning_steps = 2  # Fewer steps
config.use_controlnet = False  # Disable if needed
"""

SLOW_INFERENCE = """
# Ensure xformers is installed
!pip install xformers

# Check it's being used
from gouache.enhance.memory_utils import print_memory_report
print_memory_report()
"""

DOWNLOAD_ISSUES = """
# Set HuggingFace cache
import os
os.environ["HF_HOME"] = "/content/hf_cache"
"""

SIZE = 64
SCENE = scenes.spheres_in_room()
K = scenes.intrinsics(SIZE, SIZE, fov_deg=50)


def render(pose: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """A view whose red channel is its inverse depth, stretched to 0..255 (so each view gets
    its own unknown scale and shift, as a real estimate does), green/blue some texture."""
    depth = SCENE.render(pose, K, SIZE, SIZE).depth
    inv = 1.0 / depth
    red = (inv - inv.min()) / (inv.max() - inv.min())
    rng = np.random.default_rng(int(1000 * pose[0, 3]) % 2**31)
    rgb = np.dstack([red, rng.random(red.shape), 0.5 * np.ones_like(red)])
    return Image.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)), inv


def run(code: str, namespace: dict, *, keep: bool = False) -> dict:
    """Execute a snippet; IPython shell lines (``!pip ...``) are shell, not Python.  The
    services it made are unloaded afterwards unless ``keep`` (then the test must)."""
    source = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("!"))
    try:
        exec(compile(source, "<README snippet>", "exec"), namespace)
    except BaseException:
        keep = False
        raise
    finally:
        if not keep:
            unload_all(namespace)
    return namespace


def unload_all(namespace: dict) -> None:
    for value in list(namespace.values()):
        if isinstance(value, EnhanceService):
            value.unload()
    unload_cached_service()
    gc.collect()


@pytest.fixture
def tiny_models(clean_env, tmp_path):
    """The tiny SD1 + TAESD without ControlNet (fast), a tiny ONNX depth model, and the
    README's files in the working folder."""
    clean_env.setenv("GOUACHE_ENHANCE_MODEL", str(forge.sd1_tiny()))
    clean_env.setenv("GOUACHE_ENHANCE_TAESD", str(forge.taesd()))
    clean_env.setenv("GOUACHE_ENHANCE_USE_CONTROLNET", "0")
    clean_env.setenv("GOUACHE_ENHANCE_ENGINE", "sdcpp")
    return _common(clean_env, tmp_path)


@pytest.fixture
def controlnet_models(clean_env, tmp_path):
    """The SD1 checkpoint and its depth ControlNet on the torch engine; the ControlNet is
    left at its default ("auto": the catalog's SD1 depth ControlNet), found in the Hugging
    Face cache where the forged one stands in for it."""
    clean_env.setenv("GOUACHE_ENHANCE_MODEL", str(forge.sd1()))
    clean_env.setenv("GOUACHE_ENHANCE_ENGINE", "torch")
    clean_env.setenv("GOUACHE_ENHANCE_CONTROLNET_SCALE", "2.0")
    repo, filename = RECIPES["controlnet-depth-sd15"]
    fill_hf_cache(tmp_path / "hf_home" / "hub", repo, {filename: forge.controlnet_sd1()})
    return _common(clean_env, tmp_path)


def _common(env, tmp_path) -> dict:
    env.setenv("GOUACHE_ENHANCE_WORKING_SIZE", str(SIZE))
    env.setenv("GOUACHE_ENHANCE_LIGHTNING_STEPS", "1")
    env.setenv("GOUACHE_DEPTH_MODEL", str(channel_model(tmp_path / "midas_small.onnx", 256)))
    env.chdir(tmp_path)
    image, inv = render(scenes.look_at((0.0, 1.2, 5.0)))
    image.save(tmp_path / "rendered_view.png")
    image.save(tmp_path / "view.png")
    return {"image": image, "inverse_depth": inv, "tmp": tmp_path}


pytestmark = pytest.mark.slow  # the snippets load models (SD1 + ControlNet on torch among them)


# --------------------------------------------------------------------------- the snippets


def test_simple_enhancement(tiny_models):
    ns = run(SIMPLE, {})
    assert ns["enhanced"].size == (SIZE, SIZE) and ns["enhanced"].mode == "RGB"
    assert np.abs(np.asarray(ns["enhanced"], np.int16) - np.asarray(tiny_models["image"], np.int16)).mean() > 1


@pytest.mark.torch
def test_with_depth_from_midas_depth(controlnet_models):
    """As written it asks for CUDA: on a machine without a GPU that is a clear error, before
    any model loads; with device="cpu" the same code enhances, guided by the depth."""
    import torch

    if torch.cuda.is_available():
        ns = run(WITH_DEPTH, {}, keep=True)
    else:
        with pytest.raises(InvalidInputError, match="device 'cuda': PyTorch .* sees no CUDA GPU"):
            run(WITH_DEPTH, {})
        ns = run(WITH_DEPTH.replace('device="cuda"', 'device="cpu"'), {}, keep=True)
    try:
        depth, service = ns["depth"], ns["service"]
        assert depth.shape == (SIZE, SIZE) and depth.min() == 0.0 and depth.max() == 1.0
        assert np.corrcoef(depth.ravel(), controlnet_models["inverse_depth"].ravel())[0, 1] > 0.99
        assert ns["enhanced"].size == (SIZE, SIZE)
        status = service.status()
        assert status["engine"] == "torch" and status["device"] in ("cpu", "cuda")
        model = service.pipeline.model
        assert model.options.device == status["device"] and model._engine.device == status["device"]  # where it runs
        assert status["controlnet"].endswith(RECIPES["controlnet-depth-sd15"][1])  # "auto" found it
        # the depth reaches the ControlNet: without it the same call gives another image (the
        # forged ControlNet's response to the map's content is tiny on torch; stable-diffusion.cpp's
        # dependence on the content is checked in test_enhance_service.py)
        unguided = service.pipeline.enhance("rendered_view.png", "photorealistic 3D render, detailed texture")
        guided = service.pipeline.enhance("rendered_view.png", "photorealistic 3D render, detailed texture", depth)
        assert np.abs(np.asarray(unguided, np.int16) - np.asarray(guided, np.int16)).mean() > 0.3
        if status["device"] == "cpu":
            from gouache.enhance import MemoryConfig, setup_memory_optimization

            pipe = service.pipeline.model._engine.base  # the torch engine's diffusers pipeline
            assert (
                setup_memory_optimization(pipe, MemoryConfig(vae_tiling=True, attention_slicing=True), device="cpu")
                is pipe
            )
            assert pipe.vae.use_tiling
            with pytest.raises(InvalidInputError, match="must be a diffusers pipeline"):
                setup_memory_optimization(service)
    finally:
        unload_all(ns)


def test_batch_enhancement(tiny_models):
    views = [render(p)[0] for p in scenes.orbit(3, step_deg=20)]
    ns = run(BATCH, {"rendered_views": views})
    out = ns["enhanced_views"]
    assert isinstance(out, list) and len(out) == 3 and all(v.size == (SIZE, SIZE) for v in out)
    assert out.errors == {}


def test_integration_with_midas_depth(tiny_models):
    ns = run(INTEGRATION, {"rgb_image": np.asarray(tiny_models["image"])})
    conf = ns["confidence"]
    assert conf.shape == (SIZE, SIZE) and 0.0 <= conf.min() and conf.max() <= 1.0
    assert ns["enhanced"].size == (SIZE, SIZE)
    assert callable(ns["align_depth_scales"])


def test_configuration_presets(clean_env):
    ns = run(T4, {})
    t4 = ns["config"]
    assert (t4.lightning_steps, t4.use_controlnet, t4.optimize_memory, t4.depth_model) == (4, True, True, "MiDaS_small")
    quality = run(QUALITY, ns)["config"]
    assert quality.strength == 0.65 and quality.depth_model == "DPT_Large"
    speed = run(SPEED, ns)["config"]
    assert (speed.lightning_steps, speed.strength) == (2, 0.5)


def test_memory_utils():
    out = io.StringIO()
    with redirect_stdout(out):
        ns = run(MEMORY, {})
    assert "RAM total" in out.getvalue()
    config = ns["config"]
    assert config.vae_tiling and config.torch_dtype == "float16"
    assert callable(ns["setup_memory_optimization"]) and isinstance(ns["get_memory_status"](), dict)


def test_prompt_templates():
    ns = run(PROMPTS, {})
    assert ns["prompt"].startswith("a photograph of a ceramic vase") and "cartoon" in ns["negative"]
    from gouache.enhance import PromptBuilder

    for name in ("default", "photorealistic", "product", "character", "environment", "object", "anime_style"):
        assert "a ceramic vase" in PromptBuilder(template=name).build(subject="a ceramic vase")[0]


@pytest.mark.torch
def test_full_pipeline_loop(controlnet_models):
    """Three rounds over four views: the views' "estimates" are aligned with the poses into
    metric inverse depth, then enhanced with the ControlNet guided by them."""
    poses = scenes.orbit(4, step_deg=20, wobble=0.05)
    truth = [render(p)[1] for p in poses]
    model = {"rounds": []}

    def render_from_3dgs(m):
        return [render(p)[0] for p in poses]

    def update_3dgs(m, enhanced):
        m["rounds"].append(enhanced)

    ns = run(
        FULL_LOOP,
        {
            "render_from_3dgs": render_from_3dgs,
            "update_3dgs": update_3dgs,
            "model": model,
            "poses": poses,
            "intrinsics": K,
        },
    )
    assert len(model["rounds"]) == 3
    for views in model["rounds"]:
        assert isinstance(views, list) and len(views) == 4 and views.errors == {}
        assert all(v.size == (SIZE, SIZE) for v in views)
    errors = [np.mean(np.abs(a - t) / t) for a, t in zip(ns["aligned_depths"], truth)]
    assert max(errors) < 0.05, errors  # metric inverse depth from relative estimates and poses
    assert ns["service"].pipeline.model is None  # service.unload() ran


def test_out_of_memory_config():
    config = run(OUT_OF_MEMORY, {})["config"]
    assert (config.optimize_memory, config.lightning_steps, config.use_controlnet) == (True, 2, False)
    config.check()


def test_slow_inference_report_says_what_attention_runs():
    out = io.StringIO()
    with redirect_stdout(out):
        run(SLOW_INFERENCE, {})
    assert "attention" in out.getvalue() and "xformers" in out.getvalue()


def test_model_download_issues(clean_env):
    """HF_HOME set as the README says: the defaults are then looked for in that cache, and
    the error names it and the pull command."""
    from gouache._modelfiles.catalog import DownloadError
    from gouache.enhance._models import resolve_model

    run(DOWNLOAD_ISSUES, {})
    assert os.environ["HF_HOME"] == "/content/hf_cache"
    with pytest.raises(
        DownloadError, match=r"Hugging Face cache /content/hf_cache/hub.*gouache pull sdxl-lightning-4step"
    ):
        resolve_model("sdxl-lightning-4step", "model", "checkpoint")
