"""The PyTorch + diffusers engine (``engine="torch"``), tuned to the hardware.

Loads single-file checkpoints (ldm names, the files users download) offline with the
configs in :mod:`.configs` (:mod:`.loading`).  Hardware tuning, chosen automatically and
overridable through :class:`~gouache.EngineOptions`:

* threads = physical cores (``torch.set_num_threads``);
* precision: bf16 weights on CPUs with AVX512-BF16 or AMX, fp16 on CUDA, fp32 otherwise
  (``EngineOptions.precision`` = "auto" | "bf16" | "fp16" | "fp32");
* channels_last memory format for the UNet and VAE; PyTorch SDPA attention (diffusers'
  default); classifier-free guidance batched (diffusers runs cond+uncond in one pass);
* optional ``torch.compile`` of the UNet (``EngineOptions.compile``); optional tiny VAE
  (TAESD, ``SDModel(taesd=...)``) for decoding.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any

from ..._errors import InvalidInputError
from ..._hardware import return_freed_memory
from ..base import Engine, Explanation
from ..requests import (
    EngineOptions,
    Guidance,
    Hooks,
    ImageRequest,
    LoraSpec,
    ModelFiles,
    PreviewSpec,
    ProgressFn,
    VideoRequest,
)
from .embeddings import PromptCache
from .loading import SUPPORTED, Loaded, load
from .runtime import available, choose_precision, dtype_of, import_torch
from .samplers import SAMPLERS, SCHEDULERS, make_scheduler

# latent -> RGB projections for fast previews (SD1/SD2 and SDXL latent spaces)
_PROJ = {
    "sd": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
}
_PIPELINES = {
    "txt2img": "StableDiffusion{xl}Pipeline",
    "img2img": "StableDiffusion{xl}Img2ImgPipeline",
    "inpaint": "StableDiffusion{xl}InpaintPipeline",
    "control": "StableDiffusion{xl}ControlNetPipeline",
    "control_img2img": "StableDiffusion{xl}ControlNetImg2ImgPipeline",
    "control_inpaint": "StableDiffusion{xl}ControlNetInpaintPipeline",
}


def _kind(r: ImageRequest) -> str:
    """Which diffusers pipeline serves the request."""
    base = "txt2img" if r.init is None else ("inpaint" if r.init.mask is not None else "img2img")
    if r.control is None:
        return base
    return "control" if base == "txt2img" else f"control_{base}"


def _refuse_unsupported(r: ImageRequest) -> None:
    """The torch engine runs none of these: refuse them instead of ignoring them."""
    unsupported = [
        n
        for n, v in (
            ("ref_images", r.ref_images),
            ("photo_maker", r.photo_maker),
            ("hires", r.hires),
            ("cache", r.cache),
        )
        if v
    ]
    if r.sampling.guidance != Guidance():
        unsupported.append("guidance (image CFG, distilled or skip-layer guidance)")
    if unsupported:
        raise InvalidInputError(f"the torch engine does not support {', '.join(unsupported)}; use engine='sdcpp'")


class TorchEngine(Engine):
    """diffusers pipelines for one single-file model, with hardware tuning."""

    name = "torch"

    def __init__(self, loaded: Loaded, options: EngineOptions) -> None:
        self.base = loaded.pipe
        self.family = loaded.family
        self.device = loaded.device
        self.dtype_name = loaded.dtype
        self.controlnet = loaded.controlnet
        self.options = options
        self._variants: dict[str, Any] = {}
        self._adapters: dict[str, str] = {}
        self._adapter_weights: tuple[tuple[str, float], ...] = ()
        self._fused = False
        #: merge LoRAs into fp32 weights while their weights stay the same (see _fuses_loras)
        self.fuse_loras = True
        self._base_scheduler = loaded.pipe.scheduler
        self._schedulers: dict[tuple[str | None, str | None], Any] = {}
        self.prompts = PromptCache()

    # -- what the engine is ------------------------------------------------------------

    @classmethod
    def explain(cls, family: str | None = None, files: ModelFiles | None = None) -> Explanation:
        if not available():
            return Explanation(False, 'PyTorch/diffusers not installed (pip install "gouache[torch]")')
        if files is not None and files.in_parts:
            return Explanation(False, "the model ships as parts; the torch engine loads single-file checkpoints")
        if files is not None and str(files.main).lower().endswith(".gguf"):
            return Explanation(False, "GGUF files are for sdcpp")
        if family is not None and family not in SUPPORTED:
            return Explanation(
                False, f"family {family} is not supported by the torch engine (supported: {', '.join(SUPPORTED)})"
            )
        precision = choose_precision("auto")
        return Explanation(True, f"{precision.device}, {precision.dtype} ({precision.reason})")

    @classmethod
    def samplers(cls) -> list[str]:
        return list(SAMPLERS)

    @classmethod
    def schedulers(cls) -> list[str]:
        return list(SCHEDULERS)

    @classmethod
    def create(
        cls,
        files: ModelFiles,
        *,
        options: EngineOptions,
        threads: int | None,
        weight_type: str | None,
        on_load_progress: ProgressFn | None = None,
    ) -> TorchEngine:
        return cls(load(files, options, threads, on_load_progress), options)

    @property
    def can_generate_video(self) -> bool:
        return False

    @property
    def xl(self) -> bool:
        return self.family.startswith("sdxl")

    # -- pipelines -----------------------------------------------------------------------

    def _variant(self, kind: str):
        """txt2img / img2img / inpaint / controlnet pipelines sharing one set of weights."""
        if kind in self._variants:
            return self._variants[kind]
        import diffusers as D

        cls = getattr(D, _PIPELINES[kind].format(xl="XL" if self.xl else ""))
        extra = {"controlnet": self.controlnet} if kind.startswith("control") else {}
        # from_pipe drops a component whose class is not the one the target pipeline annotates
        # (an AutoencoderTiny in place of AutoencoderKL): pass the VAE on explicitly.
        extra["vae"] = self.base.vae
        # from_pipe shares the weights; without torch_dtype it casts the shared UNet to fp32
        pipe = (
            self.base if kind == "txt2img" else cls.from_pipe(self.base, torch_dtype=dtype_of(self.dtype_name), **extra)
        )
        pipe.set_progress_bar_config(disable=True)
        self._variants[kind] = pipe
        return pipe

    def _apply_loras(self, pipe, loras: tuple[LoraSpec, ...]) -> None:
        """Load new LoRA files as adapters, set every adapter's weight for this call, and merge
        them into the weights when :meth:`_fuses_loras` says so (re-merged only when the set of
        weights changes)."""
        keys = [(str(Path(spec.path).resolve()), spec) for spec in loras]
        new = [(key, spec) for key, spec in keys if key not in self._adapters]
        if new:
            self._unfuse()  # adapters are added to unmerged layers only
        for key, spec in new:
            name = f"lora{len(self._adapters)}"
            try:
                self.base.load_lora_weights(key, adapter_name=name)
            except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds here
                raise InvalidInputError(f"the torch engine could not load LoRA {spec.path!s}: {exc}") from None
            self._adapters[key] = name
        if not self._adapters:
            return
        names = list(self._adapters.values())
        weights = dict.fromkeys(names, 0.0)
        for key, spec in keys:
            weights[self._adapters[key]] += float(spec.weight)
        state = tuple(weights.items())
        fuse = self._fuses_loras() and any(weights.values())
        if state != self._adapter_weights or not fuse:
            self._unfuse()
        if state != self._adapter_weights:  # the variants share the UNet and text encoder: set once
            pipe.set_adapters(names, adapter_weights=[weights[n] for n in names])
            self._adapter_weights = state
        if fuse and not self._fused:
            self.base.fuse_lora(adapter_names=names)
            self._fused = True

    def _fuses_loras(self) -> bool:
        """Whether LoRAs are merged into the weights: only in fp32, where merging and unmerging
        at each change of weights is exact to float rounding (about 1e-7); bf16 and fp16 would
        round the base weights a little more at every change, so there they run as adapters.
        Merged, an LCM-LoRA step costs what a plain step does (UNet calls 1.26x faster than adapters)."""
        return self.fuse_loras and self.dtype_name == "fp32"

    def _unfuse(self) -> None:
        if self._fused:
            self.base.unfuse_lora()
            self._fused = False

    def _scheduler(self, sampler: str | None, schedule: str | None):
        """The scheduler of a sampler/schedule pair, built once (diffusers resets its timesteps on
        every call, so one instance serves every generation)."""
        key = (sampler, schedule)
        if key not in self._schedulers:
            self._schedulers[key] = make_scheduler(self._base_scheduler.config, sampler, schedule)
        return self._schedulers[key]

    def _set_vae_tiling(self, pipe, tiling: bool | None) -> None:
        enabled = self.options.vae_tiling if tiling is None else bool(tiling)
        if hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling() if enabled else pipe.vae.disable_tiling()

    # -- progress and previews -------------------------------------------------------------

    def _on_step_end(self, hooks: Hooks, steps: int):
        start = time.perf_counter()
        proj = _PROJ["sdxl" if self.xl else "sd"]
        spec = hooks.preview_spec or PreviewSpec()

        def on_step_end(pipe, i, t, kwargs):
            step = i + 1
            if hooks.progress is not None:
                hooks.progress(step, getattr(pipe, "num_timesteps", steps), time.perf_counter() - start)
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

    # -- generation ----------------------------------------------------------------------

    def call_kwargs(self, r: ImageRequest, pipe, hooks: Hooks) -> dict[str, Any]:
        """The keyword arguments of the diffusers pipeline call for ``r``."""
        torch = import_torch()
        s = r.sampling
        kw: dict[str, Any] = dict(
            prompt=r.prompt,
            negative_prompt=r.negative_prompt or None,
            num_inference_steps=_scheduled_steps(s.steps, r.init.strength if r.init is not None else None),
            guidance_scale=s.cfg_scale,
            num_images_per_prompt=r.batch,
            output_type="pil",
            generator=[torch.Generator("cpu").manual_seed(int(r.seed) + i) for i in range(r.batch)],
            callback_on_step_end=self._on_step_end(hooks, s.steps),
        )
        if r.init is None or r.init.mask is not None:
            kw.update(width=r.width, height=r.height)
        if r.init is not None:
            kw.update(image=r.init.image, strength=r.init.strength)
            if r.init.mask is not None:
                kw["mask_image"] = r.init.mask
        if r.control is not None:
            kw["image" if r.init is None else "control_image"] = r.control.image
            kw.update(
                controlnet_conditioning_scale=r.control.strength,
                control_guidance_start=float(r.control.start),
                control_guidance_end=float(r.control.end),
            )
        if r.clip_skip > 1:
            kw["clip_skip"] = r.clip_skip - 1  # sd.cpp counts the last layer as 1, diffusers as 0
        if s.eta is not None and "eta" in inspect.signature(pipe.__call__).parameters:
            kw["eta"] = s.eta
        return kw

    def _run(self, pipe, kwargs: dict[str, Any]) -> list[Any]:
        with import_torch().inference_mode():
            kwargs = self.prompts.substitute(pipe, kwargs, self._adapter_weights)
            return list(pipe(**kwargs).images)

    def generate_images(self, r: ImageRequest, hooks: Hooks) -> list[Any]:
        _refuse_unsupported(r)
        if r.control is not None and self.controlnet is None:
            raise InvalidInputError("control_image needs a ControlNet loaded with the model")
        pipe = self._variant(_kind(r))
        pipe.scheduler = self._scheduler(r.sampling.sampler, r.sampling.scheduler)
        self._apply_loras(pipe, r.loras)
        self._set_vae_tiling(pipe, r.vae_tiling)
        return self._run(pipe, self.call_kwargs(r, pipe, hooks))

    def generate_video(self, request: VideoRequest, hooks: Hooks) -> list[Any]:
        raise InvalidInputError("the torch engine does not generate video; use engine='sdcpp' with a Wan model")

    def close(self) -> None:
        """Drop the pipelines and give their memory back to the OS (not only to malloc)."""
        self.base = None
        self._variants.clear()
        self._schedulers.clear()
        self.prompts.clear()
        self.controlnet = None
        return_freed_memory()


ENGINE = TorchEngine


def _scheduled_steps(steps: int, strength: float | None) -> int:
    """Steps to schedule so that an image-to-image run denoises at least once: diffusers runs
    ``int(steps * strength)`` of them, none for a one-step model at strength 0.7 (and then
    fails on an empty batch of latents); the schedule is stretched instead, as the engine's
    img2img on few-step models needs."""
    if strength is None or strength <= 0 or int(steps * strength) >= 1:
        return steps
    return math.ceil(1 / strength - 1e-9)
