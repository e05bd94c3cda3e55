"""Upscale with an ESRGAN model (4x for RealESRGAN x4).

python examples/upscale.py ESRGAN.pth INPUT.png out.png
python examples/upscale.py --forge - - out.png     # forged ESRGAN x4 on a synthetic picture
"""

import argparse

import numpy as np

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("image")
ap.add_argument("output")
ap.add_argument("--forge", action="store_true")
a = ap.parse_args()
if a.forge:
    from gouache.testing import forge

    a.model = str(forge.esrgan_x4())
image = a.image if a.image != "-" else np.random.default_rng(0).random((32, 48, 3))
big = g.upscale(image, a.model)
big.save(a.output)
print(a.output, big.size)
