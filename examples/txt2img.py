"""Generate an image with gouache's low-level API.

    python examples/txt2img.py MODEL.safetensors "a lighthouse at dusk" out.png [--steps 20 --size 512 --seed 42]
    python examples/txt2img.py --forge "anything" out.png     # random-weight model, no download, seconds

--forge uses a small random-weight model (SDXS architecture with its TAESD, 256x256, one
step): it answers in seconds, and the image is noise, not the prompt.  The output is
written with gouache.save_image (the one atomic writer: temporary file renamed into place,
normal permissions, A1111 parameters inside); an existing file is never overwritten unless
--overwrite is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import gouache as g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="model file (.safetensors, .gguf, .ckpt)")
    ap.add_argument("prompt")
    ap.add_argument("output", type=Path)
    ap.add_argument("--forge", action="store_true", help="use a small random-weight model (the image is noise)")
    ap.add_argument("--negative", default="")
    ap.add_argument("--size", type=int, help="width and height (default 512; 256 with --forge)")
    ap.add_argument("--steps", type=int, help="sampling steps (default 20; 1 with --forge)")
    ap.add_argument("--cfg", type=float, help="CFG scale (default 7; 1 with --forge)")
    ap.add_argument("--sampler", default=None, help="e.g. euler_a, dpm++2m (default: the model's)")
    ap.add_argument("--scheduler", default=None, help="e.g. karras, discrete (default: the model's)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="show the engine's log")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(name)s: %(message)s")
    small = {"size": 256, "steps": 1, "cfg": 1.0} if a.forge else {"size": 512, "steps": 20, "cfg": 7.0}
    for key, value in small.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.forge:
        from gouache.testing import forge

        a.model = str(forge.sdxs())
        print("--forge: a random-weight model, so the image is noise, not the prompt", file=sys.stderr)
    if not a.model:
        ap.error("give a MODEL file or --forge")
    if a.output.exists() and not a.overwrite:  # refuse before the work, not after it
        raise SystemExit(f"error: {a.output} exists (use --overwrite)")

    def progress(p: g.Progress) -> None:
        if p.phase == "sample" and p.total:
            print(f"\rstep {p.step}/{p.total} ({p.time:.2f} s/step)", end="", file=sys.stderr, flush=True)

    with g.SDContext(g.SDContextParams(model_path=a.model)) as ctx:
        params = g.SDImageGenParams(
            prompt=a.prompt,
            negative_prompt=a.negative,
            width=a.size,
            height=a.size,
            seed=a.seed,
            sample_params=g.SDSampleParams(
                sample_steps=a.steps, txt_cfg=a.cfg, sample_method=a.sampler, scheduler=a.scheduler
            ),
        )
        image = ctx.generate_image(params, progress=progress)[0]
    print(file=sys.stderr)
    infotext = g.format_infotext(
        a.prompt,
        a.negative,
        {"Steps": a.steps, "CFG scale": a.cfg, "Seed": a.seed, "Size": (a.size, a.size), "Model": Path(a.model).stem},
    )
    try:
        g.save_image(image.to_pil(), a.output, infotext=infotext, overwrite=a.overwrite)
    except g.InvalidInputError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
