"""Batch throughput: the in-process loop vs Ray Data with 1 and 2 actors, the same job.

    python benchmarks/batch.py [--items 10] [--size 128] [--steps 4] [--model PATH] [--engine sdcpp]

Each mode runs the same generation job into a fresh folder (same seeds, so the same
files).  "steady s/item" is the time between the first and the last result divided by
the items in between: it leaves out start-up (``ray.init``, actor start, model load),
which "start s" (time to the first result minus one steady item) reports.  The loop and
the 1-actor run use both cores (2 threads); the 2-actor run gives each actor 1 CPU and
1 thread.  Ray overhead per item = steady(1 actor) / steady(loop) - 1.
Default model: the forged tiny SD1 (real architecture, random weights) + TAESD.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


def run_mode(name, job_for, ray_options, folder: Path) -> dict:
    import gouache.batch as gb

    stamps: list[float] = []
    t0 = time.perf_counter()
    summary = gb.run_batch(job_for(folder / name), ray=ray_options,
                           progress=lambda r, n, total: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    if summary.failed or summary.done != len(stamps):
        raise SystemExit(f"{name}: {summary.failed} failed: {summary.failures[:1]}")
    n = len(stamps)
    steady = (stamps[-1] - stamps[0]) / (n - 1) if n > 1 else float("nan")
    return {"mode": name, "wall": wall, "steady": steady, "start": stamps[0] - t0 - steady, "items": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--taesd")
    ap.add_argument("--engine", default="sdcpp")
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--keep", help="write the outputs here instead of a temporary folder")
    a = ap.parse_args()
    import ray

    import gouache.batch as gb

    if a.model is None:
        from gouache.testing import forge

        a.model, a.taesd = str(forge.sd1_tiny()), str(a.taesd or forge.taesd())
    items = [gb.GenerateItem(id=f"{i:03d}", prompt=f"a lighthouse at dusk, variation {i}", width=a.size,
                             height=a.size, steps=a.steps, cfg_scale=1.0, sampler="euler") for i in range(a.items)]

    def job_for(out: Path, threads="auto"):
        return gb.BatchJob(items, out, model=gb.ModelSpec(a.model, taesd=a.taesd, engine=a.engine, threads=threads))

    cores = os.cpu_count() or 2
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="gouache-batch-bench-"))
    rows = [run_mode("loop", lambda out: job_for(out, threads=cores), None, folder)]
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, object_store_memory=500 * 2**20, include_dashboard=False, logging_level=logging.WARNING)
    ray_init = time.perf_counter() - t0
    try:
        rows.append(run_mode("ray, 1 actor", job_for, gb.RayOptions(actors=1, cpus_per_actor=cores), folder))
        rows.append(run_mode("ray, 2 actors", job_for, gb.RayOptions(actors=2, cpus_per_actor=cores / 2), folder))
    finally:
        ray.shutdown()
    same = all((folder / "loop" / f"{i.id}.png").read_bytes() == (folder / r / f"{i.id}.png").read_bytes()
               for i in items for r in ("ray, 1 actor", "ray, 2 actors"))

    print(f"model {a.model} ({a.engine}), {a.items} items {a.size}x{a.size}, {a.steps} steps, {cores} cores"
          f"\nray.init {ray_init:.1f} s (not in the rows); outputs identical across modes: {same}\n")
    print(f"{'mode':<16} {'wall s':>8} {'start s':>8} {'steady s/item':>14} {'items/s':>8} {'vs loop':>8}")
    base = rows[0]["steady"]
    for r in rows:
        print(f"{r['mode']:<16} {r['wall']:>8.1f} {r['start']:>8.1f} {r['steady']:>14.2f} {1 / r['steady']:>8.3f}"
              f" {base / r['steady']:>7.2f}x")
    print(f"\nRay overhead per item at 1 actor: {rows[1]['steady'] / base - 1:+.1%} (target <= +10%)")
    print(f"2 actors vs 1 actor: {rows[1]['steady'] / rows[2]['steady']:.2f}x items/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
