"""The PyTorch + diffusers engine (``engine="torch"``), tuned to the hardware.

Loads single-file checkpoints (ldm names, the files users download) offline with the
configs in :mod:`.torch_configs`.  Hardware tuning, chosen automatically and overridable
through :class:`~gouache.EngineOptions`:

* threads = physical cores (``torch.set_num_threads``);
* precision: bf16 weights on CPUs with AVX512-BF16 or AMX, fp16 on CUDA, fp32 otherwise
  (``EngineOptions.precision`` = "auto" | "bf16" | "fp16" | "fp32");
* channels_last memory format for the UNet and VAE; PyTorch SDPA attention (diffusers'
  default); classifier-free guidance batched (diffusers runs cond+uncond in one pass);
* optional ``torch.compile`` of the UNet (``EngineOptions.compile``); optional tiny VAE
  (TAESD, ``SDModel(taesd=...)``) for decoding.
"""

from __future__ import annotations

import functools
import inspect as _inspect
import logging
import os
import time
from pathlib import Path
from typing import Any

from .. import _engine as E
from .._errors import InvalidInputError, MissingDependencyError

log = logging.getLogger("gouache.torch")

#: Families this engine loads (family value of gouache.inspect -> config family).
SUPPORTED = {"sd1": "sd1", "sd1_inpaint": "sd1_inpaint", "sd2": "sd2", "sdxl": "sdxl", "sdxl_inpaint": "sdxl_inpaint"}

#: engine-neutral sampler name -> (diffusers scheduler class, extra config)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2s_a": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "lcm": ("LCMScheduler", {}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing", "set_alpha_to_one": False}),
    "tcd": ("TCDScheduler", {}),
}
#: engine-neutral scheduler name -> config overrides
SCHEDULERS: dict[str, dict[str, Any]] = {
    "discrete": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "lcm": {},
}

# latent -> RGB projections for fast previews (SD1/SD2 and SDXL latent spaces)
_PROJ = {
    "sd": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
           [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
             [0.1084, -0.0175, -0.0011]),
}


def _torch():
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"the torch engine needs PyTorch and diffusers ({exc.name} is missing):"
            ' pip install "gouache[torch]"'
        ) from None
    return torch


def available() -> bool:
    """Whether torch and diffusers are importable (without importing them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_device(requested: str = "auto") -> str:
    """The torch device for ``EngineOptions.device``: "auto" (the first CUDA GPU if any, else
    the CPU), "cpu", "cuda" or "cuda:N"; a CUDA device PyTorch does not see is an error."""
    kind, index = E.parse_device(requested)
    torch = _torch()
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return "cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InvalidInputError(f"device {requested!r}: PyTorch {torch.__version__} sees no CUDA GPU on this machine;"
                                " use device='cpu' or 'auto'")
    if index is not None and index >= count:
        raise InvalidInputError(f"device {requested!r}: this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}")
    return requested


def choose_precision(requested: str, device: str = "auto") -> tuple[str, str, str]:
    """``(device, dtype name, reason)`` for ``EngineOptions.precision`` and ``.device``."""
    device = choose_device(device)
    cuda = device.startswith("cuda")
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise InvalidInputError(f"precision must be auto, bf16, fp16 or fp32; got {requested!r}")
    if requested != "auto":
        return device, requested, f"precision={requested} requested"
    if cuda:
        return device, "fp16", "CUDA device: fp16"
    if cpu_has_bf16():
        return device, "bf16", "CPU has AVX512-BF16/AMX: bf16 weights"
    return device, "fp32", "CPU without bf16 support: fp32"


def explain(family: str) -> tuple[bool, str]:
    """Whether the torch engine would run ``family``, and why (for ``gouache info``)."""
    if not available():
        return False, 'PyTorch/diffusers not installed (pip install "gouache[torch]")'
    if family not in SUPPORTED:
        return False, f"family {family} is not supported by the torch engine (supported: {', '.join(SUPPORTED)})"
    device, dtype, why = choose_precision("auto")
    return True, f"{device}, {dtype} ({why})"


def _dtype(name: str):
    torch = _torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _make_scheduler(base_config, sampler: str | None, scheduler: str | None):
    """A fresh scheduler for this call, always derived from the model's pristine config."""
    import diffusers

    base = dict(base_config)
    name = sampler or ("euler_a" if not base.get("_class_name", "").startswith("LCM") else "lcm")
    if name not in SAMPLERS:
        raise InvalidInputError(f"sampler {name!r} is not supported by the torch engine; supported: {', '.join(SAMPLERS)}")
    cls_name, extra = SAMPLERS[name]
    cls = getattr(diffusers, cls_name)
    overrides = dict(extra)
    sched = scheduler or "discrete"
    if sched not in SCHEDULERS:
        raise InvalidInputError(f"scheduler {sched!r} is not supported by the torch engine; supported: {', '.join(SCHEDULERS)}")
    params = _inspect.signature(cls.__init__).parameters
    for key, value in SCHEDULERS[sched].items():
        if key not in params:
            ok = [s for s, o in SCHEDULERS.items() if all(k in params for k in o)]
            raise InvalidInputError(f"sampler {name!r} cannot use scheduler {sched!r} on the torch engine; with {name!r} use: {', '.join(ok)}")
        overrides[key] = value
    cfg = {k: v for k, v in base.items() if not k.startswith("_")}
    cfg.update(overrides)
    return cls.from_config(cfg)


