"""The stable-diffusion.cpp engine: maps engine-neutral requests onto gouache's binding."""

from __future__ import annotations

import logging
import time
from typing import Any

from .._errors import InvalidInputError
from .._hardware import return_freed_memory
from .._image import SDImage
from .._modelfiles.inspect import inspect
from .._sdcpp.dispatch import PreviewOptions, Progress
from .._sdcpp.genparams import SDImageGenParams, SDVideoGenParams
from .._sdcpp.handles import SDContext, Upscaler
from .._sdcpp.native import PreviewMode
from .._sdcpp.params import (
    SDCacheParams,
    SDContextParams,
    SDHiresParams,
    SDLora,
    SDPhotoMakerParams,
    SDSampleParams,
    SDTilingParams,
)
from .._vocabulary import SAMPLERS, SCHEDULERS, names
from .base import Engine, Explanation
from .requests import (
    Cache,
    EngineOptions,
    Hires,
    Hooks,
    ImageRequest,
    LoraSpec,
    ModelFiles,
    PhotoMakerInput,
    PreviewSpec,
    ProgressFn,
    Sampling,
    VideoRequest,
)

log = logging.getLogger("gouache")


# --------------------------------------------------------------------------- callbacks


def _progress_adapter(fn: ProgressFn | None):
    """Engine Progress events -> ``fn(step, total, elapsed)`` for sampling steps only.

    The engine reports other work of a generation through the same callback (applying or
    removing LoRAs reports one jump to ``(n, n)`` tensors); sampling counts up from step 1, so
    only events that start a count at 1 or continue the current one are passed on."""
    if fn is None:
        return None
    start = time.perf_counter()
    last: list[int] = []  # [step, total] of the last event passed on

    def on_progress(p: Progress) -> None:
        continues = bool(last) and p.total == last[1] and p.step == last[0] + 1
        if p.phase != "sample" or not (p.step == 1 or continues):
            return
        last[:] = [p.step, p.total]
        fn(p.step, p.total, time.perf_counter() - start)

    return on_progress


def _load_progress_adapter(fn: ProgressFn | None):
    if fn is None:
        return None
    start = time.perf_counter()
    return lambda p: fn(p.step, p.total, time.perf_counter() - start)


def _preview_adapter(hooks: Hooks):
    """``(preview callback, options)`` for the binding.  The engine (0.4.7) sends a denoised preview
    at every step whatever the interval, so the interval is applied here too."""
    if hooks.preview is None:
        return None, None
    spec = hooks.preview_spec or PreviewSpec()
    interval = max(1, int(spec.interval))
    options = PreviewOptions(mode=PreviewMode.parse(spec.mode), interval=interval)
    fn = hooks.preview

    def on_preview(pv) -> None:
        if pv.step % interval == 0:
            fn(pv.step, [f.to_pil() for f in pv.frames])

    return on_preview, options


def _run(generate, params: Any, hooks: Hooks) -> list[Any]:
    """One generation on the context with the hooks attached; the results as PIL images."""
    preview, preview_options = _preview_adapter(hooks)
    out = generate(params, progress=_progress_adapter(hooks.progress), preview=preview, preview_options=preview_options)
    return [im.to_pil() for im in out]


# --------------------------------------------------------------------------- request -> parameters


def _sd_image(image: Any) -> SDImage | None:
    """The engine edge: a PIL image (already RGB or L) as the binding's SDImage."""
    return None if image is None else SDImage.from_pil(image)


def sample_params(s: Sampling) -> SDSampleParams:
    g = s.guidance
    return SDSampleParams(
        txt_cfg=float(s.cfg_scale),
        img_cfg=g.image_cfg_scale,
        distilled_guidance=3.5 if g.distilled_guidance is None else float(g.distilled_guidance),
        slg_layers=tuple(g.slg_layers),
        slg_layer_start=g.slg_start,
        slg_layer_end=g.slg_end,
        slg_scale=g.slg_scale,
        sample_method=s.sampler,
        scheduler=s.scheduler,
        sample_steps=int(s.steps),
        eta=s.eta,
        flow_shift=s.flow_shift,
    )


def _loras(loras: tuple[LoraSpec, ...]) -> list[SDLora]:
    return [SDLora(spec.path, float(spec.weight), bool(spec.high_noise)) for spec in loras]


def _hires(h: Hires | None) -> SDHiresParams:
    if h is None:
        return SDHiresParams()
    return SDHiresParams(
        enabled=True,
        upscaler=h.upscaler,
        model_path=h.model,
        scale=h.scale,
        target_width=h.width,
        target_height=h.height,
        steps=h.steps,
        denoising_strength=h.denoising_strength,
    )


def _cache(c: Cache | None) -> SDCacheParams:
    if c is None:
        return SDCacheParams()
    params = SDCacheParams(mode=c.mode, start_percent=c.start, end_percent=c.end)
    if c.threshold is not None:
        params.reuse_threshold = float(c.threshold)
        params.residual_diff_threshold = float(c.threshold)
    return params


def _photo_maker(p: PhotoMakerInput | None) -> SDPhotoMakerParams:
    if p is None:
        return SDPhotoMakerParams()
    return SDPhotoMakerParams(
        id_images=[_sd_image(i) for i in p.images], id_embed_path=p.id_embedding, style_strength=p.style_strength
    )


