"""Binding overhead: the same generation through gouache and through the peer binding.

    python benchmarks/engine.py [--size 128] [--steps 2] [--repeats 2] [--rounds 4] [--model PATH]

Both run the same libstable-diffusion.so on the same model (default: the forged
random-weight SD1.x, real architecture), seed, sampler, size and steps.  Each engine
runs in its own subprocesses (the engine's callbacks are process-global, and the peer
installs its own), alternating, and the best generation time of each is kept.
Target: gouache / peer <= 1.02.  Also times the copy of a 1024x1024 engine result into
Python (target < 5 ms).  The peer `stable_diffusion_cpp` is imported here only; the
library never imports it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time


def rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(pil_image) -> str:
    import hashlib

    return hashlib.sha256(pil_image.convert("RGB").tobytes()).hexdigest()  # the peer returns RGBA


def worker_gouache(a) -> dict:
    import gouache as g

    t0 = time.perf_counter()
    ctx = g.SDContext(g.SDContextParams(model_path=a.model, n_threads=a.threads, vae_decode_only=False))
    load = time.perf_counter() - t0
    params = g.SDImageGenParams(
        prompt=a.prompt,
        width=a.size,
        height=a.size,
        seed=42,
        sample_params=g.SDSampleParams(
            sample_method="euler", scheduler="discrete", sample_steps=a.steps, txt_cfg=7.0, eta=0.0
        ),
    )
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        img = ctx.generate_image(params)[0].to_pil()
        times.append(time.perf_counter() - t0)
    ctx.close()
    return {"load": load, "gen": times, "checksum": _digest(img), "rss": rss_peak_mb()}


def worker_peer(a) -> dict:
    from stable_diffusion_cpp import StableDiffusion

    t0 = time.perf_counter()
    sd = StableDiffusion(model_path=a.model, n_threads=a.threads, vae_decode_only=False, verbose=False)
    load = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        img = sd.generate_image(
            prompt=a.prompt,
            width=a.size,
            height=a.size,
            seed=42,
            sample_method="euler",
            scheduler="discrete",
            sample_steps=a.steps,
            cfg_scale=7.0,
            eta=0.0,
        )[0]
        times.append(time.perf_counter() - t0)
    return {"load": load, "gen": times, "checksum": _digest(img), "rss": rss_peak_mb()}


def conversion_ms() -> dict:
    """Copy a 1024x1024 RGB buffer the way the engine hands results over (and to PIL)."""
    import numpy as np

    from gouache._sdcpp import native as _native
    from gouache._sdcpp.image import copy_from_c

    n = 1024 * 1024 * 3
    buf = (ctypes.c_uint8 * n).from_buffer_copy(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
    c = _native.sd_image_t(1024, 1024, 3, ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)))
    copy, to_pil = [], []
    for _ in range(50):
        t0 = time.perf_counter()
        img = copy_from_c(c)
        t1 = time.perf_counter()
        img.to_pil()
        t2 = time.perf_counter()
        copy.append(t1 - t0)
        to_pil.append(t2 - t1)
    import gouache as g
    from gouache._sdcpp.dispatch import dispatcher

    params = g.SDImageGenParams(
        prompt="a lighthouse", loras=[("x.safetensors", 1.0)], sample_params=g.SDSampleParams(sample_method="euler")
    )
    lower = []
    for _ in range(200):
        t0 = time.perf_counter()
        params._lower()
        with dispatcher().session("sample"):
            pass
        lower.append(time.perf_counter() - t0)
    return {"copy_ms": min(copy) * 1e3, "to_pil_ms": min(to_pil) * 1e3, "lower_ms": min(lower) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model file (default: forged random-weight SD1.x)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="generations per worker process")
    ap.add_argument("--rounds", type=int, default=4, help="worker processes per binding, alternating")
    ap.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    ap.add_argument("--prompt", default="a lighthouse on a cliff at dusk")
    ap.add_argument("--worker", choices=["gouache", "peer"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps((worker_gouache if a.worker == "gouache" else worker_peer)(a)))
        return 0
    if a.model is None:
        from gouache.testing import forge

        a.model = str(forge.sd1())
    if a.threads == 0:
        import gouache

        a.threads = gouache.physical_cores()
    results: dict[str, dict] = {}
    order = []
    for r in range(a.rounds):  # ABBA order: a linear drift in machine speed hits both bindings equally
        order += ["peer", "gouache"] if r % 2 == 0 else ["gouache", "peer"]
    for name in order:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--model",
            a.model,
            "--size",
            str(a.size),
            "--steps",
            str(a.steps),
            "--repeats",
            str(a.repeats),
            "--threads",
            str(a.threads),
            "--prompt",
            a.prompt,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if name in results:
            results[name]["gen"] += r["gen"]
            results[name]["load"] = min(results[name]["load"], r["load"])
            results[name]["rss"] = max(results[name]["rss"], r["rss"])
        else:
            results[name] = r
    conv = conversion_ms()
    print(
        f"model {a.model}\nsize {a.size}x{a.size}, {a.steps} steps euler/discrete, cfg 7, seed 42,"
        f" {a.threads} threads, best of {a.rounds}x{a.repeats}\n"
    )
    print(f"{'binding':<10} {'load s':>8} {'generate s (best)':>18} {'all runs s':>36} {'peak RSS MB':>12}")
    for name in ("peer", "gouache"):
        r = results[name]
        runs = " ".join(f"{t:.2f}" for t in r["gen"])
        print(f"{name:<10} {r['load']:>8.2f} {min(r['gen']):>18.2f} {runs:>36} {r['rss']:>12.0f}")
    ratio = min(results["gouache"]["gen"]) / min(results["peer"]["gen"])
    same = results["gouache"]["checksum"] == results["peer"]["checksum"]
    print(f"\nratio gouache/peer (generate): {ratio:.3f}  (target <= 1.02)  {'OK' if ratio <= 1.02 else 'MISSED'}")
    print(f"identical output pixels: {same}")
    print(
        f"1024x1024 result copy into Python: {conv['copy_ms']:.2f} ms (target < 5 ms),"
        f" to PIL: {conv['to_pil_ms']:.2f} ms"
    )
    print(f"per-call binding work (lower params to C structs + engine lock): {conv['lower_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
