"""Engines: the same SD1.x generation through sdcpp, stock diffusers and gouache's torch engine.

    python benchmarks/engines.py [--size 512] [--steps 2] [--rows ROW,ROW] [--threads N] [--model PATH]

Every row runs the same UNet architecture and size (default: the forged random-weight
SD1.x, real SD1.5 architecture, f16 file), prompt, seed 42, euler sampler, discrete
schedule, CFG 7 (2 UNet evaluations per step: sdcpp runs cond and uncond one after the
other, diffusers batches them), ``--steps`` steps at ``--size``x``--size``.  Rows (``--rows``):

* ``sdcpp-f16``      ``gouache.SDModel(forge.sd1(), engine="sdcpp")``
* ``sdcpp-q8_0``     ``gouache.SDModel(forge.gguf(base="sd1", wtype="q8_0"), engine="sdcpp")``
* ``diffusers-fp32`` plain ``diffusers.StableDiffusionPipeline.from_single_file`` (gouache's shipped
                     config folder, local files only) with its defaults: fp32, no channels_last,
                     no safety checker, ``EulerDiscreteScheduler`` from its config
* ``gouache-torch``  ``gouache.SDModel(forge.sd1(), engine="torch")``: auto-tuned (bf16 on CPUs
                     with AVX512-BF16/AMX, channels_last)

Each row runs in its own subprocess (peak RSS = that process's ``ru_maxrss``), one
generation per row.  Columns:

* load s: constructing the model/pipeline from the file.
* s/step: time between the first and the last sampling-step callback divided by
  (steps - 1) (``SDModel.generate(callback=...)`` for the gouache rows,
  ``callback_on_step_end`` for stock diffusers).  The first callback fires when step 1
  has *finished*, so step 1 (text encoding, graph/primitive set-up: the warm-up) is never
  counted, and each counted step is one full CFG step (2 UNet evaluations + the sampler
  update).  Needs ``--steps >= 2``.
* VAE decode s: torch rows: a standalone, warm ``pipe.vae.decode(latents / scaling)`` of one
  latent of the generated size (the generation itself decoded once before); sdcpp rows:
  the ``"decode"`` entry of ``GenerationResult.timings`` (last step callback to the end of
  ``generate``: VAE decode plus the copy to PIL).
* peak RSS MB: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the row's process (MiB).
* UNet GFLOP/s: FLOPs of one batch-2 (CFG) UNet forward at this size, counted once with
  ``torch.utils.flop_counter.FlopCounterMode`` on the diffusers SD1 UNet in fp32 (meta
  tensors, math SDPA so attention is counted as matmuls), divided by s/step.  The same
  FLOP count applies to every row (the scheduler update is negligible).
* % fp32 / % bf16 peak: that rate against the machine's GEMM peak measured in the same
  run (``torch.mm`` of square fp32 and bf16 matrices, 2048 and 4096, threads = ``--threads``,
  best of 5 after a warm-up, measured before and after the rows; best kept).

Targets (defined at 512x512): gouache torch s/step >= 3x faster than stock diffusers fp32;
gouache torch UNet rate >= 40% of the bf16 GEMM peak; gouache torch peak RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROWS = ("sdcpp-f16", "sdcpp-q8_0", "diffusers-fp32", "gouache-torch")
LABELS = {
    "sdcpp-f16": "sdcpp f16",
    "sdcpp-q8_0": "sdcpp q8_0",
    "diffusers-fp32": "diffusers stock fp32",
    "gouache-torch": "gouache torch (auto)",
}
TARGET_SPEEDUP = 3.0
TARGET_PEAK_FRACTION = 0.40
TARGET_RSS_MB = 4096.0


def rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _per_step(stamps: list[float]) -> float:
    if len(stamps) < 2:
        raise RuntimeError(f"need at least 2 step callbacks to time a step, got {len(stamps)}")
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


# --------------------------------------------------------------------------- workers


def worker_peak(a) -> dict:
    """GEMM peak of this machine: best GFLOP/s of torch.mm in fp32 and bf16."""
    import torch

    torch.set_num_threads(a.threads)
    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for n in (2048, 4096):
            x = torch.randn(n, n, dtype=dtype)
            y = torch.randn(n, n, dtype=dtype)
            torch.mm(x, y)  # warm-up (oneDNN/MKL primitive creation)
            for _ in range(5):
                t0 = time.perf_counter()
                torch.mm(x, y)
                best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
        out[name] = best
    return out


def worker_flops(a) -> dict:
    """FLOPs of one batch-2 (CFG) forward of the diffusers SD1 UNet in fp32 at this size."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from gouache._engines.torch.configs import config_dir

    cfg = UNet2DConditionModel.load_config(str(config_dir("sd1") / "unet"))
    lat = a.size // 8

    def count(device: str) -> int:
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(cfg).to(torch.float32)
            x = torch.zeros(2, 4, lat, lat)
            ctx = torch.zeros(2, 77, unet.config.cross_attention_dim)
            t = torch.tensor([999.0, 999.0])
        counter = FlopCounterMode(display=False)
        # math SDPA: the CPU flash kernel has no FLOP formula registered, its matmuls do
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            unet(x, t, encoder_hidden_states=ctx)
        return counter.get_total_flops()

    try:
        flops, where = count("meta"), "meta"  # shapes only: no weights, instant
    except Exception:  # noqa: BLE001 - fall back to real (random-init) fp32 tensors
        torch.set_num_threads(a.threads)
        flops, where = count("cpu"), "cpu"
    return {"flops": flops, "device": where}