class TorchEngine(E.Engine):
    """diffusers pipelines for one single-file model, with hardware tuning."""

    name = "torch"

    def __init__(self, pipe, family: str, device: str, dtype_name: str, options: E.EngineOptions,
                 controlnet=None) -> None:
        self.base = pipe
        self.family = family
        self.device = device
        self.dtype_name = dtype_name
        self.options = options
        self.controlnet = controlnet
        self._variants: dict[str, Any] = {}
        self._adapters: dict[str, str] = {}
        self._base_scheduler = pipe.scheduler

    @classmethod
    def samplers(cls) -> list[str]:
        return list(SAMPLERS)

    @classmethod
    def schedulers(cls) -> list[str]:
        return list(SCHEDULERS)

    @property
    def can_generate_video(self) -> bool:
        return False

    @property
    def xl(self) -> bool:
        return self.family.startswith("sdxl")

    def _variant(self, kind: str):
        """txt2img / img2img / inpaint / controlnet pipelines sharing one set of weights."""
        if kind in self._variants:
            return self._variants[kind]
        import diffusers as D

        xl = "XL" if self.xl else ""
        names = {
            "txt2img": f"StableDiffusion{xl}Pipeline",
            "img2img": f"StableDiffusion{xl}Img2ImgPipeline",
            "inpaint": f"StableDiffusion{xl}InpaintPipeline",
            "control": f"StableDiffusion{xl}ControlNetPipeline",
            "control_img2img": f"StableDiffusion{xl}ControlNetImg2ImgPipeline",
            "control_inpaint": f"StableDiffusion{xl}ControlNetInpaintPipeline",
        }
        cls = getattr(D, names[kind])
        extra = {"controlnet": self.controlnet} if kind.startswith("control") else {}
        # from_pipe shares the weights; without torch_dtype it casts the shared UNet to fp32
        pipe = self.base if kind == "txt2img" else cls.from_pipe(self.base, torch_dtype=_dtype(self.dtype_name), **extra)
        pipe.set_progress_bar_config(disable=True)
        self._variants[kind] = pipe
        return pipe

    def _apply_loras(self, pipe, loras: tuple[E.LoraSpec, ...]) -> None:
        wanted: list[tuple[str, float]] = []
        for spec in loras:
            key = str(Path(spec.path).resolve())
            if key not in self._adapters:
                name = f"lora{len(self._adapters)}"
                try:
                    self.base.load_lora_weights(key, adapter_name=name)
                except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds here
                    raise InvalidInputError(f"the torch engine could not load LoRA {spec.path!s}: {exc}") from None
                self._adapters[key] = name
            wanted.append((self._adapters[key], float(spec.weight)))
        if not self._adapters:
            return
        names = list(self._adapters.values())
        weights = {n: 0.0 for n in names}
        for n, w in wanted:
            weights[n] += w
        pipe.set_adapters(names, adapter_weights=[weights[n] for n in names])

    def _progress(self, hooks: E.Hooks, total_fn):
        start = time.perf_counter()
        proj = _PROJ["sdxl" if self.xl else "sd"]
        spec = hooks.preview_spec or E.PreviewSpec()

        def on_step_end(pipe, i, t, kwargs):
            step = i + 1
            if hooks.progress is not None:
                hooks.progress(step, total_fn(pipe), time.perf_counter() - start)
            if hooks.preview is not None and step % max(1, spec.interval) == 0:
                hooks.preview(step, self._preview(pipe, kwargs["latents"], spec.mode, proj))
            return kwargs

        return on_step_end

    def _preview(self, pipe, latents, mode: str, proj):
        import numpy as np
        import torch
        from PIL import Image

        with torch.no_grad():
            if mode in ("vae", "tae"):
                lat = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
                img = pipe.vae.decode(lat).sample
                arr = ((img.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
            else:
                w = torch.tensor(proj[0], dtype=torch.float32)
                b = torch.tensor(proj[1], dtype=torch.float32)
                rgb = torch.einsum("bchw,cr->bhwr", latents.float().cpu(), w) + b
                arr = ((rgb.clamp(-1, 1) + 1) * 127.5).numpy()
        return [Image.fromarray(a.astype(np.uint8)) for a in arr]

    def generate_images(self, r: E.ImageRequest, hooks: E.Hooks) -> list[Any]:
        torch = _torch()
        if r.ref_images or r.photo_maker is not None or r.hires is not None or r.cache is not None:
            unsupported = [n for n, v in (("ref_images", r.ref_images), ("photo_maker", r.photo_maker),
                                          ("hires", r.hires), ("cache", r.cache)) if v]
            raise InvalidInputError(f"the torch engine does not support {', '.join(unsupported)}; use engine='sdcpp'")
        control = r.control_image is not None
        if r.mask is not None:
            kind = "control_inpaint" if control else "inpaint"
        elif r.init_image is not None:
            kind = "control_img2img" if control else "img2img"
        else:
            kind = "control" if control else "txt2img"
        if control and self.controlnet is None:
            raise InvalidInputError("control_image needs a ControlNet loaded with the model")
        pipe = self._variant(kind)
        pipe.scheduler = _make_scheduler(self._base_scheduler.config, r.sampler, r.scheduler)
        self._apply_loras(pipe, r.loras)
        generators = [torch.Generator("cpu").manual_seed(int(r.seed) + i) for i in range(r.batch)]
        kw: dict[str, Any] = dict(
            prompt=r.prompt, negative_prompt=r.negative_prompt or None, num_inference_steps=r.steps,
            guidance_scale=r.cfg_scale, generator=generators, num_images_per_prompt=r.batch,
            output_type="pil", callback_on_step_end=self._progress(hooks, lambda p: getattr(p, "num_timesteps", r.steps)),
        )
        if kind in ("txt2img", "control"):
            kw.update(width=r.width, height=r.height)
        if r.init_image is not None:
            kw.update(image=r.init_image, strength=r.strength)
        if r.mask is not None:
            kw.update(mask_image=r.mask, width=r.width, height=r.height)
        if control:
            key = "image" if kind == "control" else "control_image"
            kw[key] = r.control_image
            kw["controlnet_conditioning_scale"] = r.control_strength
            kw["control_guidance_start"], kw["control_guidance_end"] = (float(x) for x in r.control_guidance)
        if r.clip_skip > 1:
            kw["clip_skip"] = r.clip_skip - 1  # sd.cpp counts the last layer as 1, diffusers as 0
        if r.eta is not None and "eta" in _inspect.signature(pipe.__call__).parameters:
            kw["eta"] = r.eta
        with torch.inference_mode():
            out = pipe(**kw)
        return list(out.images)

    def generate_video(self, request: E.VideoRequest, hooks: E.Hooks) -> list[Any]:
        raise InvalidInputError("the torch engine does not generate video; use engine='sdcpp' with a Wan model")

    def close(self) -> None:
        self.base = None
        self._variants.clear()
        self.controlnet = None


def _tiny_vae(path: Path, dtype):
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    vae = AutoencoderTiny(latent_channels=4)
    state = load_file(str(path))
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing:
        raise InvalidInputError(f"TAESD file {str(path)!r} does not match diffusers' AutoencoderTiny (missing {missing[:3]})")
    return vae.to(dtype)


def read_checkpoint(path: Path, dtype) -> dict[str, Any]:
    """The checkpoint's tensors, each cast to ``dtype`` as it is read.

    diffusers' ``from_single_file`` holds the whole file in its stored precision while it
    builds the bf16 model, so peak memory is file + model.  Reading tensor by tensor and
    casting at once keeps the peak at about the model's size; the models built from this
    dict share its storage (no second copy)."""
    torch = _torch()

    def cast(t):
        return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t

    from .._modelfile import sniff

    if sniff(path) == "safetensors":
        return {name: cast(t) for name, t in _read_safetensors(path)}
    state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k: cast(v) for k, v in state.items() if hasattr(v, "is_floating_point")}


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _read_safetensors(path: Path):
    """``(name, tensor)`` pairs read with plain file reads, one tensor at a time.

    Not mmap: pages of a mapped file count in the process's RSS until it is unmapped, so a
    mapped read costs file size + cast copies at the peak; ``readinto`` costs one tensor."""
    from .._modelfile import safetensors_header

    torch = _torch()
    header, base = safetensors_header(path)
    header.pop("__metadata__", None)
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dtype = getattr(torch, _ST_DTYPES.get(info["dtype"], ""), None)
            if dtype is None:
                raise InvalidInputError(f"{str(path)!r}: tensor {name!r} has dtype {info['dtype']}, which the torch engine"
                                        f" does not read (allowed: {', '.join(_ST_DTYPES)})")
            start, end = info["data_offsets"]
            shape = tuple(info["shape"])
            if end == start:
                yield name, torch.empty(shape, dtype=dtype)
                continue
            buf = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buf) != len(buf):
                raise InvalidInputError(f"{str(path)!r} is truncated (tensor {name!r} runs past the end of the file)")
            yield name, torch.frombuffer(buf, dtype=dtype).reshape(shape)


