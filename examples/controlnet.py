"""ControlNet with Canny edges: the generated picture follows the edges of a reference.

python examples/controlnet.py MODEL CONTROLNET REFERENCE.png "a robot" out.png
python examples/controlnet.py --forge - - - "a robot" out.png   # forged SD1 + ControlNet, synthetic reference
"""

import argparse

import numpy as np

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("controlnet")
ap.add_argument("reference")
ap.add_argument("prompt")
ap.add_argument("output")
ap.add_argument("--size", type=int, default=None)
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--forge", action="store_true")
a = ap.parse_args()
if a.forge:
    from gouache.testing import forge

    a.model, a.controlnet = str(forge.sd1()), str(forge.controlnet_sd1())
if a.reference == "-":
    arr = np.zeros((a.size or 512, a.size or 512, 3), np.uint8)
    arr[arr.shape[0] // 4 : -arr.shape[0] // 4, arr.shape[1] // 4 : -arr.shape[1] // 4] = 255
    reference = g.SDImage.from_numpy(arr)
else:
    reference = g.SDImage.open(a.reference).with_channels(3)
edges = g.canny(reference).to_pil()  # in place on the SDImage
size = {} if a.size is None else {"width": a.size, "height": a.size}
with g.SDModel(a.model, control_net=a.controlnet) as model:
    result = model.generate(a.prompt, control_image=edges, control_strength=0.9, seed=42, steps=a.steps, **size)
    print(result.save(a.output)[0])
