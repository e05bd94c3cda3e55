"""SDModel: a model loaded once that serves many generations."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from .._engines.registry import engine_class, load_engine, select_engine
from .._engines.requests import Cache, EngineOptions, Guidance, Hires, Hooks, ModelFiles, PhotoMakerInput, PreviewSpec
from .._errors import InvalidInputError
from .._limits import check
from .._modelfiles.families import EDITING_MODELS, edits_images
from .._modelfiles.folders import is_diffusers_folder
from .._modelfiles.hashes import model_short_hash
from .._modelfiles.inspect import inspect
from . import sizing
from .infotext import generation_infotext
from .requests import (
    ImageArgs,
    ModelContext,
    VideoArgs,
    check_image_args,
    check_video_args,
    edit_images,
    edit_size,
    spelling,
    wanted_frames,
)
from .results import GenerationResult, ModelLabel, VideoResult, image_parameters, video_parameters

log = logging.getLogger("gouache")

PathLike = str | os.PathLike[str]
ImageInput = Any  # path, PIL image, numpy array (uint8 or float in [0, 1]) or SDImage
ProgressCallback = Callable[[int, int, float], object]


class _Timer:
    """Derives prepare/sample/decode phases from progress events."""

    def __init__(self, user: ProgressCallback | None) -> None:
        self.user = user
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.steps = 0

    def __call__(self, step: int, total: int, elapsed: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.steps += 1
        if self.user is not None:
            self.user(step, total, now - self.t0)

    def timings(self) -> dict[str, float]:
        end = time.perf_counter()
        total = end - self.t0
        if self.first is None or self.last is None:
            return {"total": total}
        per_step = (self.last - self.first) / max(1, self.steps - 1) if self.steps > 1 else 0.0
        first_start = self.first - per_step
        return {
            "prepare": max(0.0, first_start - self.t0),
            "sample": self.last - first_start,
            "decode": end - self.last,
            "total": total,
        }


def _path(value: PathLike | None, what: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not p.is_file():
        raise InvalidInputError(f"{what} not found: {str(p)!r}")
    return p


def _model_path(value: PathLike | None) -> Path | None:
    """A checkpoint file or a diffusers folder (``model_index.json`` beside ``unet/`` ...)."""
    if value is not None and is_diffusers_folder(value):
        return Path(value)
    if value is not None and Path(value).is_dir():
        raise InvalidInputError(
            f"model folder {str(value)!r} is not a diffusers folder (no model_index.json in it);"
            " allowed: a checkpoint file (.safetensors, .gguf, .ckpt) or a diffusers folder"
        )
    return _path(value, "model file")


def threads_arg(threads: int | str) -> int | None:
    """``"auto"`` -> None (the engine's default: physical cores); a positive int is kept."""
    if threads == "auto":
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError(f"threads must be 'auto' or a positive integer; got {threads!r}")
    return check("threads", threads, "threads")


def _embeddings(value: dict[str, PathLike] | PathLike | None) -> tuple[tuple[str, Path], ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple((str(k), _path(v, f"embedding {k!r}")) for k, v in value.items())
    d = Path(value)
    if not d.is_dir():
        raise InvalidInputError(f"embeddings must be a dict of name -> file or a directory; {str(d)!r} is neither")
    exts = {".safetensors", ".pt", ".bin", ".gguf"}
    return tuple((p.stem, p) for p in sorted(d.iterdir()) if p.suffix.lower() in exts)


class SDModel:
    """A model loaded once that serves many generations (``close()``, context manager).

    ``model`` (also accepted as ``model_path=``, the integration plan's spelling) is a
    single-file checkpoint (``.safetensors``, ``.gguf``, ``.ckpt``) or a diffusers folder
    (``model_index.json``, ``unet/``, ``vae/`` ...; both engines load it); models that ship as
    parts (Flux, SD3, Wan, Qwen-Image, Z-Image, FLUX.2) pass ``diffusion_model=`` plus ``vae=``,
    ``clip_l=``, ``t5xxl=`` ... instead; ``llm=`` is the LLM text encoder of Z-Image (Qwen3 4B),
    Qwen-Image (Qwen2.5-VL 7B) and FLUX.2 (Mistral Small 3.2 / Qwen3), ``llm_vision=`` a separate
    Qwen2.5-VL vision tower (mmproj) for Qwen-Image-Edit.  ``threads="auto"`` uses the physical
    cores.
    ``lora_dir`` is where ``<lora:name:weight>`` prompt tags and LoRA names resolve.
    ``engine``: "auto" (default: torch when installed and the family is supported, else
    sdcpp; ``engine_reason`` says why), "sdcpp" or "torch".
    ``embeddings`` maps names to textual-inversion files, or is a directory of them.
    The model family is read from the file header and picks the defaults (size, steps,
    CFG, sampler) of every argument left at ``None``.
    """

    def __init__(
        self,
        model: PathLike | None = None,
        *,
        vae: PathLike | None = None,
        taesd: PathLike | None = None,
        clip_l: PathLike | None = None,
        clip_g: PathLike | None = None,
        t5xxl: PathLike | None = None,
        llm: PathLike | None = None,
        llm_vision: PathLike | None = None,
        diffusion_model: PathLike | None = None,
        high_noise_diffusion_model: PathLike | None = None,
        control_net: PathLike | None = None,
        photo_maker: PathLike | None = None,
        lora_dir: PathLike | None = None,
        embeddings: dict[str, PathLike] | PathLike | None = None,
        threads: int | str = "auto",
        weight_type: str | None = None,
        options: EngineOptions = EngineOptions(),
        engine: str = "auto",
        on_load_progress: ProgressCallback | None = None,
        model_path: PathLike | None = None,
    ) -> None:
        model = spelling("model", model, "model_path", model_path, required=False)
        if model is None and diffusion_model is None:
            raise InvalidInputError("SDModel needs model= (a checkpoint file) or diffusion_model=")
        if not isinstance(options, EngineOptions):
            raise InvalidInputError(f"options must be an EngineOptions, got {type(options).__name__}")
        self.files = ModelFiles(
            model=_model_path(model),
            diffusion_model=_path(diffusion_model, "diffusion model file"),
            high_noise_diffusion_model=_path(high_noise_diffusion_model, "high-noise diffusion model file"),
            vae=_path(vae, "VAE file"),
            taesd=_path(taesd, "TAESD file"),
            clip_l=_path(clip_l, "CLIP-L file"),
            clip_g=_path(clip_g, "CLIP-G file"),
            t5xxl=_path(t5xxl, "T5-XXL file"),
            llm=_path(llm, "LLM text encoder file"),
            llm_vision=_path(llm_vision, "LLM vision encoder file"),
            control_net=_path(control_net, "ControlNet file"),
            photo_maker=_path(photo_maker, "PhotoMaker file"),
            embeddings=_embeddings(embeddings),
        )
        self.lora_dir = Path(lora_dir) if lora_dir is not None else None
        if self.lora_dir is not None and not self.lora_dir.is_dir():
            raise InvalidInputError(f"lora_dir is not a directory: {str(self.lora_dir)!r}")
        self._hash: str | None = None  # A1111's Model hash, computed (or read from its cache) on first use
        self.threads = threads_arg(threads)
        self.weight_type = weight_type
        self.options = options
        self.info = inspect(self.files.main)
        self.defaults = self.info.defaults
        self.engine_name, self.engine_reason = select_engine(engine, self.info.family.value, self.files)
        self._engine_cls = engine_class(self.engine_name)
        t0 = time.perf_counter()
        self._engine = load_engine(
            self.engine_name,
            self.files,
            options=options,
            threads=self.threads,
            weight_type=weight_type,
            on_load_progress=on_load_progress,
        )
        self.load_seconds = time.perf_counter() - t0
        log.info(
            "loaded %s (%s) on %s in %.2fs", self.files.main.name, self.family, self.engine_name, self.load_seconds
        )

    # -- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Free the model (idempotent)."""
        eng, self._engine = getattr(self, "_engine", None), None
        if eng is not None:
            eng.close()

    @property
    def closed(self) -> bool:
        return self._engine is None

    def __enter__(self) -> SDModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_engine(self):
        if self._engine is None:
            raise InvalidInputError("this SDModel is closed")
        return self._engine

    @property
    def family(self) -> str:
        return self.info.family.value

    def _context(self) -> ModelContext:
        return ModelContext(
            defaults=self.defaults,
            engine_name=self.engine_name,
            samplers=tuple(self._engine_cls.samplers()),
            schedulers=tuple(self._engine_cls.schedulers()),
            has_control_net=self.files.control_net is not None,
            has_photo_maker=self.files.photo_maker is not None,
            lora_dir=self.lora_dir,
        )

    def _label(self) -> ModelLabel:
        if self._hash is None and self.files.main.is_file():  # a diffusers folder has no file hash
            self._hash = model_short_hash(self.files.main)
        return ModelLabel(name=self.files.main.stem, family=self.family, engine=self.engine_name, hash=self._hash)

    # -- image generation -------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        scheduler: str | None = None,
        seed: int = -1,
        batch: int = 1,
        clip_skip: int = -1,
        loras: Sequence[tuple[PathLike, float]] = (),
        control_image: ImageInput | None = None,
        control_strength: float = 0.9,
        control_guidance: tuple[float, float] = (0.0, 1.0),
        init_image: ImageInput | None = None,
        strength: float = 0.75,
        mask: ImageInput | None = None,
        ref_images: Sequence[ImageInput] = (),
        photo_maker: PhotoMakerInput | None = None,
        hires: Hires | None = None,
        cache: Cache | None = None,
        vae_tiling: bool | None = None,
        guidance: Guidance | None = None,
        eta: float | None = None,
        callback: ProgressCallback | None = None,
        preview: Callable[[int, list[Image.Image]], object] | None = None,
        preview_options: PreviewSpec | None = None,
    ) -> GenerationResult:
        """Generate ``batch`` images: txt2img, img2img (``init_image`` + ``strength``), inpainting
        (``mask``, white = repaint), ControlNet (``control_image``), reference images,
        PhotoMaker, hires fix, step caching.  Every argument is checked before any native work.
        ``callback(step, total, elapsed)`` is called after every sampling step;
        ``preview(step, images)`` receives preview images (``preview_options``: mode, interval).
        ``control_guidance=(start, end)``: the fraction of the steps where the ControlNet acts
        (torch engine; sdcpp applies it on every step and warns once).
        """
        engine = self._require_engine()
        args = ImageArgs(
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            steps=steps,
            cfg_scale=cfg_scale,
            sampler=sampler,
            scheduler=scheduler,
            seed=seed,
            batch=batch,
            clip_skip=clip_skip,
            loras=loras,
            control_image=control_image,
            control_strength=control_strength,
            control_guidance=control_guidance,
            init_image=init_image,
            strength=strength,
            mask=mask,
            ref_images=ref_images,
            photo_maker=photo_maker,
            hires=hires,
            cache=cache,
            vae_tiling=vae_tiling,
            guidance=guidance,
            eta=eta,
        )
        prepared = check_image_args(args, self._context())
        timer = _Timer(callback)
        images = engine.generate_images(
            prepared.request, Hooks(progress=timer, preview=preview, preview_spec=preview_options)
        )
        images = [sizing.from_canvas(im, prepared.geometry) for im in images]
        seeds = [prepared.request.seed + i for i in range(len(images))]
        params = image_parameters(prepared, self._label())
        infotexts = [generation_infotext(params, s) for s in seeds]
        return GenerationResult(images, seeds, params, infotexts, {"load": self.load_seconds, **timer.timings()})

    # -- image editing ----------------------------------------------------------------

    def edit(
        self,
        images: ImageInput | Sequence[ImageInput],
        instruction: str,
        *,
        negative_prompt: str = "",
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        scheduler: str | None = None,
        seed: int = -1,
        batch: int = 1,
        loras: Sequence[tuple[PathLike, float]] = (),
        guidance: Guidance | None = None,
        cache: Cache | None = None,
        vae_tiling: bool | None = None,
        callback: ProgressCallback | None = None,
        preview: Callable[[int, list[Image.Image]], object] | None = None,
        preview_options: PreviewSpec | None = None,
    ) -> GenerationResult:
        """Edit ``images`` (one image, or several for models that combine them) as ``instruction``
        says ("make the sky pink", "put the cat from image 2 on the sofa"), with an editing model:
        FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2, InstructPix2Pix / CosXL Edit.  The images are the
        model's reference images; the result has the first image's size unless ``width``/``height``
        are given (scaled down, aspect kept, to the family's default area when larger).  Other
        models are refused: use :meth:`generate` with ``init_image`` (img2img) for them."""
        self._require_engine()
        if not edits_images(self.info.family, self.info.variant):
            models = ", ".join(sorted(set(EDITING_MODELS.values())))
            raise InvalidInputError(
                f"edit needs an image-editing model ({models}); {self.files.main.name!r} is a"
                f" {self.family}{'/' + self.info.variant if self.info.variant else ''} model:"
                " use generate(init_image=...) to re-imagine an image with it"
            )
        refs = edit_images(images)
        width, height = edit_size(width, height, refs[0], self.defaults)
        return self.generate(
            instruction,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            steps=steps,
            cfg_scale=cfg_scale,
            sampler=sampler,
            scheduler=scheduler,
            seed=seed,
            batch=batch,
            loras=loras,
            ref_images=refs,
            guidance=guidance,
            cache=cache,
            vae_tiling=vae_tiling,
            callback=callback,
            preview=preview,
            preview_options=preview_options,
        )

    # -- video ------------------------------------------------------------------------

    def generate_video(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        width: int | None = None,
        height: int | None = None,
        frames: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        scheduler: str | None = None,
        seed: int = -1,
        init_image: ImageInput | None = None,
        end_image: ImageInput | None = None,
        control_frames: Sequence[ImageInput] = (),
        strength: float = 0.75,
        loras: Sequence[tuple[PathLike, float]] = (),
        high_noise_steps: int | None = None,
        high_noise_cfg_scale: float | None = None,
        high_noise_sampler: str | None = None,
        moe_boundary: float = 0.875,
        vace_strength: float = 1.0,
        flow_shift: float | None = None,
        callback: ProgressCallback | None = None,
        video_frames: int | None = None,
    ) -> VideoResult:
        """Generate a video with a Wan model: text-to-video, image-to-video (``init_image``),
        first/last frame (``end_image``), VACE control frames; Wan 2.2 MoE models sample the
        high-noise part with ``high_noise_*`` until ``moe_boundary``.

        ``frames`` (also accepted as ``video_frames=``, the engine's and the integration plan's
        spelling) is the number of frames returned.  Wan makes 4k+1 frames (1, 5, 9, ... 81);
        another count is generated as the next 4k+1 and the extra frames are dropped."""
        frames = spelling("frames", frames, "video_frames", video_frames, required=False)
        engine = self._require_engine()
        if not engine.can_generate_video:
            raise InvalidInputError(f"this {self.family} model cannot generate video; load a Wan model")
        args = VideoArgs(
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            frames=frames,
            steps=steps,
            cfg_scale=cfg_scale,
            sampler=sampler,
            scheduler=scheduler,
            seed=seed,
            init_image=init_image,
            end_image=end_image,
            control_frames=control_frames,
            strength=strength,
            loras=loras,
            high_noise_steps=high_noise_steps,
            high_noise_cfg_scale=high_noise_cfg_scale,
            high_noise_sampler=high_noise_sampler,
            moe_boundary=moe_boundary,
            vace_strength=vace_strength,
            flow_shift=flow_shift,
        )
        request = check_video_args(args, self._context())
        timer = _Timer(callback)
        wanted = wanted_frames(frames, self.defaults)
        if wanted != request.frames:
            log.info("Wan makes 4k+1 frames: generating %d and keeping the first %d", request.frames, wanted)
        frames_out = engine.generate_video(request, Hooks(progress=timer))[:wanted]
        return VideoResult(
            frames_out,
            request.seed,
            {**video_parameters(request, self._label()), "frames": wanted},
            {"load": self.load_seconds, **timer.timings()},
        )