def _gen_kwargs(a) -> dict:
    return dict(
        width=a.size, height=a.size, steps=a.steps, cfg_scale=7.0, sampler="euler", scheduler="discrete", seed=42
    )


def worker_sdcpp(a) -> dict:
    import gouache as g

    t0 = time.perf_counter()
    model = g.SDModel(a.path, engine="sdcpp", threads=a.threads)
    load = time.perf_counter() - t0
    stamps: list[float] = []
    t0 = time.perf_counter()
    res = model.generate(
        a.prompt, callback=lambda step, total, elapsed: stamps.append(time.perf_counter()), **_gen_kwargs(a)
    )
    gen = time.perf_counter() - t0
    model.close()
    return {
        "load": load,
        "step": _per_step(stamps),
        "decode": res.timings["decode"],
        "generate": gen,
        "first_step_end": stamps[0] - t0,
        "timings": res.timings,
        "rss": rss_peak_mb(),
        "dtype": a.row.split("-")[1],
    }


def _decode_seconds(pipe, size: int) -> float:
    """A warm standalone VAE decode of one latent of this size, in the VAE's dtype."""
    import torch

    lat = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator("cpu").manual_seed(0)).to(pipe.vae.dtype)
    with torch.inference_mode():
        t0 = time.perf_counter()
        pipe.vae.decode(lat / pipe.vae.config.scaling_factor)
        return time.perf_counter() - t0