def _load_pipeline(pipe_cls, path: Path, cfg: Path, dtype):
    """``pipe_cls`` built from a single-file checkpoint, component by component, offline.

    The same conversions as ``pipe_cls.from_single_file`` (diffusers' ldm -> diffusers name
    mapping for each component), fed from :func:`read_checkpoint` so the file is never held
    in memory beside the model."""
    import json

    import diffusers as D
    import transformers
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

    index = json.loads((cfg / "model_index.json").read_text())
    ckpt = read_checkpoint(path, dtype)
    parts: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue
        lib, cls_name = spec
        if cls_name is None:
            parts[name] = None
            continue
        cls = getattr(D if lib == "diffusers" else transformers, cls_name)
        if name in ("unet", "vae"):
            parts[name] = cls.from_single_file(ckpt, config=str(cfg), subfolder=name, local_files_only=True, torch_dtype=dtype)
        elif name.startswith("text_encoder"):
            parts[name] = create_diffusers_clip_model_from_ldm(cls, ckpt, subfolder=name, config=str(cfg),
                                                               torch_dtype=dtype, local_files_only=True)
        else:  # tokenizers and the scheduler: small files in the config folder
            parts[name] = cls.from_pretrained(str(cfg), subfolder=name, local_files_only=True)
    del ckpt
    if "requires_safety_checker" in index:
        parts["requires_safety_checker"] = False
    return pipe_cls(**parts)


