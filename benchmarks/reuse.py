"""Reuse vs reload: N images through one SDModel vs N one-call text_to_image() (reload each time).

    python benchmarks/reuse.py [--n 8] [--size 128] [--steps 2] [--model PATH]

Default model: the forged random-weight SD1.x (real architecture, 2.1 GB f16), so the
load cost is that of a real SD1.5 checkpoint read from the page cache.
"""

from __future__ import annotations

import argparse
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--cfg", type=float, default=7.0)
    a = ap.parse_args()
    import gouache as g

    if a.model is None:
        from gouache.testing import forge

        a.model = str(forge.sd1())
    kw = dict(width=a.size, height=a.size, steps=a.steps, cfg_scale=a.cfg, sampler="euler", scheduler="discrete")

    t0 = time.perf_counter()
    with g.SDModel(a.model) as m:
        load = time.perf_counter() - t0
        for i in range(a.n):
            m.generate("a lighthouse at dusk", seed=i, **kw)
    reuse = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(a.n):
        g.text_to_image(a.model, "a lighthouse at dusk", seed=i, **kw)
    reload = time.perf_counter() - t0

    print(f"model {a.model}\n{a.n} images {a.size}x{a.size}, {a.steps} steps, cfg {a.cfg}\n")
    print(f"{'pattern':<32} {'total s':>9} {'s/image':>9}")
    print(f"{'one SDModel, N generate()':<32} {reuse:>9.2f} {reuse / a.n:>9.2f}   (load {load:.2f} s once)")
    print(f"{'N text_to_image() (reload)':<32} {reload:>9.2f} {reload / a.n:>9.2f}")
    print(f"\nratio reload/reuse: {reload / reuse:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
