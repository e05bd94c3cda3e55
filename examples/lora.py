"""LoRA: by path, by name from a LoRA folder, or as an A1111 <lora:name:weight> prompt tag.

python examples/lora.py MODEL LORA_DIR "a castle <lora:my_style:0.8>" out.png
python examples/lora.py --forge - "a castle <lora:style:0.8>" out.png
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import gouache as g

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?")
ap.add_argument("lora_dir")
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
    a.lora_dir = tempfile.mkdtemp()
    shutil.copy(forge.lora_sd1_tiny(), Path(a.lora_dir) / "style.safetensors")
size = {} if a.size is None else {"width": a.size, "height": a.size}
with g.SDModel(a.model, lora_dir=a.lora_dir, **extra) as model:
    result = model.generate(a.prompt, seed=42, steps=a.steps, **size)
    print(result.save(a.output)[0], result.parameters["loras"])
