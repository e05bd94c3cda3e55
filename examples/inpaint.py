"""Inpainting: repaint the white part of a mask, keep the rest.

python examples/inpaint.py MODEL INPUT.png MASK.png "a red door" out.png
python examples/inpaint.py --forge - - "a red door" out.png   # forged model, generated input, right-half mask
"""

import argparse

from PIL import Image

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("image")
ap.add_argument("mask")
ap.add_argument("prompt")
ap.add_argument("output")
ap.add_argument("--size", type=int, default=None)
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--forge", action="store_true")
a = ap.parse_args()
extra = {}
if a.forge:
    from gouache.testing import forge

    a.model, extra = str(forge.sd1_tiny()), {"taesd": forge.taesd()}
size = {} if a.size is None else {"width": a.size, "height": a.size}
with g.SDModel(a.model, **extra) as model:
    image = a.image if a.image != "-" else model.generate("a house", seed=1, steps=a.steps, **size).images[0]
    if a.mask == "-":
        w, h = image.size if isinstance(image, Image.Image) else Image.open(image).size
        mask = Image.new("L", (w, h), 0)
        mask.paste(255, (w // 2, 0, w, h))
    else:
        mask = a.mask
    result = model.generate(a.prompt, init_image=image, mask=mask, strength=1.0, seed=42, steps=a.steps, **size)
    print(result.save(a.output)[0])
