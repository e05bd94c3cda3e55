"""SDModel: a model loaded once that serves many generations."""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from . import sizing as _sizing
from .._engines.base import (
    Cache,
    EngineOptions,
    Guidance,
    Hires,
    Hooks,
    ImageRequest,
    LoraSpec,
    ModelFiles,
    PhotoMakerInput,
    PreviewSpec,
    VideoRequest,
    engine_class,
    load_engine,
    select_engine,
)
from .._errors import InvalidInputError
from .._image import SDImage
from .results import GenerationResult, VideoResult

log = logging.getLogger("gouache")

PathLike = str | os.PathLike[str]
ImageInput = Any  # path, PIL image or numpy array (uint8 or float in [0, 1])

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>")
MAX_SEED = 2**32 - 1


# --------------------------------------------------------------------------- helpers


def _to_pil(value: ImageInput, what: str) -> Image.Image:
    if isinstance(value, Image.Image):
        if value.width == 0 or value.height == 0:
            raise InvalidInputError(f"{what} is empty: size {value.size}")
        return value
    try:
        return SDImage.coerce(value).to_pil()
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc}") from None


def _rgb(value: ImageInput, what: str) -> Image.Image:
    im = _to_pil(value, what)
    if im.mode == "RGBA":
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB") if im.mode != "RGB" else im


def _gray(value: ImageInput, what: str) -> Image.Image:
    im = _to_pil(value, what)
    return im.convert("L") if im.mode != "L" else im


