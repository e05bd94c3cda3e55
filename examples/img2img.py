"""Image-to-image: re-imagine a picture, keeping its composition.

python examples/img2img.py MODEL INPUT.png "an oil painting" out.png [--strength 0.6]
python examples/img2img.py --forge - "an oil painting" out.png   # forged model, generated input
"""

import argparse

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("image", help="input image, or - to generate one first")
ap.add_argument("prompt")
ap.add_argument("output")
ap.add_argument("--strength", type=float, default=0.6)
ap.add_argument("--size", type=int, default=None)
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--forge", action="store_true", help="use forged random-weight models (no download)")
a = ap.parse_args()
extra = {}
if a.forge:
    from gouache.testing import forge

    a.model, extra = str(forge.sd1_tiny()), {"taesd": forge.taesd()}
size = {} if a.size is None else {"width": a.size, "height": a.size}
with g.SDModel(a.model, **extra) as model:
    image = a.image if a.image != "-" else model.generate("a house by a lake", seed=1, steps=a.steps, **size).images[0]
    result = model.generate(a.prompt, init_image=image, strength=a.strength, seed=42, steps=a.steps, **size)
    print(result.save(a.output)[0], result.seeds)
