"""Generate an image with gouache's low-level API.

    python examples/txt2img.py MODEL.safetensors "a lighthouse at dusk" out.png [--steps 20 --size 512 --seed 42]
    python examples/txt2img.py --forge "anything" out.png     # random-weight model, no download

The output is written to a temporary file and renamed into place; an existing file
is never overwritten unless --overwrite is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import gouache as g


def save_atomic(image: g.SDImage, path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SystemExit(f"error: {path} exists (use --overwrite)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".png", dir=path.parent or ".")
    os.close(fd)
    try:
        image.to_pil().save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="model file (.safetensors, .gguf, .ckpt)")
    ap.add_argument("prompt")
    ap.add_argument("output", type=Path)
    ap.add_argument("--forge", action="store_true", help="use a forged random-weight tiny SD1 model")
    ap.add_argument("--negative", default="")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--sampler", default=None, help="e.g. euler_a, dpm++2m (default: the model's)")
    ap.add_argument("--scheduler", default=None, help="e.g. karras, discrete (default: the model's)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="show the engine's log")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if a.forge:
        from gouache.testing import forge

        a.model = str(forge.sd1_tiny())
    if not a.model:
        ap.error("give a MODEL file or --forge")

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
    save_atomic(image, a.output, a.overwrite)
    print(a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
