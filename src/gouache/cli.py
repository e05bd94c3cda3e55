"""The ``gouache`` command (also ``python -m gouache``).

Generation runs in a child process: the native engine cannot be cancelled, so Ctrl-C
terminates the child at once and the parent exits with code 130; images already
finished are kept (each is written atomically as soon as it exists), nothing partial is
left.  Exit codes: 0 ok, 1 runtime error, 2 usage error (bad option or value), 130
interrupted.  Errors print one line; ``--debug`` prints the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ._version import __version__
from .batch import _cli as batch_cli

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------- argument parsing


def _add_model_options(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    g = p.add_argument_group("model files")
    if model_required:
        g.add_argument("-m", "--model", metavar="PATH",
                       help="checkpoint file (.safetensors, .gguf, .ckpt); omit when using --diffusion-model")
    g.add_argument("--diffusion-model", metavar="PATH", help="diffusion model alone (Flux, SD3, Wan ship as parts)")
    g.add_argument("--high-noise-diffusion-model", metavar="PATH", help="Wan 2.2 high-noise expert")
    g.add_argument("--vae", metavar="PATH", help="VAE file")
    g.add_argument("--taesd", metavar="PATH", help="tiny autoencoder (fast decode)")
    g.add_argument("--clip-l", metavar="PATH", help="CLIP-L text encoder")
    g.add_argument("--clip-g", metavar="PATH", help="CLIP-G text encoder")
    g.add_argument("--t5xxl", metavar="PATH", help="T5-XXL / UMT5 text encoder")
    g.add_argument("--control-net", metavar="PATH", help="ControlNet file")
    g.add_argument("--photo-maker", metavar="PATH", help="PhotoMaker file")
    g.add_argument("--lora-dir", metavar="DIR", help="where <lora:name:weight> tags and --lora names resolve")
    g.add_argument("--embeddings", metavar="DIR", help="directory of textual-inversion embeddings")
    e = p.add_argument_group("engine")
    e.add_argument("--engine", default="auto", choices=["auto", "sdcpp", "torch"],
                   help="auto (default): torch when installed and the model family is supported, else sdcpp")
    e.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="torch engine: weight precision (auto: bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA)")
    e.add_argument("--compile", action="store_true", help="torch engine: torch.compile the UNet")
    e.add_argument("--threads", default="auto", help="CPU threads ('auto' = physical cores)")
    e.add_argument("--weight-type", metavar="TYPE", help="convert weights while loading: f16, q8_0, q4_0, ...")
    e.add_argument("--rng", default="cuda", choices=["cuda", "cpu", "std_default"], help="noise generator")
    for flag, text in (
        ("--offload-to-cpu", "keep weights in RAM, move to the GPU per use"),
        ("--keep-vae-on-cpu", "run the VAE on the CPU"),
        ("--keep-clip-on-cpu", "run the text encoders on the CPU"),
        ("--keep-control-net-on-cpu", "run the ControlNet on the CPU"),
        ("--flash-attention", "use flash attention"),
        ("--direct-conv", "use direct convolution kernels"),
        ("--vae-tiling", "encode/decode the VAE in tiles (less memory)"),
        ("--mmap", "memory-map model files"),
    ):
        e.add_argument(flag, action="store_true", help=text)


def _add_generation_options(p: argparse.ArgumentParser, *, prompt: bool = True) -> None:
    g = p.add_argument_group("generation")
    if prompt:
        g.add_argument("prompt", help="prompt text; <lora:name:weight> tags are honoured")
    g.add_argument("-n", "--negative-prompt", default="", help="negative prompt")
    g.add_argument("-W", "--width", type=int, help="width in pixels (default: the model family's)")
    g.add_argument("-H", "--height", type=int, help="height in pixels (default: the model family's)")
    g.add_argument("--steps", type=int, help="sampling steps (default: the model family's)")
    g.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale")
    g.add_argument("--sampler", help="sampler: euler, euler_a, heun, dpm2, dpm++2s_a, dpm++2m, dpm++2mv2, ipndm, ipndm_v, lcm, ddim_trailing, tcd, res_multistep, res_2s, er_sde")
    g.add_argument("--scheduler", help="scheduler: discrete, karras, exponential, ays, gits, sgm_uniform, simple, smoothstep, kl_optimal, lcm, bong_tangent")
    g.add_argument("--seed", type=int, default=-1, help="seed (-1 = random; batch images use seed, seed+1, ...)")
    g.add_argument("--batch", type=int, default=1, help="number of images")
    g.add_argument("--clip-skip", type=int, default=-1, help="CLIP layers to skip (-1 = model default)")
    g.add_argument("--lora", action="append", default=[], metavar="PATH_OR_NAME[:WEIGHT]", help="apply a LoRA (repeatable)")
    g.add_argument("--ref-image", action="append", default=[], metavar="PATH", help="reference image (repeatable)")
    g.add_argument("--guidance", type=float, help="distilled guidance (Flux-dev style models)")
    g.add_argument("--image-cfg-scale", type=float, help="image CFG (instruct/inpaint models)")
    g.add_argument("--eta", type=float, help="eta for ancestral/DDIM-style samplers")
    g.add_argument("--hires-scale", type=float, help="hires fix: upscale factor (enables hires fix)")
    g.add_argument("--hires-upscaler", default="latent", help="hires upscaler: latent, lanczos, nearest, model, ...")
    g.add_argument("--hires-model", metavar="PATH", help="ESRGAN file for --hires-upscaler model")
    g.add_argument("--hires-steps", type=int, default=0, help="hires steps (0 = same as --steps)")
    g.add_argument("--hires-strength", type=float, default=0.7, help="hires denoising strength")
    g.add_argument("--cache", metavar="MODE", help="step cache: easycache, ucache, dbcache, taylorseer, cache_dit, spectrum")
    g.add_argument("--cache-threshold", type=float, help="step cache reuse threshold")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", required=True, type=Path, help="output file (.png/.jpg/.webp); batches are numbered out-1.png ...")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gouache", description="Local diffusion: generate, edit, upscale and animate images.")
    p.add_argument("--version", action="version", version=f"gouache {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks and the engine log")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("txt2img", parents=[common], help="generate images from a prompt")
    _add_model_options(s)
    _add_generation_options(s)

    s = sub.add_parser("img2img", parents=[common], help="re-imagine an image")
    _add_model_options(s)
    s.add_argument("--init-image", "-i", required=True, metavar="PATH", help="input image")
    s.add_argument("--strength", type=float, default=0.75, help="0 keeps the image, 1 ignores it")
    _add_generation_options(s)

    s = sub.add_parser("inpaint", parents=[common], help="repaint the white part of a mask")
    _add_model_options(s)
    s.add_argument("--init-image", "-i", required=True, metavar="PATH", help="input image")
    s.add_argument("--mask", required=True, metavar="PATH", help="mask: white = repaint")
    s.add_argument("--strength", type=float, default=1.0, help="denoising strength")
    _add_generation_options(s)

    s = sub.add_parser("controlnet", parents=[common], help="generate guided by a control image")
    _add_model_options(s)
    s.add_argument("--control-image", required=True, metavar="PATH", help="control image (edges, depth, pose ...)")
    s.add_argument("--canny", action="store_true", help="run Canny edge detection on the control image first")
    s.add_argument("--control-strength", type=float, default=0.9, help="ControlNet strength")
    s.add_argument("--init-image", "-i", metavar="PATH", help="optional init image (img2img + ControlNet)")
    s.add_argument("--strength", type=float, default=0.75, help="denoising strength with --init-image")
    _add_generation_options(s)

    s = sub.add_parser("upscale", parents=[common], help="upscale an image with an ESRGAN model")
    s.add_argument("-m", "--model", required=True, metavar="PATH", help="ESRGAN model file")
    s.add_argument("image", help="input image")
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--factor", type=int, help="upscale factor (default: the model's)")
    s.add_argument("--tile-size", type=int, default=128)
    s.add_argument("--threads", default="auto")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("video", parents=[common], help="generate a video with a Wan model")
    _add_model_options(s)
    s.add_argument("--frames", type=int, help="frames (4k+1)")
    s.add_argument("--fps", type=int, default=16, help="frames per second of the written file")
    s.add_argument("--init-image", "-i", metavar="PATH", help="first frame (image-to-video)")
    s.add_argument("--end-image", metavar="PATH", help="last frame")
    s.add_argument("--control-frame", action="append", default=[], metavar="PATH", help="VACE control frame (repeatable)")
    s.add_argument("--strength", type=float, default=0.75)
    s.add_argument("--high-noise-steps", type=int, help="Wan 2.2: steps of the high-noise expert")
    s.add_argument("--high-noise-cfg-scale", type=float)
    s.add_argument("--high-noise-sampler")
    s.add_argument("--moe-boundary", type=float, default=0.875)
    s.add_argument("--vace-strength", type=float, default=1.0)
    s.add_argument("--flow-shift", type=float)
    _add_generation_options(s)

    s = sub.add_parser("enhance", parents=[common], help="enhance rendered views of a 3D scene (depth-guided)")
    s.add_argument("views", nargs="+", help="view images (PNG with alpha is kept)")
    s.add_argument("-m", "--model", required=True, metavar="PATH", help="SDXL(-Lightning) or SD1.x checkpoint")
    s.add_argument("--controlnet", metavar="PATH", help="depth ControlNet (ldm or diffusers layout)")
    s.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]", help="e.g. the SDXL-Lightning LoRA")
    s.add_argument("--depth", metavar="DIR", help="folder of depth maps named like the views (.png/.npy/.exr-free)")
    s.add_argument("--depth-model", metavar="PATH", help="ONNX depth model for views without a depth map")
    s.add_argument("--prompt", help="prompt for every view (default: from --template and --subject)")
    s.add_argument("--template", default="default", help="prompt template: default, photorealistic, product, character, environment, object, anime_style")
    s.add_argument("--subject", default="an object", help="subject for the template")
    s.add_argument("--preset", default="cpu", choices=["t4_gpu", "quality", "speed", "cpu"], help="EnhanceConfig preset")
    s.add_argument("--steps", type=int, help="denoising steps (overrides the preset)")
    s.add_argument("--strength", type=float, help="img2img strength (overrides the preset)")
    s.add_argument("--controlnet-scale", type=float, help="ControlNet scale (overrides the preset)")
    s.add_argument("--working-size", type=int, help="long side of the working canvas (multiple of 64)")
    s.add_argument("--seed", type=int, help="seed shared by all views")
    s.add_argument("--engine", default="auto", choices=["auto", "sdcpp", "torch"])
    s.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("convert", parents=[common], help="convert/quantize a model (GGUF or safetensors)")
    s.add_argument("input", help="input model file")
    s.add_argument("output", help="output file (.gguf or .safetensors)")
    s.add_argument("--type", default="f16", help="weight type: f32, f16, bf16, q8_0, q5_0, q4_0, q4_k, ...")
    s.add_argument("--vae", help="VAE to bundle")
    s.add_argument("--tensor-type-rules", help="per-tensor types, e.g. '^vae\\.=f16,model\\.=q8_0'")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("assemble", parents=[common],
                       help="one checkpoint from a base checkpoint and a UNet-only file (e.g. SDXL-Lightning)")
    s.add_argument("base", help="full base checkpoint (e.g. sd_xl_base_1.0.safetensors)")
    s.add_argument("unet", help="UNet-only file, diffusers or ldm names (e.g. sdxl_lightning_4step_unet.safetensors)")
    s.add_argument("-o", "--output", required=True, help="output .safetensors file")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("info", parents=[common], help="system info, or inspect a model file")
    s.add_argument("model", nargs="?", help="model file to inspect")

    s = sub.add_parser("models", parents=[common], help="list model files under a ComfyUI/A1111 models directory")
    s.add_argument("root", nargs="?", default=".", help="the UI's folder or its models/ folder")

    s = sub.add_parser("pull", parents=[common], help="download a model (needs gouache[hub] and network)")
    s.add_argument("name", help="recipe name (see --list) or a hub repo id")
    s.add_argument("filename", nargs="?", help="file in the repo")
    s.add_argument("--revision")
    s.add_argument("--dir", type=Path, help="cache directory")
    batch_cli.add_parser(sub, [common])
    return p


# --------------------------------------------------------------------------- jobs (run in the child)


def _model_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    from ._engine import EngineOptions

    threads: Any = a.threads if a.threads == "auto" else _int_arg("--threads", a.threads)
    return dict(
        vae=a.vae, taesd=a.taesd, clip_l=a.clip_l, clip_g=a.clip_g, t5xxl=a.t5xxl,
        diffusion_model=a.diffusion_model, high_noise_diffusion_model=a.high_noise_diffusion_model,
        control_net=a.control_net, photo_maker=a.photo_maker, lora_dir=a.lora_dir, embeddings=a.embeddings,
        threads=threads, weight_type=a.weight_type, engine=a.engine,
        options=EngineOptions(
            offload_to_cpu=a.offload_to_cpu, keep_vae_on_cpu=a.keep_vae_on_cpu, keep_clip_on_cpu=a.keep_clip_on_cpu,
            keep_control_net_on_cpu=a.keep_control_net_on_cpu, flash_attention=a.flash_attention,
            direct_conv=a.direct_conv, vae_tiling=a.vae_tiling, mmap=a.mmap, rng=a.rng,
            precision=a.precision, compile=a.compile,
        ),
    )


def _int_arg(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        from ._errors import InvalidInputError

        raise InvalidInputError(f"{name} must be an integer or 'auto'; got {value!r}") from None


def _loras(values: list[str]) -> list[tuple[str, float]]:
    out = []
    for v in values:
        name, sep, weight = v.rpartition(":")
        if sep and name and _is_float(weight):
            out.append((name, float(weight)))
        else:
            out.append((v, 1.0))
    return out


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _generate_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    from ._engine import Cache, Guidance, Hires

    kw: dict[str, Any] = dict(
        negative_prompt=a.negative_prompt, width=a.width, height=a.height, steps=a.steps, cfg_scale=a.cfg_scale,
        sampler=a.sampler, scheduler=a.scheduler, clip_skip=a.clip_skip, loras=_loras(a.lora),
        ref_images=list(a.ref_image),
    )
    if a.guidance is not None or a.image_cfg_scale is not None:
        kw["guidance"] = Guidance(image_cfg_scale=a.image_cfg_scale, distilled_guidance=a.guidance)
    if a.eta is not None:
        kw["eta"] = a.eta
    if a.hires_scale is not None:
        kw["hires"] = Hires(scale=a.hires_scale, upscaler=a.hires_upscaler, model=a.hires_model,
                            steps=a.hires_steps, denoising_strength=a.hires_strength)
    if a.cache:
        kw["cache"] = Cache(mode=a.cache, threshold=a.cache_threshold)
    for name in ("strength", "control_strength"):
        if getattr(a, name, None) is not None:
            kw[name] = getattr(a, name)
    if getattr(a, "init_image", None):
        kw["init_image"] = a.init_image
    if getattr(a, "mask", None):
        kw["mask"] = a.mask
    return kw


def _child(conn, argv: list[str]) -> None:
    """Child process: load the model, generate image by image, send each one as it exists."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, format="%(name)s: %(message)s")
    try:
        from ._model import SDModel, resolve_seed

        send = conn.send
        model_kwargs = _model_kwargs(a)
        model = SDModel(a.model, on_load_progress=lambda s, t, e: send(("load", s, t)), **model_kwargs)
        if a.command == "video":
            res = model.generate_video(
                a.prompt, negative_prompt=a.negative_prompt, width=a.width, height=a.height, frames=a.frames,
                steps=a.steps, cfg_scale=a.cfg_scale, sampler=a.sampler, scheduler=a.scheduler, seed=a.seed,
                init_image=a.init_image, end_image=a.end_image, control_frames=a.control_frame,
                strength=a.strength, loras=_loras(a.lora), high_noise_steps=a.high_noise_steps,
                high_noise_cfg_scale=a.high_noise_cfg_scale, high_noise_sampler=a.high_noise_sampler,
                moe_boundary=a.moe_boundary, vace_strength=a.vace_strength, flow_shift=a.flow_shift,
                callback=lambda s, t, e: send(("step", s, t)),
            )
            send(("video", res.frames, res.seed, res.parameters, res.timings))
            send(("done",))
            return
        kw = _generate_kwargs(a)
        if a.command == "controlnet":
            kw["control_image"] = _control_image(a)
        seed = resolve_seed(a.seed)
        for i in range(a.batch):  # one call per image: each image is saved as soon as it exists
            res = model.generate(a.prompt, seed=seed + i, batch=1, callback=lambda s, t, e: send(("step", s, t)), **kw)
            send(("image", i, res.images[0], res.infotexts[0], res.seeds[0], res.parameters, res.timings))
        send(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", _error_kind(exc), f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _control_image(a: argparse.Namespace):
    if not a.canny:
        return a.control_image
    from ._context import canny
    from ._image import SDImage

    return canny(SDImage.open(a.control_image).with_channels(3)).to_pil()


def _error_kind(exc: BaseException) -> str:
    from ._errors import InvalidInputError

    return "usage" if isinstance(exc, InvalidInputError) else "runtime"


# --------------------------------------------------------------------------- parent side


class _Progress:
    """Progress bars on stderr (tqdm); silent with --quiet or --json."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.phase = None

    def update(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.phase != phase or self.bar is None or self.bar.total != total:
            self.close()
            self.bar = tqdm(total=total, desc=phase, file=sys.stderr, leave=False, dynamic_ncols=True)
            self.phase = phase
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _precheck(a: argparse.Namespace) -> None:
    """Check what can be checked before the engine process starts (no model load)."""
    from ._engine import ModelFiles, engine_class, select_engine
    from ._errors import InvalidInputError

    engine = a.engine
    if engine == "auto" and a.model and Path(a.model).is_file():
        from ._families import inspect

        files = ModelFiles(model=Path(a.model), clip_l=a.clip_l, clip_g=a.clip_g, t5xxl=a.t5xxl, photo_maker=a.photo_maker)
        engine, _ = select_engine("auto", inspect(a.model).family.value, files)
    cls = engine_class("sdcpp" if engine == "auto" else engine)
    for name, allowed in (("sampler", cls.samplers()), ("scheduler", cls.schedulers()),
                          ("high_noise_sampler", cls.samplers())):
        value = getattr(a, name, None)
        if value is not None and value.strip().lower() not in allowed:
            raise InvalidInputError(f"unknown {name} {value!r} for engine {engine}; allowed: {', '.join(allowed)}")
    for name, lo, hi in (("width", 1, 16384), ("height", 1, 16384), ("steps", 1, 1000), ("batch", 1, 1024)):
        value = getattr(a, name, None)
        if value is not None and not lo <= value <= hi:
            raise InvalidInputError(f"--{name} must be in [{lo}, {hi}]; got {value}")
    for name in ("strength",):
        value = getattr(a, name, None)
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"--{name} must be in [0, 1]; got {value}")
    for name in ("model", "diffusion_model", "vae", "taesd", "clip_l", "clip_g", "t5xxl", "control_net",
                 "photo_maker", "init_image", "mask", "control_image", "end_image"):
        value = getattr(a, name, None)
        if value is not None and not Path(value).is_file():
            raise InvalidInputError(f"--{name.replace('_', '-')} file not found: {value!r}")


def _run_generation(a: argparse.Namespace, argv: list[str]) -> int:
    from ._output import check_writable, numbered_paths, save_image

    _precheck(a)
    if a.command == "video":
        paths = [a.output]
    else:
        paths = numbered_paths(a.output, a.batch if a.batch and a.batch > 0 else 1)
    check_writable(paths, overwrite=a.overwrite)
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_conn, argv), daemon=True)
    proc.start()
    child_conn.close()
    bars = _Progress(not (a.quiet or a.json))
    saved: list[dict[str, Any]] = []
    last_params: dict[str, Any] | None = None
    started = time.perf_counter()
    try:
        while True:
            try:
                msg = parent_conn.recv()
            except EOFError:
                proc.join(1)
                raise _Failure("runtime", f"the engine process died (exit code {proc.exitcode})", "") from None
            kind = msg[0]
            if kind == "load":
                bars.update("load", msg[1], msg[2])
            elif kind == "step":
                bars.update(f"image {len(saved) + 1}/{len(paths)}" if a.command != "video" else "video", msg[1], msg[2])
            elif kind == "image":
                _, i, image, infotext, seed, params, timings = msg
                path = save_image(image, paths[i], infotext=infotext, overwrite=a.overwrite)
                saved.append({"path": str(path), "seed": seed, "timings": timings})
                last_params = params
            elif kind == "video":
                from ._video import save_video

                _, frames, seed, params, timings = msg
                path = save_video(frames, paths[0], fps=a.fps, overwrite=a.overwrite)
                saved.append({"path": str(path), "seed": seed, "frames": len(frames), "timings": timings})
                last_params = params
            elif kind == "error":
                raise _Failure(msg[1], msg[2], msg[3])
            elif kind == "done":
                break
    except KeyboardInterrupt:
        proc.terminate()
        proc.join(2)
        bars.close()
        print(f"gouache: interrupted; {len(saved)} of {len(paths)} file(s) were saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bars.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
    result = {"outputs": saved, "parameters": last_params, "seconds": time.perf_counter() - started}
    if a.json:
        print(json.dumps(result, default=str))
    elif not a.quiet:
        for s in saved:
            print(s["path"])
    return EXIT_OK


class _Failure(Exception):
    def __init__(self, kind: str, message: str, tb: str) -> None:
        super().__init__(message)
        self.kind, self.tb = kind, tb


def _run_upscale(a: argparse.Namespace) -> int:
    from ._model import upscale
    from ._output import save_image

    threads: Any = a.threads if a.threads == "auto" else _int_arg("--threads", a.threads)
    image = upscale(a.image, a.model, factor=a.factor, tile_size=a.tile_size, threads=threads)
    path = save_image(image, a.output, overwrite=a.overwrite)
    _emit(a, {"path": str(path), "width": image.width, "height": image.height})
    return EXIT_OK


def _run_convert(a: argparse.Namespace) -> int:
    from ._context import convert_model

    out = convert_model(a.input, a.output, output_type=a.type, vae_path=a.vae,
                        tensor_type_rules=a.tensor_type_rules, overwrite=a.overwrite)
    _emit(a, {"path": str(out), "type": a.type, "bytes": out.stat().st_size})
    return EXIT_OK


def _run_assemble(a: argparse.Namespace) -> int:
    from ._convert_names import assemble_checkpoint

    out = assemble_checkpoint(a.base, a.unet, a.output, overwrite=a.overwrite)
    _emit(a, {"path": str(out), "bytes": out.stat().st_size})
    return EXIT_OK


def _run_info(a: argparse.Namespace) -> int:
    from . import _native, physical_cores, system_info, version

    if a.model:
        from ._families import inspect

        info = inspect(a.model)
        data = {
            "path": str(info.path), "family": info.family.value, "few_step": info.few_step,
            "file_kind": info.file_kind, "tensors": info.tensor_count, "parameters": info.parameters,
            "dtypes": info.dtypes, "size_bytes": info.size_bytes,
            "defaults": {k: v for k, v in vars(info.defaults).items()} if hasattr(info.defaults, "__dict__") else str(info.defaults),
        }
        from pathlib import Path as _P

        from ._engine import ModelFiles, select_engine

        files = ModelFiles(model=_P(a.model))
        data["engine"], data["engine_reason"] = select_engine("auto", info.family.value, files)
    else:
        v = version()
        from ._engines.torch_engine import available, choose_precision

        torch_line = "not installed (pip install \"gouache[torch]\")"
        if available():
            device, dtype, why = choose_precision("auto")
            torch_line = f"{device}, {dtype} ({why})"
        data = {"gouache": __version__, "engines": "sdcpp, torch", "torch_engine": torch_line, "stable_diffusion_cpp": v,
                "library": _native.lib()._gouache_path, "physical_cores": physical_cores(),
                "system_info": " ".join(system_info().split())}
    _emit(a, data)
    return EXIT_OK


def _run_models(a: argparse.Namespace) -> int:
    from ._catalog import find_models

    entries = find_models(a.root)
    if a.json:
        print(json.dumps([{"kind": e.kind, "name": e.name, "path": str(e.path), "size_bytes": e.size_bytes} for e in entries]))
    else:
        for e in entries:
            print(f"{e.kind:<16} {e.name:<50} {e.size_bytes / 2**20:>10.1f} MB")
    return EXIT_OK


def _run_pull(a: argparse.Namespace) -> int:
    from ._catalog import pull

    path = pull(a.name, a.filename, revision=a.revision, cache_dir=a.dir)
    _emit(a, {"path": str(path)})
    return EXIT_OK


def _run_enhance(a: argparse.Namespace) -> int:
    from .enhance import EnhanceConfig, EnhanceService
    from ._output import check_writable, save_image

    preset = {"t4_gpu": EnhanceConfig.for_t4_gpu, "quality": EnhanceConfig.for_quality,
              "speed": EnhanceConfig.for_speed, "cpu": EnhanceConfig.for_cpu}[a.preset]
    overrides = {k: v for k, v in (("steps", a.steps), ("strength", a.strength), ("controlnet_scale", a.controlnet_scale),
                                   ("working_size", a.working_size), ("seed", a.seed)) if v is not None}
    config = preset(model=a.model, controlnet=a.controlnet, loras=tuple(_loras(a.lora)), engine=a.engine,
                    prompt_template=a.template, default_subject=a.subject, depth_model=a.depth_model, **overrides)
    views = [Path(v) for v in a.views]
    missing = [str(v) for v in views if not v.is_file()]
    if missing:
        from ._errors import InvalidInputError

        raise InvalidInputError(f"view files not found: {', '.join(missing)}")
    a.out.mkdir(parents=True, exist_ok=True)
    outputs = [a.out / (v.stem + ".png") for v in views]
    check_writable(outputs, overwrite=a.overwrite)
    depths = [_depth_file(a.depth, v) for v in views] if a.depth else None
    bars = _Progress(not (a.quiet or a.json))
    results: list[dict[str, Any]] = []
    with EnhanceService(config) as service:
        for i, (view, out) in enumerate(zip(views, outputs)):
            bars.update("views", i, len(views))
            try:
                image = service.enhance(view, prompt=a.prompt, depth_map=None if depths is None else depths[i])
                save_image(image, out, overwrite=a.overwrite)
                results.append({"view": str(view), "output": str(out)})
            except Exception as exc:  # noqa: BLE001 - reported per view, the others go on
                results.append({"view": str(view), "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        bars.update("views", len(views), len(views))
    bars.close()
    failed = [r for r in results if "error" in r]
    if a.json:
        print(json.dumps({"views": results, "failed": len(failed)}))
    else:
        for r in results:
            print(r.get("output") or f"{r['view']}: {r['error']}", file=sys.stdout if "output" in r else sys.stderr)
    return EXIT_RUNTIME if failed else EXIT_OK


def _depth_file(folder: str, view: Path) -> Path | None:
    for ext in (".png", ".npy", ".tif", ".tiff"):
        p = Path(folder) / (view.stem + ext)
        if p.is_file():
            return _npy(p) if ext == ".npy" else p
    return None


def _npy(p: Path):
    import numpy as np

    return np.load(p)


def _emit(a: argparse.Namespace, data: dict[str, Any]) -> None:
    if a.json:
        print(json.dumps(data, default=str))
        return
    for k, v in data.items():
        print(f"{k}: {v}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    a = parser.parse_args(argv)  # usage errors exit with 2 here
    if a.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING, format="%(name)s: %(message)s")
    if a.command in ("txt2img", "img2img", "inpaint", "controlnet", "video") and not a.model and not a.diffusion_model:
        parser.error(f"{a.command}: give -m/--model or --diffusion-model")
    from ._errors import GouacheError, InvalidInputError

    try:
        if a.command in ("txt2img", "img2img", "inpaint", "controlnet", "video"):
            return _run_generation(a, argv)
        return {"upscale": _run_upscale, "convert": _run_convert, "assemble": _run_assemble, "info": _run_info,
                "models": _run_models, "pull": _run_pull, "enhance": _run_enhance, "batch": batch_cli.run}[a.command](a)
    except _Failure as exc:
        print(f"gouache: error: {exc}", file=sys.stderr)
        if a.debug:
            print(exc.tb, file=sys.stderr)
        return EXIT_USAGE if exc.kind == "usage" else EXIT_RUNTIME
    except KeyboardInterrupt:
        print("gouache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (GouacheError, OSError) as exc:
        print(f"gouache: error: {type(exc).__name__}: {exc}".splitlines()[0] if not a.debug else f"gouache: error: {exc}", file=sys.stderr)
        if a.debug:
            traceback.print_exc()
        return EXIT_USAGE if isinstance(exc, InvalidInputError) else EXIT_RUNTIME