def worker_diffusers(a) -> dict:
    import diffusers
    import torch

    from gouache._engines.torch.configs import config_dir

    torch.set_num_threads(a.threads)  # same thread count as every other row (torch's default here anyway)
    t0 = time.perf_counter()
    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        a.path,
        config=str(config_dir("sd1")),
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - t0
    stamps: list[float] = []

    def on_step_end(p, i, t, kwargs):
        stamps.append(time.perf_counter())
        return kwargs

    t0 = time.perf_counter()
    pipe(
        a.prompt,
        num_inference_steps=a.steps,
        guidance_scale=7.0,
        width=a.size,
        height=a.size,
        generator=torch.Generator("cpu").manual_seed(42),
        callback_on_step_end=on_step_end,
    )
    gen = time.perf_counter() - t0
    return {
        "load": load,
        "step": _per_step(stamps),
        "decode": _decode_seconds(pipe, a.size),
        "decode_in_generate": t0 + gen - stamps[-1],
        "generate": gen,
        "first_step_end": stamps[0] - t0,
        "rss": rss_peak_mb(),
        "dtype": {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(pipe.unet.dtype, "?"),
    }


def worker_gouache_torch(a) -> dict:
    import gouache as g

    t0 = time.perf_counter()
    model = g.SDModel(a.path, engine="torch", threads=a.threads)
    load = time.perf_counter() - t0
    stamps: list[float] = []
    t0 = time.perf_counter()
    res = model.generate(
        a.prompt, callback=lambda step, total, elapsed: stamps.append(time.perf_counter()), **_gen_kwargs(a)
    )
    gen = time.perf_counter() - t0
    engine = model._engine  # the diffusers pipeline gouache built, for the standalone decode
    out = {
        "load": load,
        "step": _per_step(stamps),
        "decode": _decode_seconds(engine.base, a.size),
        "decode_in_generate": res.timings["decode"],
        "generate": gen,
        "first_step_end": stamps[0] - t0,
        "rss": rss_peak_mb(),
        "dtype": engine.dtype_name,
    }
    model.close()
    return out


WORKERS = {
    "peak": worker_peak,
    "flops": worker_flops,
    "sdcpp-f16": worker_sdcpp,
    "sdcpp-q8_0": worker_sdcpp,
    "diffusers-fp32": worker_diffusers,
    "gouache-torch": worker_gouache_torch,
}


# --------------------------------------------------------------------------- driver


def _run(a, worker: str, path: str | None = None) -> tuple[dict | None, str]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        worker,
        "--size",
        str(a.size),
        "--steps",
        str(a.steps),
        "--threads",
        str(a.threads),
        "--prompt",
        a.prompt,
    ]
    if path:
        cmd += ["--path", path]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {a.timeout} s"
    if out.returncode != 0:
        tail = (out.stderr or "").strip().splitlines()
        return None, f"exit {out.returncode}: {tail[-1] if tail else ''}"
    return json.loads(out.stdout.strip().splitlines()[-1]), ""


