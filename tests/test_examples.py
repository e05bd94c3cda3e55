"""The examples run on forged models, so they never rot."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_txt2img_example_writes_png_and_refuses_overwrite(tmp_path):
    out = tmp_path / "out.png"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "txt2img.py"),
        "--forge",
        "a cube",
        str(out),
        "--size",
        "64",
        "--steps",
        "2",
        "--cfg",
        "1",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (64, 64)
    from gouache import read_parameters

    assert read_parameters(out)["prompt"] == "a cube"  # written through gouache.save_image, with metadata
    assert out.stat().st_mode & 0o044  # normal permissions (readable by others under the usual umask)
    before = out.read_bytes()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and "exists" in res.stderr
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary files left


SMALL = ["--size", "64", "--steps", "2"]
CASES = {
    "img2img.py": ["--forge", "-", "an oil painting", "{out}/i2i.png", *SMALL],
    "inpaint.py": ["--forge", "-", "-", "a red door", "{out}/inp.png", *SMALL],
    "controlnet.py": ["--forge", "-", "-", "a robot", "{out}/cn.png", "--size", "64", "--steps", "1"],
    "lora.py": ["--forge", "-", "a castle <lora:style:0.8>", "{out}/lora.png", *SMALL],
    "upscale.py": ["--forge", "-", "{out}/big.png"],
    "convert.py": ["--forge", "{out}/tiny-q8_0.gguf"],
    "video.py": ["--forge", "-", "-", "-", "a wave", "{out}/wave.gif", "--size", "16", "--frames", "5", "--steps", "1"],
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs_on_forged_models(script, tmp_path):
    args = [a.replace("{out}", str(tmp_path)) for a in CASES[script]]
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    outputs = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert outputs and all(p.stat().st_size > 0 for p in outputs)
