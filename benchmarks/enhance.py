"""Enhancing views: multi-view depth alignment, and one service load vs reload per view.

    python benchmarks/enhance.py --part align [--align-views 16] [--align-size 512]
    python benchmarks/enhance.py --part service [--views 16] [--view-size 256] [--working-size 1024] [--steps 1]
                                 [--engines sdcpp,torch] [--model PATH --controlnet PATH]

Alignment (``--part align``): a ray-cast scene (gouache.testing.scenes) seen by 16 cameras on a
circle (22.5 degrees apart, as SyncDreamer's 16 views), each view's depth turned into what
a monocular estimator returns (inverse depth blurred, 1 % noise, a random scale and shift,
two wrong patches, normalized to [0, 1]); every method aligns the 16 maps.  Printed: the
mean relative residual against the true inverse depth after ONE affine map shared by all
views ("consistency"), without it ("metric": the maps' own units against the poses'),
and the time.  Peers, measured in the same run: Glimpse3D's align_depth_scales (median
depth ratio on a central overlap, each view chained to the previous, as its source does),
a plain least-squares fit of each view to the first at equal pixels, and gouache without
poses; "oracle" fits each view to the truth (the floor the noise leaves).

Service (``--part service``):
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

# -- alignment ----------------------------------------------------------------------------------


def align_scene(n: int, size: int, seed: int = 0):
    import numpy as np

    from gouache.testing import scenes

    rng = np.random.default_rng(seed)
    scene = scenes.spheres_in_room()
    K = scenes.intrinsics(size, size, fov_deg=50)
    poses = scenes.orbit(n, step_deg=360.0 / n, radius=5.0, height=2.5, wobble=0.03)
    truth, maps, keep = [], [], []
    for p in poses:
        inv = 1.0 / scene.render(p, K, size, size).depth
        est = scenes.estimate_like(1.0 / inv, rng, noise=0.01, blur=2, bad_patches=2)
        truth.append(inv)
        maps.append(est.map)
        keep.append(~est.corrupted)
    return poses, K, truth, maps, keep


def residuals(aligned, truth, keep):
    """(after one shared affine map, raw) mean relative residual against the truth."""
    import numpy as np

    a = np.concatenate([x[k] for x, k in zip(aligned, keep)]).astype(np.float64)
    t = np.concatenate([x[k] for x, k in zip(truth, keep)])
    coef, *_ = np.linalg.lstsq(np.stack([a / t, 1.0 / t], 1), np.ones_like(t), rcond=None)
    return float(np.mean(np.abs(coef[0] * a + coef[1] - t) / t)), float(np.mean(np.abs(a - t) / t))


def glimpse3d_align(maps):
    """Glimpse3D's align_depth_scales (midas_depth/depth_alignment.py), re-implemented from
    its description: a central disc minus extreme values as the overlap, the median ratio
    to the previous aligned view as the scale, clamped to [0.1, 10], renormalized to max 1."""
    import numpy as np

    from gouache.enhance.depth import estimate_overlap_simple

    out = [maps[0].astype(np.float64)]
    for m in maps[1:]:
        ref = out[-1]
        _, overlap = estimate_overlap_simple(ref, m)
        r, c = ref[overlap], m[overlap]
        ok = (r > 1e-6) & (c > 1e-6)
        scale = float(np.median(r[ok] / c[ok])) if ok.sum() >= 100 else float(np.median(ref) / (np.median(m) + 1e-8))
        x = m * float(np.clip(scale, 0.1, 10.0))
        out.append(x / x.max() if x.max() > 1.0 else x)
    return out


def plain_least_squares(maps):
    import numpy as np

    return [maps[0]] + [np.polyval(np.polyfit(m.ravel(), maps[0].ravel(), 1), m) for m in maps[1:]]


def oracle(maps, truth, keep):
    import numpy as np

    return [np.polyval(np.polyfit(m[k], t[k], 1, w=1.0 / t[k]), m) for m, t, k in zip(maps, truth, keep)]


def run_align(a) -> None:
    import logging

    from gouache.enhance.depth import fit_depth_alignment

    logging.getLogger("gouache.enhance").setLevel(logging.ERROR)
    poses, K, truth, maps, keep = align_scene(a.align_views, a.align_size)
    methods = [
        ("gouache, poses", lambda: fit_depth_alignment(maps, poses, K)),
        ("gouache, no poses", lambda: fit_depth_alignment(maps)),
        ("Glimpse3D median ratio", lambda: glimpse3d_align(maps)),
        ("least squares, equal pixels", lambda: plain_least_squares(maps)),
        ("oracle (per view vs truth)", lambda: oracle(maps, truth, keep)),
    ]
    rows = {}
    for name, fn in methods:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        aligned = out.aligned if hasattr(out, "aligned") else out
        rows[name] = (*residuals(aligned, truth, keep), seconds, getattr(out, "gauge", ""))
    print(
        f"{a.align_views} views {a.align_size}x{a.align_size} with poses (orbit, {360 / a.align_views:.1f} deg apart);"
        " estimates: blur 2 px, 1 % noise, random scale and shift, 2 wrong patches, normalized\n"
    )
    print(f"{'method':<30} {'consistency':>12} {'metric':>9} {'time s':>8}  gauge")
    for name, (cons, raw, seconds, gauge) in rows.items():
        print(f"{name:<30} {100 * cons:>11.2f}% {100 * raw:>8.1f}% {seconds:>8.2f}  {gauge}")
    ours = rows["gouache, poses"]
    print()
    for peer in ("Glimpse3D median ratio", "least squares, equal pixels", "gouache, no poses"):
        print(f"{peer} / gouache with poses: consistency residual {rows[peer][0] / ours[0]:.1f}x")
    print(f"gouache with poses / oracle: {ours[0] / rows['oracle (per view vs truth)'][0]:.2f}x")


# -- service ------------------------------------------------------------------------------------


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
        lightning_steps=a.steps,
        memory_preset="t4_speed",
        depth_model=None,
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
    ap.add_argument("--part", choices=["align", "service", "all"], default="all")
    ap.add_argument("--align-views", type=int, default=16)
    ap.add_argument("--align-size", type=int, default=512)
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
    if a.part in ("align", "all"):
        run_align(a)
        if a.part == "align":
            return 0
        print()
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
        per_view = r["total"] / a.views
        print(f"{engine:<7} {pattern:<16} {r['total']:>9.1f} {per_view:>8.2f} {r['load']:>8.1f} {r['rss_mb']:>12.0f}")
    print()
    for engine in a.engines.split(","):
        if (engine, "one-load") in by and (engine, "reload-per-view") in by:
            ratio = by[(engine, "reload-per-view")]["total"] / by[(engine, "one-load")]["total"]
            print(f"{engine}: reload-per-view / one-load = {ratio:.2f}x")
    if ("sdcpp", "one-load") in by and ("torch", "one-load") in by:
        ratio = by[("sdcpp", "one-load")]["total"] / by[("torch", "one-load")]["total"]
        print(f"sdcpp / torch (one-load, s/view): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
