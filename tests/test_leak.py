"""Every engine buffer is freed exactly once: RSS stays flat over many generations."""

import pytest

from .conftest import run_isolated

pytestmark = pytest.mark.slow


def test_rss_growth_over_30_generations_under_50mb(tiny_model, taesd_model):
    res = run_isolated(
        f"""
import gc
import gouache as g

import ctypes

libc = ctypes.CDLL(None)

def rss_mb():
    gc.collect()
    if hasattr(libc, "malloc_trim"):  # glibc: hand free heap pages back so RSS counts live memory
        libc.malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

ctx = g.SDContext(g.SDContextParams(model_path={str(tiny_model)!r}, taesd_path={str(taesd_model)!r}))
def params(i):
    return g.SDImageGenParams(prompt=f"prompt {{i}}", width=64, height=64, seed=i, batch_count=2,
                              sample_params=g.SDSampleParams(sample_steps=1, txt_cfg=1.0))
for i in range(5):  # warm-up: graph buffers and allocator pools reach their steady size
    ctx.generate_image(params(i))
gc.collect()
before = rss_mb()
for i in range(30):
    imgs = ctx.generate_image(params(i))
    pil = [im.to_pil() for im in imgs]
gc.collect()
after = rss_mb()
print(before, after)
"""
    )
    assert res.returncode == 0, res.stderr[-3000:]
    before, after = map(float, res.stdout.split())
    assert after - before < 50, f"RSS grew {after - before:.1f} MB over 30 generations ({before:.0f} -> {after:.0f} MB)"