def _path(value: PathLike | None, what: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if not p.is_file():
        raise InvalidInputError(f"{what} not found: {str(p)!r}")
    return p


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    if not lo <= value <= hi:
        raise InvalidInputError(f"{name} must be in [{lo}, {hi}]; got {value}")
    return value


def _float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InvalidInputError(f"{name} must be a finite number in [{lo:g}, {hi:g}]; got {value!r}")
    if not lo <= float(value) <= hi:
        raise InvalidInputError(f"{name} must be in [{lo:g}, {hi:g}]; got {value!r}")
    return float(value)


def resolve_seed(seed: int) -> int:
    """``-1`` (or any negative) -> a random seed in [0, 2**32); others are checked and kept."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an integer (-1 = random); got {seed!r}")
    if seed < 0:
        return random.SystemRandom().randint(0, MAX_SEED)
    if seed >= 2**63:
        raise InvalidInputError(f"seed must be < 2**63; got {seed}")
    return seed


class _Timer:
    """Derives prepare/sample/decode phases from progress events."""

    def __init__(self, user: Callable[[int, int, float], object] | None) -> None:
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


# --------------------------------------------------------------------------- SDModel


class SDModel:
    """A model loaded once that serves many generations (``close()``, context manager).

    ``model`` is a single-file checkpoint (``.safetensors``, ``.gguf``, ``.ckpt``); models
    that ship as parts (Flux, SD3, Wan) pass ``diffusion_model=`` plus ``vae=``,
    ``clip_l=``, ``t5xxl=`` ... instead.  ``threads="auto"`` uses the physical cores.
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
        on_load_progress: Callable[[int, int, float], object] | None = None,
    ) -> None:
        if model is None and diffusion_model is None:
            raise InvalidInputError("SDModel needs model= (a checkpoint file) or diffusion_model=")
        if not isinstance(options, EngineOptions):
            raise InvalidInputError(f"options must be an EngineOptions, got {type(options).__name__}")
        self.files = ModelFiles(
            model=_path(model, "model file"),
            diffusion_model=_path(diffusion_model, "diffusion model file"),
            high_noise_diffusion_model=_path(high_noise_diffusion_model, "high-noise diffusion model file"),
            vae=_path(vae, "VAE file"),
            taesd=_path(taesd, "TAESD file"),
            clip_l=_path(clip_l, "CLIP-L file"),
            clip_g=_path(clip_g, "CLIP-G file"),
            t5xxl=_path(t5xxl, "T5-XXL file"),
            control_net=_path(control_net, "ControlNet file"),
            photo_maker=_path(photo_maker, "PhotoMaker file"),
            embeddings=_embeddings(embeddings),
        )
        self.lora_dir = Path(lora_dir) if lora_dir is not None else None
        if self.lora_dir is not None and not self.lora_dir.is_dir():
            raise InvalidInputError(f"lora_dir is not a directory: {str(self.lora_dir)!r}")
        self.threads = _threads(threads)
        self.weight_type = weight_type
        self.options = options
        from .._modelfiles.inspect import inspect

        main_file = self.files.model or self.files.diffusion_model
        self.info = inspect(main_file)
        self.defaults = self.info.defaults
        engine, self.engine_reason = select_engine(engine, self.info.family.value, self.files)
        self.engine_name = engine
        self._engine_cls = engine_class(engine)
        t0 = time.perf_counter()
        self._engine = load_engine(engine, self.files, options=options, threads=self.threads,
                                   weight_type=weight_type, on_load_progress=on_load_progress)
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s (%s) on %s in %.2fs", main_file.name, self.info.family.value, engine, self.load_seconds)

    # -- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Free the model (idempotent)."""
        eng, self._engine = getattr(self, "_engine", None), None
        if eng is not None:
            eng.close()

    @property
    def closed(self) -> bool:
        return self._engine is None

    def __enter__(self) -> "SDModel":
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
        callback: Callable[[int, int, float], object] | None = None,
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
        request, notes, geom = self._image_request(
            prompt, negative_prompt, width, height, steps, cfg_scale, sampler, scheduler, seed, batch, clip_skip,
            loras, control_image, control_strength, init_image, strength, mask, ref_images, photo_maker, hires,
            cache, vae_tiling, guidance, eta,
        )
        start, end = (_float("control_guidance start", control_guidance[0], 0.0, 1.0),
                      _float("control_guidance end", control_guidance[1], 0.0, 1.0))
        if start >= end:
            raise InvalidInputError(f"control_guidance start must be below end; got {tuple(control_guidance)}")
        request.control_guidance = (start, end)
        timer = _Timer(callback)
        hooks = Hooks(progress=timer, preview=preview, preview_spec=preview_options)
        images = engine.generate_images(request, hooks)
        images = [_sizing.from_canvas(im, geom) for im in images]
        seeds = [request.seed + i for i in range(len(images))]
        params = self._parameters(request, geom, notes)
        infotexts = [self._infotext(params, s) for s in seeds]
        timings = {"load": self.load_seconds, **timer.timings()}
        return GenerationResult(images, seeds, params, infotexts, timings)

    def _image_request(self, prompt, negative_prompt, width, height, steps, cfg_scale, sampler, scheduler, seed,
                       batch, clip_skip, loras, control_image, control_strength, init_image, strength, mask,
                       ref_images, photo_maker, hires, cache, vae_tiling, guidance, eta):
        """check_inputs: validate everything and build the engine request (no native work)."""
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string; got {type(prompt).__name__}")
        if not isinstance(negative_prompt, str):
            raise InvalidInputError(f"negative_prompt must be a string; got {type(negative_prompt).__name__}")
        prompt, tag_loras = self._lora_tags(prompt)
        d = self.defaults
        init = _rgb(init_image, "init_image") if init_image is not None else None
        if width is None and height is None and init is not None:
            width, height = init.size
        width = _int("width", d.width if width is None else width, 1, 16384)
        height = _int("height", d.height if height is None else height, 1, 16384)
        steps = _int("steps", d.steps if steps is None else steps, 1, 1000)
        cfg = _float("cfg_scale", d.cfg_scale if cfg_scale is None else cfg_scale, 0.0, 100.0)
        sampler = self._choice("sampler", sampler if sampler is not None else d.sampler, self._engine_cls.samplers())
        scheduler = self._choice("scheduler", scheduler if scheduler is not None else d.scheduler,
                                 self._engine_cls.schedulers())
        batch = _int("batch", batch, 1, 1024)
        clip_skip = _int("clip_skip", clip_skip, -1, 12)
        strength = _float("strength", strength, 0.0, 1.0)
        control_strength = _float("control_strength", control_strength, 0.0, 10.0)
        if eta is not None:
            eta = _float("eta", eta, 0.0, 100.0)
        if mask is not None and init is None:
            raise InvalidInputError("mask needs an init_image to inpaint into")
        if control_image is not None and self.files.control_net is None:
            raise InvalidInputError("control_image needs a ControlNet: load the model with SDModel(..., control_net=PATH)")
        if photo_maker is not None and self.files.photo_maker is None:
            raise InvalidInputError("photo_maker input needs SDModel(..., photo_maker=PATH)")
        if hires is not None and not isinstance(hires, Hires):
            raise InvalidInputError(f"hires must be a gouache.Hires; got {type(hires).__name__}")
        if cache is not None and not isinstance(cache, Cache):
            raise InvalidInputError(f"cache must be a gouache.Cache; got {type(cache).__name__}")
        if guidance is not None and not isinstance(guidance, Guidance):
            raise InvalidInputError(f"guidance must be a gouache.Guidance; got {type(guidance).__name__}")
        if guidance is None:
            guidance = Guidance(distilled_guidance=d.distilled_guidance)
        lora_specs = tuple(self._lora(p, w) for p, w in list(loras) + tag_loras)
        geom = _sizing.plan(width, height)
        notes: list[str] = []

        def place(im: Image.Image, what: str, fill) -> Image.Image:
            fitted, note = _sizing.fit(im, width, height, what=what, fill=fill)
            if note:
                notes.append(note)
            return _sizing.to_canvas(fitted, geom, fill=None if fill is None else fill)

        init_c = place(init, "init_image", None) if init is not None else None
        mask_c = None
        if mask is not None:
            m, note = _sizing.fit(_gray(mask, "mask"), width, height, what="mask", fill=0)
            if note:
                notes.append(note)
            mask_c = _sizing.to_canvas(m, geom, fill=0)  # padding is never repainted
        control_c = place(_rgb(control_image, "control_image"), "control_image", (0, 0, 0)) if control_image is not None else None
        refs = tuple(_rgb(r, f"ref_images[{i}]") for i, r in enumerate(ref_images))
        if geom.padded:
            notes.insert(0, geom.describe())
            log.info("size: %s", geom.describe())
        request = ImageRequest(
            prompt=prompt, negative_prompt=negative_prompt, width=geom.canvas_width, height=geom.canvas_height,
            steps=steps, cfg_scale=cfg, sampler=sampler, scheduler=scheduler, seed=resolve_seed(seed), batch=batch,
            clip_skip=clip_skip, loras=lora_specs, init_image=init_c, strength=strength, mask=mask_c,
            control_image=control_c, control_strength=control_strength, ref_images=refs, photo_maker=photo_maker,
            hires=hires, cache=cache, vae_tiling=vae_tiling, guidance=guidance, eta=eta, flow_shift=d.flow_shift,
        )
        if cfg == 1.0 and negative_prompt:
            log.warning("cfg_scale is 1: the negative prompt has no effect")
        return request, notes, geom

    def _choice(self, what: str, value: str | None, allowed: list[str]) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            raise InvalidInputError(f"unknown {what} {value!r} for engine {self.engine_name}; allowed: {', '.join(allowed)}")
        return value.strip().lower()

    def _lora(self, path_or_name: PathLike, weight: Any) -> LoraSpec:
        w = _float("LoRA weight", weight, -100.0, 100.0)
        p = Path(path_or_name)
        if p.is_file():
            return LoraSpec(p, w)
        if self.lora_dir is None:
            raise InvalidInputError(f"LoRA {str(path_or_name)!r} not found (give a file path, or SDModel(lora_dir=...) to resolve names)")
        from .._modelfiles.catalog import resolve_lora

        return LoraSpec(resolve_lora(str(path_or_name), self.lora_dir), w)

    def _lora_tags(self, prompt: str) -> tuple[str, list[tuple[str, float]]]:
        """Strip A1111 ``<lora:name:weight>`` tags from the prompt and return them."""
        found: list[tuple[str, float]] = []

        def take(m: re.Match) -> str:
            weight = m.group(2)
            try:
                w = 1.0 if weight is None else float(weight)
            except ValueError:
                raise InvalidInputError(f"bad LoRA weight {weight!r} in prompt tag {m.group(0)!r}") from None
            found.append((m.group(1).strip(), w))
            return ""

        cleaned = _LORA_TAG.sub(take, prompt)
        if found:
            cleaned = re.sub(r"\s{2,}", " ", cleaned).strip().strip(",").strip()
        return cleaned, found

    def _parameters(self, r: ImageRequest, geom: _sizing.Geometry, notes: list[str]) -> dict[str, Any]:
        main = self.files.model or self.files.diffusion_model
        p: dict[str, Any] = {
            "prompt": r.prompt,
            "negative_prompt": r.negative_prompt,
            "steps": r.steps,
            "sampler": r.sampler or "default",
            "scheduler": r.scheduler or "default",
            "cfg_scale": r.cfg_scale,
            "seed": r.seed,
            "width": geom.width,
            "height": geom.height,
            "batch": r.batch,
            "model": main.stem,
            "family": self.family,
            "engine": self.engine_name,
            "clip_skip": r.clip_skip,
            "loras": [(str(l.path), l.weight) for l in r.loras],
        }
        if r.init_image is not None:
            p["strength"] = r.strength
        if r.control_image is not None:
            p["control_strength"] = r.control_strength
        if notes:
            p["size_policy"] = "; ".join(notes)
        return p

    def _infotext(self, p: dict[str, Any], seed: int) -> str:
        from .infotext import A1111_SAMPLER_NAMES, A1111_SCHEDULE_NAMES, format_infotext

        fields: dict[str, Any] = {
            "Steps": p["steps"],
            "Sampler": A1111_SAMPLER_NAMES.get(p["sampler"], p["sampler"]),
        }
        if p["scheduler"] != "default":
            fields["Schedule type"] = A1111_SCHEDULE_NAMES.get(p["scheduler"], p["scheduler"])
        fields.update({"CFG scale": _num(p["cfg_scale"]), "Seed": seed, "Size": f"{p['width']}x{p['height']}",
                       "Model": p["model"]})
        if "strength" in p:
            fields["Denoising strength"] = _num(p["strength"])
        if p["clip_skip"] not in (-1, 0, 1):
            fields["Clip skip"] = p["clip_skip"]
        if p["loras"]:
            fields["Lora weights"] = ", ".join(f"{Path(x).stem}: {_num(w)}" for x, w in p["loras"])
        fields["Engine"] = p["engine"]
        from .._version import __version__

        fields["Version"] = f"gouache {__version__}"
        return format_infotext(p["prompt"], p["negative_prompt"], fields)

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
        callback: Callable[[int, int, float], object] | None = None,
    ) -> VideoResult:
        """Generate a video with a Wan model: text-to-video, image-to-video (``init_image``),
        first/last frame (``end_image``), VACE control frames; Wan 2.2 MoE models sample the
        high-noise part with ``high_noise_*`` until ``moe_boundary``.  Frame counts are 4k+1."""
        engine = self._require_engine()
        if not engine.can_generate_video:
            raise InvalidInputError(f"this {self.family} model cannot generate video; load a Wan model")
        d = self.defaults
        prompt, tag_loras = self._lora_tags(prompt)
        width = _int("width", d.width if width is None else width, 16, 16384)
        height = _int("height", d.height if height is None else height, 16, 16384)
        frames = _int("frames", (d.video_frames or 33) if frames is None else frames, 1, 10000)
        if (frames - 1) % 4:
            raise InvalidInputError(f"frames must be 4k+1 (1, 5, 9, ... 81) for Wan models; got {frames}")
        req = VideoRequest(
            prompt=prompt, negative_prompt=negative_prompt, width=width, height=height, frames=frames,
            steps=_int("steps", d.steps if steps is None else steps, 1, 1000),
            cfg_scale=_float("cfg_scale", d.cfg_scale if cfg_scale is None else cfg_scale, 0.0, 100.0),
            sampler=self._choice("sampler", sampler if sampler is not None else d.sampler, self._engine_cls.samplers()),
            scheduler=self._choice("scheduler", scheduler if scheduler is not None else d.scheduler, self._engine_cls.schedulers()),
            seed=resolve_seed(seed),
            init_image=_rgb(init_image, "init_image") if init_image is not None else None,
            end_image=_rgb(end_image, "end_image") if end_image is not None else None,
            control_frames=tuple(_rgb(f, f"control_frames[{i}]") for i, f in enumerate(control_frames)),
            strength=_float("strength", strength, 0.0, 1.0),
            loras=tuple(self._lora(p, w) for p, w in list(loras) + tag_loras),
            high_noise_steps=None if high_noise_steps is None else _int("high_noise_steps", high_noise_steps, 1, 1000),
            high_noise_cfg_scale=None if high_noise_cfg_scale is None else _float("high_noise_cfg_scale", high_noise_cfg_scale, 0.0, 100.0),
            high_noise_sampler=self._choice("high_noise_sampler", high_noise_sampler, self._engine_cls.samplers()),
            moe_boundary=_float("moe_boundary", moe_boundary, 0.0, 1.0),
            vace_strength=_float("vace_strength", vace_strength, 0.0, 10.0),
            flow_shift=d.flow_shift if flow_shift is None else _float("flow_shift", flow_shift, 0.0, 100.0),
        )
        timer = _Timer(callback)
        out = engine.generate_video(req, Hooks(progress=timer))
        params = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "width": width, "height": height,
                  "frames": frames, "steps": req.steps, "cfg_scale": req.cfg_scale, "sampler": req.sampler or "default",
                  "scheduler": req.scheduler or "default", "seed": req.seed, "model": (self.files.model or self.files.diffusion_model).stem,
                  "engine": self.engine_name}
        return VideoResult(out, req.seed, params, {"load": self.load_seconds, **timer.timings()})


def _num(x: float) -> str:
    return f"{x:g}"


def _threads(threads: int | str) -> int | None:
    if threads == "auto":
        return None  # the engine's default: physical cores
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidInputError(f"threads must be 'auto' or a positive integer; got {threads!r}")
    return threads


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
