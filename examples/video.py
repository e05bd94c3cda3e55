"""Text-to-video with a Wan model (ships as parts: diffusion model, VAE, text encoder).

python examples/video.py WAN.gguf VAE.safetensors UMT5.gguf "a wave breaking" wave.mp4 [--frames 33]
python examples/video.py --forge - - - "a wave" wave.gif --size 16 --frames 5 --steps 1
"""

import argparse

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("diffusion_model", nargs="?")
ap.add_argument("vae")
ap.add_argument("text_encoder")
ap.add_argument("prompt")
ap.add_argument("output", help=".mp4 (gouache[video]), .webp or .gif")
ap.add_argument("--frames", type=int, default=None)
ap.add_argument("--size", type=int, default=None)
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--fps", type=int, default=16)
ap.add_argument(
    "--forge", action="store_true", help="forged random-weight Wan 2.1 1.3B (q4_0) + TAEHV, no text encoder"
)
a = ap.parse_args()
parts = {"diffusion_model": a.diffusion_model, "vae": a.vae, "t5xxl": a.text_encoder}
if a.forge:
    from gouache.testing import forge

    parts = {"diffusion_model": forge.wan21_t2v_gguf(), "taesd": forge.taehv()}
size = {} if a.size is None else {"width": a.size, "height": a.size}
with g.SDModel(**parts) as wan:
    video = wan.generate_video(
        a.prompt, frames=a.frames, steps=a.steps, cfg_scale=1.0 if a.forge else None, seed=42, **size
    )
    print(video.save(a.output, fps=a.fps), len(video.frames), "frames")