def _load1() -> float:
    return os.getloadavg()[0]


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="width = height (multiple of 64); 256 is a quick mode")
    ap.add_argument("--steps", type=int, default=2, help="sampling steps (>= 2; the first is not timed)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    ap.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    ap.add_argument("--model", help="SD1.x single-file checkpoint (default: forged random-weight SD1.x, f16)")
    ap.add_argument("--prompt", default="a lighthouse on a cliff at dusk")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per row process")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.row = a.worker
        print(json.dumps(WORKERS[a.worker](a)))
        return 0
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        ap.error(f"--rows: unknown {bad}; choose from {', '.join(ROWS)}")
    if a.steps < 2:
        ap.error("--steps must be >= 2 (seconds per step are timed from the end of step 1)")
    if a.size % 64:
        ap.error("--size must be a multiple of 64")
    import gouache
    from gouache.testing import forge

    if a.threads == 0:
        a.threads = gouache.physical_cores()
    base = a.model or str(forge.sd1())
    paths = {"sdcpp-f16": base, "diffusers-fp32": base, "gouache-torch": base}
    if "sdcpp-q8_0" in rows:
        if a.model:
            q8 = os.path.splitext(a.model)[0] + "-q8_0.gguf"
            if not os.path.exists(q8):
                gouache.convert_model(a.model, q8, output_type="q8_0")
            paths["sdcpp-q8_0"] = q8
        else:
            paths["sdcpp-q8_0"] = str(forge.gguf(base="sd1", wtype="q8_0"))

    loads = [_load1()]
    peak, err = _run(a, "peak")
    if peak is None:
        print(f"GEMM peak measurement failed: {err}", file=sys.stderr)
        return 1
    fl, err = _run(a, "flops")
    if fl is None:
        print(f"FLOP count failed: {err}", file=sys.stderr)
        return 1
    flops = fl["flops"]
    results: dict[str, dict | None] = {}
    errors: dict[str, str] = {}
    for row in rows:
        print(f"running {row} ...", file=sys.stderr, flush=True)
        results[row], errors[row] = _run(a, row, paths[row])
        loads.append(_load1())
        if results[row] is None:
            print(f"  {row} failed: {errors[row]}", file=sys.stderr)
    peak2, _ = _run(a, "peak")  # again after the rows: the best of both is the machine's peak
    if peak2:
        peak = {k: max(peak[k], peak2[k]) for k in peak}
    loads.append(_load1())

    print(f"model {base}" + (f"\n      {paths['sdcpp-q8_0']}" if "sdcpp-q8_0" in paths else ""))
    print(
        f"size {a.size}x{a.size}, {a.steps} steps euler/discrete, cfg 7 (2 UNet evaluations per step), seed 42, "
        f"{a.threads} threads, 1 generation per row, each row in its own process"
    )
    print(f"UNet FLOPs per CFG step (batch-2 forward, fp32 diffusers, FlopCounterMode): {flops / 1e9:.1f} GFLOP")
    print(
        f"GEMM peak (torch.mm, {a.threads} threads): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
    )
    print("load average (1 min) before/after each process: " + " ".join(f"{x:.2f}" for x in loads) + "\n")
    head = (
        f"{'engine':<22} {'dtype':>6} {'load s':>7} {'s/step':>8} {'VAE decode s':>13} {'peak RSS MB':>12} "
        f"{'UNet GFLOP/s':>13} {'% fp32 peak':>12} {'% bf16 peak':>12}"
    )
    print(head)
    for row in rows:
        r = results[row]
        if r is None:
            print(f"{LABELS[row]:<22} FAILED: {errors[row]}")
            continue
        rate = flops / r["step"] / 1e9
        r["gflops"] = rate
        print(
            f"{LABELS[row]:<22} {r['dtype']:>6} {r['load']:>7.2f} {r['step']:>8.2f} {r['decode']:>13.2f}"
            f" {r['rss']:>12.0f} "
            f"{rate:>13.1f} {100 * rate / peak['fp32']:>11.1f}% {100 * rate / peak['bf16']:>11.1f}%"
        )

    note = "" if a.size == 512 else f"  [targets are defined at 512x512; this run is {a.size}x{a.size}]"
    print()
    g_ = results.get("gouache-torch")
    d_ = results.get("diffusers-fp32")
    if g_ and d_:
        sp = d_["step"] / g_["step"]
        print(
            f"gouache torch vs stock diffusers fp32, s/step: {sp:.2f}x faster  (target >= {TARGET_SPEEDUP:.0f}x)  "
            f"{_verdict(sp >= TARGET_SPEEDUP)}{note}"
        )
        print(
            f"  VAE decode: {d_['decode'] / g_['decode']:.2f}x faster; load: {d_['load'] / g_['load']:.2f}x; "
            f"peak RSS: {g_['rss'] / d_['rss']:.2f}x of stock"
        )
    if g_:
        frac = g_["gflops"] / peak["bf16"]
        print(
            f"gouache torch UNet step: {100 * frac:.1f}% of the bf16 GEMM peak"
            f"  (target >= {100 * TARGET_PEAK_FRACTION:.0f}%)  "
            f"{_verdict(frac >= TARGET_PEAK_FRACTION)}{note}"
        )
        print(
            f"gouache torch peak RSS: {g_['rss']:.0f} MB  (target <= {TARGET_RSS_MB:.0f} MB)  "
            f"{_verdict(g_['rss'] <= TARGET_RSS_MB)}{note}"
        )
        for row in ("sdcpp-f16", "sdcpp-q8_0"):
            s = results.get(row)
            if s:
                print(
                    f"{LABELS[row]} / gouache torch: s/step {s['step'] / g_['step']:.2f}, "
                    f"VAE decode {s['decode'] / g_['decode']:.2f}, load {s['load'] / g_['load']:.2f}, "
                    f"peak RSS {s['rss'] / g_['rss']:.2f}  (> 1: gouache torch faster / smaller)"
                )
    return 0 if all(results.get(r) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
