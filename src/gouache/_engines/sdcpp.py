"""The stable-diffusion.cpp engine: maps engine-neutral requests onto the low-level API."""

from __future__ import annotations

import logging
import time
from typing import Any

from . import base as E
from .._sdcpp.handles import SDContext
from .._sdcpp.dispatch import PreviewOptions, Progress
from .._errors import InvalidInputError
from .._image import SDImage
from .._sdcpp.native import PreviewMode, SampleMethod, Scheduler
from .._sdcpp.genparams import SDImageGenParams, SDVideoGenParams
from .._sdcpp.params import (
    SDCacheParams,
    SDContextParams,
    SDHiresParams,
    SDLora,
    SDPhotoMakerParams,
    SDSampleParams,
    SDTilingParams,
)


log = logging.getLogger("gouache")


def _progress_adapter(fn: E.ProgressFn | None):
    """Engine Progress events -> ``fn(step, total, elapsed)`` for sampling steps only."""
    if fn is None:
        return None
    start = time.perf_counter()

    def on_progress(p: Progress) -> None:
        if p.phase == "sample" and p.step > 0:
            fn(p.step, p.total, time.perf_counter() - start)

    return on_progress


def _load_progress_adapter(fn: E.ProgressFn | None):
    if fn is None:
        return None
    start = time.perf_counter()
    return lambda p: fn(p.step, p.total, time.perf_counter() - start)


def _preview_adapter(hooks: E.Hooks):
    if hooks.preview is None:
        return None, None
    spec = hooks.preview_spec or E.PreviewSpec()
    options = PreviewOptions(mode=PreviewMode.parse(spec.mode), interval=int(spec.interval))
    fn = hooks.preview
    return (lambda pv: fn(pv.step, [f.to_pil() for f in pv.frames])), options


def _sample(steps: int, cfg: float, sampler: str | None, scheduler: str | None, eta: float | None,
            flow_shift: float | None, guidance: E.Guidance) -> SDSampleParams:
    return SDSampleParams(
        txt_cfg=float(cfg),
        img_cfg=guidance.image_cfg_scale,
        distilled_guidance=3.5 if guidance.distilled_guidance is None else float(guidance.distilled_guidance),
        slg_layers=tuple(guidance.slg_layers),
        slg_layer_start=guidance.slg_start,
        slg_layer_end=guidance.slg_end,
        slg_scale=guidance.slg_scale,
        sample_method=sampler,
        scheduler=scheduler,
        sample_steps=int(steps),
        eta=eta,
        flow_shift=flow_shift,
    )


def _loras(loras: tuple[E.LoraSpec, ...]) -> list[SDLora]:
    return [SDLora(l.path, float(l.weight), bool(l.high_noise)) for l in loras]


def _pil(img: Any, channels: int) -> SDImage | None:
    if img is None:
        return None
    return SDImage.coerce(img).with_channels(channels)


