"""The command line's arguments: one ``argparse`` parser with a subcommand per job."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._engines.registry import ENGINES, engine_class
from .._engines.requests import PRECISIONS
from .._version import __version__
from .._vocabulary import SAMPLERS, SCHEDULERS, names
from ..batch._cli import add_parser as add_batch_parser
from ..server._cli import add_parser as add_serve_parser

#: Subcommands that run the engine in a child process.
GENERATION_COMMANDS = ("txt2img", "img2img", "inpaint", "controlnet", "edit", "video")
ENGINE_CHOICES = ["auto", *sorted(ENGINES)]


def _names_help(what: str, all_names: list[str], torch_names: list[str]) -> str:
    """Help text listing the vocabulary and the torch engine's subset of it."""
    return f"{what}: {', '.join(all_names)} (torch engine: {', '.join(torch_names)})"


def _add_model_options(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    g = p.add_argument_group("model files")
    if model_required:
        g.add_argument(
            "-m",
            "--model",
            metavar="PATH",
            help="checkpoint file (.safetensors, .gguf, .ckpt), diffusers folder, or catalog name"
            " (default: $GOUACHE_MODEL, else the first checkpoint in $GOUACHE_MODEL_DIRS, else the"
            " default few-step model, fetched once)",
        )
        g.add_argument(
            "--forge",
            action="store_true",
            help="use a small random-weight model (no download, answers in seconds; the image is noise)",
        )
    g.add_argument("--diffusion-model", metavar="PATH", help="diffusion model alone (Flux, SD3, Wan ship as parts)")
    g.add_argument("--high-noise-diffusion-model", metavar="PATH", help="Wan 2.2 high-noise expert")
    g.add_argument("--vae", metavar="PATH", help="VAE file")
    g.add_argument("--taesd", metavar="PATH", help="tiny autoencoder (fast decode)")
    g.add_argument("--clip-l", metavar="PATH", help="CLIP-L text encoder")
    g.add_argument("--clip-g", metavar="PATH", help="CLIP-G text encoder")
    g.add_argument("--t5xxl", metavar="PATH", help="T5-XXL / UMT5 text encoder")
    g.add_argument(
        "--llm",
        metavar="PATH",
        help="LLM text encoder: Qwen3 4B (Z-Image, FLUX.2 klein), Qwen2.5-VL 7B (Qwen-Image),"
        " Mistral Small 3.2 (FLUX.2 dev)",
    )
    g.add_argument("--llm-vision", metavar="PATH", help="Qwen2.5-VL vision tower (mmproj) for Qwen-Image-Edit")
    g.add_argument("--control-net", metavar="PATH", help="ControlNet file")
    g.add_argument("--photo-maker", metavar="PATH", help="PhotoMaker file")
    g.add_argument("--lora-dir", metavar="DIR", help="where <lora:name:weight> tags and --lora names resolve")
    g.add_argument("--embeddings", metavar="DIR", help="directory of textual-inversion embeddings")
    e = p.add_argument_group("engine")
    e.add_argument(
        "--engine",
        default="auto",
        choices=ENGINE_CHOICES,
        help="auto (default): torch when installed and the model family is supported, else sdcpp",
    )
    e.add_argument(
        "--precision",
        default="auto",
        choices=list(PRECISIONS),
        help="torch engine: weight precision (auto: bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA)",
    )
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
        g.add_argument("prompt", nargs="?", help="prompt text; <lora:name:weight> tags are honoured")
        g.add_argument("-p", "--prompt", dest="prompt_option", metavar="TEXT", help="the prompt (sd-cli spelling)")
    g.add_argument("-n", "--negative-prompt", default="", help="negative prompt")
    g.add_argument("-W", "--width", type=int, help="width in pixels (default: the model family's)")
    g.add_argument("-H", "--height", type=int, help="height in pixels (default: the model family's)")
    g.add_argument("--steps", type=int, help="sampling steps (default: the model family's)")
    g.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale")
    torch = engine_class("torch")
    g.add_argument("--sampler", help=_names_help("sampler", names(SAMPLERS), torch.samplers()))
    g.add_argument("--scheduler", help=_names_help("scheduler", names(SCHEDULERS), torch.schedulers()))
    g.add_argument("--seed", type=int, default=-1, help="seed (-1 = random; batch images use seed, seed+1, ...)")
    g.add_argument("--batch", type=int, default=1, help="number of images")
    g.add_argument("--clip-skip", type=int, default=-1, help="CLIP layers to skip (-1 = model default)")
    g.add_argument(
        "--lora", action="append", default=[], metavar="PATH_OR_NAME[:WEIGHT]", help="apply a LoRA (repeatable)"
    )
    g.add_argument("--ref-image", action="append", default=[], metavar="PATH", help="reference image (repeatable)")
    g.add_argument("--guidance", type=float, help="distilled guidance (Flux-dev style models)")
    g.add_argument("--image-cfg-scale", type=float, help="image CFG (instruct/inpaint models)")
    g.add_argument("--eta", type=float, help="eta for ancestral/DDIM-style samplers")
    g.add_argument("--hires-scale", type=float, help="hires fix: upscale factor (enables hires fix)")
    g.add_argument("--hires-upscaler", default="latent", help="hires upscaler: latent, lanczos, nearest, model, ...")
    g.add_argument("--hires-model", metavar="PATH", help="ESRGAN file for --hires-upscaler model")
    g.add_argument("--hires-steps", type=int, default=0, help="hires steps (0 = same as --steps)")
    g.add_argument("--hires-strength", type=float, default=0.7, help="hires denoising strength")
    g.add_argument(
        "--cache", metavar="MODE", help="step cache: easycache, ucache, dbcache, taylorseer, cache_dit, spectrum"
    )
    g.add_argument("--cache-threshold", type=float, help="step cache reuse threshold")
    o = p.add_argument_group("output")
    o.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="output file (.png/.jpg/.webp); batches are numbered out-1.png ...",
    )
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gouache", description="Local diffusion: generate, edit, upscale and animate images."
    )
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

    s = sub.add_parser(
        "edit",
        parents=[common],
        help="edit images by instruction (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2, InstructPix2Pix)",
    )
    _add_model_options(s)
    s.add_argument(
        "--image",
        "-i",
        action="append",
        required=True,
        metavar="PATH",
        help="image to edit (repeatable: models such as Qwen-Image-Edit 2509 combine several)",
    )
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
    s.add_argument("--frames", type=int, help="frames (Wan makes 4k+1; other counts are trimmed from the next 4k+1)")
    s.add_argument("--fps", type=int, default=16, help="frames per second of the written file")
    s.add_argument("--init-image", "-i", metavar="PATH", help="first frame (image-to-video)")
    s.add_argument("--end-image", metavar="PATH", help="last frame")
    s.add_argument(
        "--control-frame", action="append", default=[], metavar="PATH", help="VACE control frame (repeatable)"
    )
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
    s.add_argument(
        "-m",
        "--model",
        metavar="PATH|NAME",
        help="checkpoint (default: sdxl-lightning-4step, or $GOUACHE_ENHANCE_MODEL)",
    )
    s.add_argument(
        "--controlnet", metavar="PATH|NAME", help="depth ControlNet (default: the catalog's for the model's family)"
    )
    s.add_argument("--no-controlnet", action="store_true", help="enhance without depth guidance")
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N (torch engine)")
    s.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]", help="e.g. the SDXL-Lightning LoRA")
    s.add_argument("--depth", metavar="DIR", help="folder of depth maps named like the views (.png/.npy/.exr-free)")
    s.add_argument(
        "--depth-model",
        metavar="PATH|NAME",
        help="ONNX depth model for views without a depth map (default: MiDaS_small)",
    )
    s.add_argument("--prompt", help="prompt for every view (default: from --template and --subject)")
    s.add_argument(
        "--template",
        default="default",
        help="prompt template: default, photorealistic, product, character, environment, object, anime_style",
    )
    s.add_argument("--subject", default="an object", help="subject for the template")
    s.add_argument(
        "--preset", default="cpu", choices=["t4_gpu", "quality", "speed", "cpu"], help="EnhanceConfig preset"
    )
    s.add_argument("--steps", type=int, help="denoising steps (overrides the preset)")
    s.add_argument("--strength", type=float, help="img2img strength (overrides the preset)")
    s.add_argument("--controlnet-scale", type=float, help="ControlNet scale (overrides the preset)")
    s.add_argument("--working-size", type=int, help="long side of the working canvas (multiple of 64)")
    s.add_argument("--seed", type=int, help="seed shared by all views")
    s.add_argument("--engine", choices=ENGINE_CHOICES)
    s.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser("convert", parents=[common], help="convert/quantize a model (GGUF or safetensors)")
    s.add_argument("input", help="input model file")
    s.add_argument("output", help="output file (.gguf or .safetensors)")
    s.add_argument("--type", default="f16", help="weight type: f32, f16, bf16, q8_0, q5_0, q4_0, q4_k, ...")
    s.add_argument("--vae", help="VAE to bundle")
    s.add_argument("--tensor-type-rules", help="per-tensor types, e.g. '^vae\\.=f16,model\\.=q8_0'")
    s.add_argument("--overwrite", action="store_true")

    s = sub.add_parser(
        "assemble",
        parents=[common],
        help="one checkpoint from a base checkpoint and a UNet-only file (e.g. SDXL-Lightning)",
    )
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

    add_serve_parser(sub, common)
    add_batch_parser(sub, [common])
    return p
