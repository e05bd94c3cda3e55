"""The examples run on forged models, so they never rot."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_txt2img_example_writes_png_and_refuses_overwrite(tmp_path):
    out = tmp_path / "out.png"
    cmd = [sys.executable, str(ROOT / "examples" / "txt2img.py"), "--forge", "a cube", str(out),
           "--size", "64", "--steps", "2", "--cfg", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (64, 64)
    before = out.read_bytes()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and "exists" in res.stderr
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary files left