class SdcppEngine(E.Engine):
    """stable-diffusion.cpp through gouache's ctypes binding (one SDContext)."""

    name = "sdcpp"

    def __init__(self, ctx: SDContext, options: E.EngineOptions) -> None:
        self.ctx = ctx
        self.options = options
        self._warned_guidance = False

    @classmethod
    def samplers(cls) -> list[str]:
        return SampleMethod.names()

    @classmethod
    def schedulers(cls) -> list[str]:
        return Scheduler.names()

    @property
    def can_generate_video(self) -> bool:
        return self.ctx.supports_video_generation

    def _tiling(self, flag: bool | None) -> SDTilingParams:
        return SDTilingParams(enabled=self.options.vae_tiling if flag is None else bool(flag))

    def generate_images(self, r: E.ImageRequest, hooks: E.Hooks) -> list[Any]:
        if r.control_image is not None and tuple(r.control_guidance) != (0.0, 1.0) and not self._warned_guidance:
            self._warned_guidance = True
            log.warning("control_guidance %s ignored: the sdcpp engine applies ControlNet on every step"
                        " (use engine='torch' for start/end control)", tuple(r.control_guidance))
        hires = SDHiresParams()
        if r.hires is not None:
            h = r.hires
            hires = SDHiresParams(enabled=True, upscaler=h.upscaler, model_path=h.model, scale=h.scale,
                                  target_width=h.width, target_height=h.height, steps=h.steps,
                                  denoising_strength=h.denoising_strength)
        cache = SDCacheParams()
        if r.cache is not None:
            cache = SDCacheParams(mode=r.cache.mode, start_percent=r.cache.start, end_percent=r.cache.end)
            if r.cache.threshold is not None:
                cache.reuse_threshold = float(r.cache.threshold)
                cache.residual_diff_threshold = float(r.cache.threshold)
        pm = SDPhotoMakerParams()
        if r.photo_maker is not None:
            pm = SDPhotoMakerParams(id_images=[_pil(i, 3) for i in r.photo_maker.images],
                                    id_embed_path=r.photo_maker.id_embedding,
                                    style_strength=r.photo_maker.style_strength)
        params = SDImageGenParams(
            prompt=r.prompt,
            negative_prompt=r.negative_prompt,
            loras=_loras(r.loras),
            clip_skip=r.clip_skip,
            init_image=_pil(r.init_image, 3),
            ref_images=[_pil(i, 3) for i in r.ref_images],
            mask_image=_pil(r.mask, 1),
            width=r.width,
            height=r.height,
            sample_params=_sample(r.steps, r.cfg_scale, r.sampler, r.scheduler, r.eta, r.flow_shift, r.guidance),
            strength=r.strength,
            seed=r.seed,
            batch_count=r.batch,
            control_image=_pil(r.control_image, 3),
            control_strength=r.control_strength,
            pm_params=pm,
            vae_tiling_params=self._tiling(r.vae_tiling),
            cache=cache,
            hires=hires,
        )
        preview, preview_options = _preview_adapter(hooks)
        images = self.ctx.generate_image(params, progress=_progress_adapter(hooks.progress),
                                         preview=preview, preview_options=preview_options)
        return [im.to_pil() for im in images]

    def generate_video(self, r: E.VideoRequest, hooks: E.Hooks) -> list[Any]:
        if not self.can_generate_video:
            raise InvalidInputError("this model cannot generate video (load a Wan model for video)")
        high = SDSampleParams(sample_steps=-1)
        if r.high_noise_steps is not None:
            high = _sample(r.high_noise_steps, r.cfg_scale if r.high_noise_cfg_scale is None else r.high_noise_cfg_scale,
                           r.high_noise_sampler or r.sampler, r.scheduler, None, r.flow_shift, r.guidance)
        params = SDVideoGenParams(
            prompt=r.prompt,
            negative_prompt=r.negative_prompt,
            loras=_loras(r.loras),
            clip_skip=r.clip_skip,
            init_image=_pil(r.init_image, 3),
            end_image=_pil(r.end_image, 3),
            control_frames=[_pil(f, 3) for f in r.control_frames],
            width=r.width,
            height=r.height,
            sample_params=_sample(r.steps, r.cfg_scale, r.sampler, r.scheduler, None, r.flow_shift, r.guidance),
            high_noise_sample_params=high,
            moe_boundary=r.moe_boundary,
            strength=r.strength,
            seed=r.seed,
            video_frames=r.frames,
            vace_strength=r.vace_strength,
            vae_tiling_params=self._tiling(r.vae_tiling),
        )
        preview, preview_options = _preview_adapter(hooks)
        frames = self.ctx.generate_video(params, progress=_progress_adapter(hooks.progress),
                                         preview=preview, preview_options=preview_options)
        return [f.to_pil() for f in frames]

    def close(self) -> None:
        self.ctx.close()


def context_params(files: E.ModelFiles, options: E.EngineOptions, threads: int | None,
                   weight_type: str | None) -> SDContextParams:
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


def create_engine(files: E.ModelFiles, *, options: E.EngineOptions, threads: int | None,
                  weight_type: str | None, on_load_progress: E.ProgressFn | None = None) -> SdcppEngine:
    ctx = SDContext(context_params(files, options, threads, weight_type),
                    progress=_load_progress_adapter(on_load_progress))
    return SdcppEngine(ctx, options)


ENGINE_CLASS = SdcppEngine