def _load_controlnet(path: Path, cfg: Path, dtype):
    """A ControlNet from an ldm-layout single file or a diffusers-layout file (as published),
    read with :func:`read_checkpoint` (cast as read, no second copy)."""
    import json

    import diffusers as D

    state = read_checkpoint(path, dtype)
    if any(k.startswith("controlnet_cond_embedding.") for k in state):
        from accelerate import init_empty_weights  # weights come from the checkpoint: allocate none

        with init_empty_weights():
            model = D.ControlNetModel.from_config(json.loads((cfg / "controlnet" / "config.json").read_text()))
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise InvalidInputError(f"ControlNet {str(path)!r} does not match this model family's ControlNet"
                                    f" (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        return model.to(dtype)
    return D.ControlNetModel.from_single_file(state, config=str(cfg), subfolder="controlnet",
                                              local_files_only=True, torch_dtype=dtype)


def create_engine(files: E.ModelFiles, *, options: E.EngineOptions, threads: int | None,
                  weight_type: str | None, on_load_progress: E.ProgressFn | None = None) -> TorchEngine:
    torch = _torch()
    import diffusers as D

    from .._families import inspect
    from .._modelfile import sniff
    from .torch_configs import config_dir

    if files.model is None:
        raise InvalidInputError("the torch engine loads single-file checkpoints: pass model=, or use engine='sdcpp'"
                                " for models shipped as parts (diffusion_model=...)")
    if sniff(files.model) == "gguf":
        raise InvalidInputError("the torch engine does not load GGUF files; use engine='sdcpp'")
    info = inspect(files.model)
    family = info.family.value
    if family == "sd2" and info.variant == "768-v":
        cfg_family = "sd2_v"
    elif family in SUPPORTED:
        cfg_family = SUPPORTED[family]
    else:
        raise InvalidInputError(f"the torch engine does not support {family} models; supported: {', '.join(SUPPORTED)}"
                                " (use engine='sdcpp')")
    for name in ("clip_l", "clip_g", "t5xxl", "photo_maker", "high_noise_diffusion_model"):
        if getattr(files, name) is not None:
            raise InvalidInputError(f"the torch engine does not take {name}= (the checkpoint holds its text encoders); use engine='sdcpp'")
    torch.set_num_threads(threads or _physical_cores())
    device, dtype_name, why = choose_precision(options.precision, options.device)
    dtype = _dtype(dtype_name)
    log.info("torch engine: %s, %s (%s), %d threads", device, dtype_name, why, torch.get_num_threads())
    cfg = config_dir(cfg_family)
    pipe_cls = D.StableDiffusionXLPipeline if family.startswith("sdxl") else D.StableDiffusionPipeline
    t0 = time.perf_counter()
    if on_load_progress:
        on_load_progress(0, 3, 0.0)
    if True:  # every load below is local_files_only: nothing is fetched from a hub
        pipe = _load_pipeline(pipe_cls, files.model, cfg, dtype)
        if on_load_progress:
            on_load_progress(1, 3, time.perf_counter() - t0)
        if files.vae is not None:
            pipe.vae = D.AutoencoderKL.from_single_file(str(files.vae), config=str(cfg), subfolder="vae",
                                                        local_files_only=True, torch_dtype=dtype)
        if files.taesd is not None:
            pipe.vae = _tiny_vae(files.taesd, dtype)
        controlnet = None
        if files.control_net is not None:
            controlnet = _load_controlnet(files.control_net, cfg, dtype)
    if on_load_progress:
        on_load_progress(2, 3, time.perf_counter() - t0)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    if controlnet is not None:
        controlnet.to(device)
    if device == "cpu" or options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        if controlnet is not None:
            controlnet.to(memory_format=torch.channels_last)
    if options.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    if options.compile:
        pipe.unet = torch.compile(pipe.unet)
    if on_load_progress:
        on_load_progress(3, 3, time.perf_counter() - t0)
    return TorchEngine(pipe, family, device, dtype_name, options, controlnet)


@functools.lru_cache(maxsize=1)
def _physical_cores() -> int:
    try:
        from .._context import physical_cores

        return physical_cores()
    except Exception:  # noqa: BLE001 - the sdcpp library may be missing; fall back to the OS count
        return os.cpu_count() or 1


ENGINE_CLASS = TorchEngine
