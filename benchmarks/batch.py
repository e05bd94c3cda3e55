"""Batch throughput: the in-process loop vs Ray Data with 1 and 2 actors, the same job.

    python benchmarks/batch.py [--items 10] [--size 128] [--steps 4] [--model PATH] [--engine sdcpp]

Each mode runs the same generation job into a fresh folder (same seeds, so the same
files).  Columns: "wall s" the whole run (worker start and model load included; ``ray.init``
not), "start s" until the first item finished on a worker, "items/s" items over the wall
time after that, "work s/item" the mean time an item spent on its worker (model call +
write).  "overhead" is the runner's own cost per item, measured on the workers' clocks in
the same run: the time a worker sat between two items (a result going back, the next unit
coming in) over the time it spent on them.  It does not depend on how busy the machine
is, unlike comparisons of wall times between modes on a shared machine.  The loop and the
1-actor run use 2 threads; the 2-actor run gives each actor 1 CPU and 1 thread.  The loop
runs first and again last (its two rows show the drift of the machine's load).
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

    t0, epoch0 = time.perf_counter(), time.time()
    summary = gb.run_batch(job_for(folder / name), ray=ray_options)
    wall = time.perf_counter() - t0
    if summary.failed or summary.done != len(summary.results):
        raise SystemExit(f"{name}: {summary.failed} failed: {summary.failures[:1]}")
    results = summary.results
    first = min(r.finished_at for r in results) - epoch0
    idle = busy = 0.0
    for worker in {r.worker for r in results}:
        mine = sorted((r for r in results if r.worker == worker), key=lambda r: r.finished_at)
        for prev, cur in zip(mine, mine[1:]):
            gap = cur.finished_at - prev.finished_at
            idle += gap - cur.timings["item"]
            busy += cur.timings["item"]
    n = len(results)
    return {
        "mode": name,
        "wall": wall,
        "start": first,
        "rate": (n - 1) / (wall - first),
        "items": n,
        "work": sum(r.timings["item"] for r in results) / n,
        "overhead": idle / busy if busy else float("nan"),
    }


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
    items = [
        gb.GenerateItem(
            id=f"{i:03d}",
            prompt=f"a lighthouse at dusk, variation {i}",
            width=a.size,
            height=a.size,
            steps=a.steps,
            cfg_scale=1.0,
            sampler="euler",
        )
        for i in range(a.items)
    ]

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
    rows.append(run_mode("loop, again", lambda out: job_for(out, threads=cores), None, folder))  # drift check (ABA)
    same = all(
        (folder / "loop" / f"{i.id}.png").read_bytes() == (folder / r / f"{i.id}.png").read_bytes()
        for i in items
        for r in ("ray, 1 actor", "ray, 2 actors")
    )

    print(
        f"model {a.model} ({a.engine}), {a.items} items {a.size}x{a.size}, {a.steps} steps, {cores} cores"
        f"\nray.init {ray_init:.1f} s (not in the rows); outputs identical across modes: {same}\n"
    )
    print(
        "modes ran in this order; the loop ran first and last, so its two rows show how much the machine's load"
        " drifted\n"
    )
    print(
        f"{'mode':<16} {'wall s':>8} {'start s':>8} {'items/s':>8} {'vs loop':>8} {'work s/item':>12} {'overhead':>9}"
    )
    for r in rows:
        print(
            f"{r['mode']:<16} {r['wall']:>8.1f} {r['start']:>8.1f} {r['rate']:>8.3f}"
            f" {r['rate'] / rows[0]['rate']:>7.2f}x"
            f" {r['work']:>12.2f} {r['overhead']:>+9.2%}"
        )
    print(
        f"\nper-item overhead: loop {rows[0]['overhead']:+.2%}, Ray 1 actor {rows[1]['overhead']:+.2%}"
        f" (target <= +10%), Ray 2 actors {rows[2]['overhead']:+.2%}"
    )
    print(
        f"2 actors vs 1 actor: {rows[2]['rate'] / rows[1]['rate']:.2f}x items/s"
        f" (work s/item {rows[1]['work']:.2f} with 2 threads, {rows[2]['work']:.2f} with 1)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