def image_params(r: ImageRequest, options: EngineOptions) -> SDImageGenParams:
    """The binding's parameters for one image request (nothing native runs here)."""
    init, control = r.init, r.control
    return SDImageGenParams(
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        loras=_loras(r.loras),
        clip_skip=r.clip_skip,
        init_image=None if init is None else _sd_image(init.image),
        ref_images=[_sd_image(i) for i in r.ref_images],
        auto_resize_ref_image=True,  # the engine's CLI default: references scaled to the output's area
        mask_image=None if init is None else _sd_image(init.mask),
        width=r.width,
        height=r.height,
        sample_params=sample_params(r.sampling),
        strength=0.75 if init is None else init.strength,
        seed=r.seed,
        batch_count=r.batch,
        control_image=None if control is None else _sd_image(control.image),
        control_strength=0.9 if control is None else control.strength,
        pm_params=_photo_maker(r.photo_maker),
        vae_tiling_params=SDTilingParams(enabled=options.vae_tiling if r.vae_tiling is None else bool(r.vae_tiling)),
        cache=_cache(r.cache),
        hires=_hires(r.hires),
    )


def video_params(r: VideoRequest, options: EngineOptions) -> SDVideoGenParams:
    """The binding's parameters for one video request (nothing native runs here)."""
    return SDVideoGenParams(
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        loras=_loras(r.loras),
        clip_skip=r.clip_skip,
        init_image=_sd_image(r.init_image),
        end_image=_sd_image(r.end_image),
        control_frames=[_sd_image(f) for f in r.control_frames],
        width=r.width,
        height=r.height,
        sample_params=sample_params(r.sampling),
        high_noise_sample_params=SDSampleParams(sample_steps=-1)
        if r.high_noise is None
        else sample_params(r.high_noise),
        moe_boundary=r.moe_boundary,
        strength=r.strength,
        seed=r.seed,
        video_frames=r.frames,
        vace_strength=r.vace_strength,
        vae_tiling_params=SDTilingParams(enabled=options.vae_tiling if r.vae_tiling is None else bool(r.vae_tiling)),
    )


def context_params(
    files: ModelFiles, options: EngineOptions, threads: int | None, weight_type: str | None
) -> SDContextParams:
    return SDContextParams(
        model_path=files.model,
        diffusion_model_path=files.diffusion_model,
        high_noise_diffusion_model_path=files.high_noise_diffusion_model,
        vae_path=files.vae,
        taesd_path=files.taesd,
        clip_l_path=files.clip_l,
        clip_g_path=files.clip_g,
        clip_vision_path=files.clip_vision,
        t5xxl_path=files.t5xxl,
        llm_path=files.llm,
        llm_vision_path=files.llm_vision,
        qwen_image_zero_cond_t=inspect(files.main).variant == "edit_2511",
        control_net_path=files.control_net,
        photo_maker_path=files.photo_maker,
        embeddings=list(files.embeddings),
        vae_decode_only=False,  # img2img/inpaint/reference images need the encoder
        free_params_immediately=False,  # one load serves many calls
        n_threads=threads,
        wtype=weight_type,
        rng_type=options.rng,
        offload_params_to_cpu=options.offload_to_cpu,
        enable_mmap=options.mmap,
        keep_clip_on_cpu=options.keep_clip_on_cpu,
        keep_control_net_on_cpu=options.keep_control_net_on_cpu,
        keep_vae_on_cpu=options.keep_vae_on_cpu,
        flash_attn=options.flash_attention,
        diffusion_flash_attn=options.flash_attention,
        diffusion_conv_direct=options.direct_conv,
        vae_conv_direct=options.direct_conv,
    )


# --------------------------------------------------------------------------- the engine


class SdcppEngine(Engine):
    """stable-diffusion.cpp through gouache's ctypes binding (one SDContext)."""

    name = "sdcpp"

    def __init__(self, ctx: SDContext, options: EngineOptions) -> None:
        self.ctx = ctx
        self.options = options
        self._warned_guidance = False

    @classmethod
    def explain(cls, family: str | None = None, files: ModelFiles | None = None) -> Explanation:
        return Explanation(True, "stable-diffusion.cpp runs every family gouache detects, from single files or parts")

    @classmethod
    def samplers(cls) -> list[str]:
        return names(SAMPLERS)

    @classmethod
    def schedulers(cls) -> list[str]:
        return names(SCHEDULERS)

    @classmethod
    def create(
        cls,
        files: ModelFiles,
        *,
        options: EngineOptions,
        threads: int | None,
        weight_type: str | None,
        on_load_progress: ProgressFn | None = None,
    ) -> SdcppEngine:
        ctx = SDContext(
            context_params(files, options, threads, weight_type), progress=_load_progress_adapter(on_load_progress)
        )
        return cls(ctx, options)

    @classmethod
    def upscale(cls, image: Any, model: Any, *, factor: int | None, tile_size: int, threads: int | None) -> Any:
        with Upscaler(model, n_threads=threads, tile_size=tile_size) as up:
            return up.upscale(SDImage.from_pil(image), factor).to_pil()

    @property
    def can_generate_video(self) -> bool:
        return self.ctx.supports_video_generation

    def generate_images(self, r: ImageRequest, hooks: Hooks) -> list[Any]:
        control = r.control
        if control is not None and (control.start, control.end) != (0.0, 1.0) and not self._warned_guidance:
            self._warned_guidance = True
            log.warning(
                "control_guidance %s ignored: the sdcpp engine applies ControlNet on every step"
                " (use engine='torch' for start/end control)",
                (control.start, control.end),
            )
        return _run(self.ctx.generate_image, image_params(r, self.options), hooks)

    def generate_video(self, r: VideoRequest, hooks: Hooks) -> list[Any]:
        if not self.can_generate_video:
            raise InvalidInputError("this model cannot generate video (load a Wan model for video)")
        return _run(self.ctx.generate_video, video_params(r, self.options), hooks)

    def close(self) -> None:
        self.ctx.close()
        return_freed_memory()


ENGINE = SdcppEngine
