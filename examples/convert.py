"""Convert / quantize a model to GGUF with the engine's converter, then generate with it.

python examples/convert.py MODEL.safetensors model-q8_0.gguf [--type q8_0]
python examples/convert.py --forge - model-q8_0.gguf
"""

import argparse

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("output")
ap.add_argument("--type", default="q8_0")
ap.add_argument("--forge", action="store_true")
a = ap.parse_args()
if a.forge:
    from gouache.testing import forge

    a.model = str(forge.sd1_tiny())
out = g.convert_model(a.model, a.output, output_type=a.type)
info = g.inspect(out)
print(out, info.family.value, info.dtypes)
