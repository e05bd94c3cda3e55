"""Enhancing views: one service load vs reload per view (the common pattern), per engine.

    python benchmarks/enhance.py [--views 16] [--view-size 256] [--working-size 1024] [--steps 1]
                                 [--engines sdcpp,torch] [--model PATH --controlnet PATH]

Default model: the forged random-weight SD1.x + SD1 ControlNet (real architectures).
``--sdxl``: the production setup instead: forged SDXL base with a forged SDXL-Lightning-style
UNet (diffusers layout) assembled into one file by ``gouache.assemble_checkpoint``, and the
SDXL depth ControlNet in diffusers layout (torch engine only: SDXL + ControlNet aborts sdcpp).
Each (engine, pattern) runs in its own process; peak RSS is that process's maximum.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def views(n: int, size: int):
    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        rgba[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4, 3] = 255
        depth = np.tile(np.linspace(0, 1, size, dtype=np.float32), (size, 1))
        out.append((Image.fromarray(rgba), depth))
    return out


def worker(a) -> dict:
    from gouache.enhance import EnhanceConfig, EnhanceService

    cfg = EnhanceConfig.for_cpu(
        model=a.model,
        controlnet=a.controlnet,
        engine=a.engine,
        working_size=a.working_size,
        steps=a.steps,
        memory_preset="t4_speed",
    )
    data = views(a.views, a.view_size)
    per_view = []
    t0 = time.perf_counter()
    if a.pattern == "one-load":
        with EnhanceService(cfg) as s:
            load = s.pipeline.load_seconds
            for img, depth in data:
                t = time.perf_counter()
                s.enhance(img, depth_map=depth)
                per_view.append(time.perf_counter() - t)
    else:
        load = 0.0
        for img, depth in data:
            t = time.perf_counter()
            with EnhanceService(cfg) as s:
                load += s.pipeline.load_seconds
                s.enhance(img, depth_map=depth)
            per_view.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "total": total,
        "per_view": per_view,
        "load": load,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--view-size", type=int, default=256)
    ap.add_argument("--working-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--engines", default="sdcpp,torch")
    ap.add_argument("--model")
    ap.add_argument("--controlnet")
    ap.add_argument("--sdxl", action="store_true", help="forged SDXL-Lightning (assembled) + SDXL depth ControlNet")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--pattern", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    if a.sdxl:
        import gouache as g
        from gouache.testing import forge

        base, unet = forge.sdxl(), forge.sdxl_unet_diffusers()
        target = forge.cache_dir() / f"assembled-{base.stem}-{unet.stem}.safetensors"
        if not target.exists():
            g.assemble_checkpoint(base, unet, target)
        a.model, a.controlnet = str(target), str(forge.controlnet_sdxl_diffusers())
    elif a.model is None:
        from gouache.testing import forge

        a.model, a.controlnet = str(forge.sd1()), str(forge.controlnet_sd1())
    rows = []
    for engine in a.engines.split(","):
        for pattern in ("one-load", "reload-per-view"):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "1",
                "--engine",
                engine,
                "--pattern",
                pattern,
                "--views",
                str(a.views),
                "--view-size",
                str(a.view_size),
                "--working-size",
                str(a.working_size),
                "--steps",
                str(a.steps),
                "--model",
                a.model,
                "--controlnet",
                a.controlnet,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{engine} {pattern} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append((engine, pattern, json.loads(out.stdout.strip().splitlines()[-1])))
    print(
        f"{a.views} views {a.view_size}x{a.view_size} -> working {a.working_size}, {a.steps} denoising step(s),"
        f" model {a.model}\n"
    )
    print(f"{'engine':<7} {'pattern':<16} {'total s':>9} {'s/view':>8} {'load s':>8} {'peak RSS MB':>12}")
    by = {}
    for engine, pattern, r in rows:
        by[(engine, pattern)] = r
        print(
            f"{engine:<7} {pattern:<16} {r['total']:>9.1f} {r['total'] / a.views:>8.2f} {r['load']:>8.1f}"
            f" {r['rss_mb']:>12.0f}"
        )
    print()
    for engine in a.engines.split(","):
        if (engine, "one-load") in by and (engine, "reload-per-view") in by:
            ratio = by[(engine, "reload-per-view")]["total"] / by[(engine, "one-load")]["total"]
            print(f"{engine}: reload-per-view / one-load = {ratio:.2f}x")
    if ("sdcpp", "one-load") in by and ("torch", "one-load") in by:
        print(
            "sdcpp / torch (one-load, s/view):"
            f" {by[('sdcpp', 'one-load')]['total'] / by[('torch', 'one-load')]['total']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
