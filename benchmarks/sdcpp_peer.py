"""The sdcpp engine's own speed against the seed project's binding, cyllama, on the same model.

    python benchmarks/sdcpp_peer.py --peer-python /path/to/venv-with-cyllama/bin/python
        [--size 128] [--steps 4] [--rounds 5] [--threads 2] [--sampler euler_a]

(``python -m venv /tmp/cyl && /tmp/cyl/bin/pip install --no-deps cyllama==0.2.18``: its wheel
bundles its own stable-diffusion.cpp and libgomp; gouache never imports it.)  Both generate the
forged SD1.x (real architecture, random weights, f16 file) with the same prompt, seed, size,
steps, sampler, CFG 7 and thread count, weights kept after use (cyllama's default frees them and
crashes on a second generation); each process loads once and generates twice, and the processes
alternate (gouache, peer, gouache, ...) ``--rounds`` times.  Printed: the median of
the first and of the second generation per binding, the ratio gouache / peer, and what each
library is: its stable-diffusion.cpp version and the CPU features it was built for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PROMPT = "a photo of a cat"


def worker_gouache(a) -> dict:
    import gouache as g

    t0 = time.perf_counter()
    ctx = g.SDContext(g.SDContextParams(model_path=a.model, n_threads=a.threads))
    load = time.perf_counter() - t0
    params = g.SDImageGenParams(
        prompt=PROMPT,
        width=a.size,
        height=a.size,
        seed=42,
        sample_params=g.SDSampleParams(sample_method=a.sampler, sample_steps=a.steps, txt_cfg=7.0),
    )
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        ctx.generate_image(params)
        times.append(time.perf_counter() - t0)
    ctx.close()
    return {"load": load, "gen": times, "library": _carrier(), "cpu": g.system_info()}


def _carrier() -> str:
    """Which library gouache loaded: ``$GOUACHE_LIBRARY`` or the carrier package's (its version
    from its metadata; the library reports its own version as "unknown" when built by pip)."""
    import os
    from importlib import metadata

    import gouache as g

    if os.environ.get("GOUACHE_LIBRARY"):
        return os.environ["GOUACHE_LIBRARY"]
    info = g.version()
    carrier = metadata.version("stable-diffusion-cpp-python")
    ggml = {"0.4.7": "0.9.8"}.get(carrier, "?")  # vendor/stable-diffusion.cpp/ggml/CMakeLists.txt
    return f"stable-diffusion-cpp-python {carrier} (sd.cpp {info['version']}, ggml {ggml})"


def worker_peer(a) -> dict:
    import json as _json
    from pathlib import Path

    import cyllama
    from cyllama.sd import SampleMethod, SDContext, SDContextParams, get_system_info

    method = {"euler_a": SampleMethod.EULER_A, "euler": SampleMethod.EULER}[a.sampler]
    t0 = time.perf_counter()
    params = SDContextParams(model_path=a.model, n_threads=a.threads)
    params.free_params_immediately = False  # its default (True) crashes the second generation
    ctx = SDContext(params)
    load = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        ctx.generate(
            PROMPT, width=a.size, height=a.size, seed=42, sample_steps=a.steps, cfg_scale=7.0, sample_method=method
        )
        times.append(time.perf_counter() - t0)
    build = _json.loads((Path(cyllama.__file__).parent / "build_config.json").read_text())["versions"]
    library = f"{build['stable_diffusion_cpp_version']} (ggml {build['stable_diffusion_cpp_ggml_version']})"
    return {"load": load, "gen": times, "library": library, "cpu": get_system_info()}


def _run(python: str, who: str, a) -> dict:
    cmd = [python, __file__, "--worker", who, "--model", a.model, "--size", str(a.size), "--steps", str(a.steps)]
    cmd += ["--threads", str(a.threads), "--sampler", a.sampler]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{who} worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-python", help="a Python with cyllama installed (default: this one)")
    p.add_argument("--model", help="model file (default: the forged SD1.x)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sampler", default="euler_a", choices=("euler_a", "euler"))
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps((worker_gouache if a.worker == "gouache" else worker_peer)(a)))
        return
    if a.model is None:
        from gouache.testing import forge

        a.model = str(forge.sd1())
    peer_python = a.peer_python or sys.executable
    runs: dict[str, list[dict]] = {"gouache": [], "cyllama": []}
    for _ in range(a.rounds):
        runs["gouache"].append(_run(sys.executable, "gouache", a))
        runs["cyllama"].append(_run(peer_python, "cyllama", a))

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nsdcpp engine vs cyllama: forged SD1.x f16, {a.size}x{a.size}, {a.steps} steps {a.sampler}, CFG 7,")
    print(f"{a.threads} threads, {a.rounds} alternating processes each; load average after: {load}")
    print(f"{'binding':10} {'load s':>8} {'1st gen s':>10} {'2nd gen s':>10}  library")
    med = {}
    for who, rs in runs.items():
        first = statistics.median(r["gen"][0] for r in rs)
        second = statistics.median(r["gen"][1] for r in rs)
        med[who] = second
        load_s = statistics.median(r["load"] for r in rs)
        print(f"{who:10} {load_s:8.2f} {first:10.2f} {second:10.2f}  {rs[0]['library']}")
    print(f"\nratio gouache / cyllama (2nd generation, median): {med['gouache'] / med['cyllama']:.3f}")
    for who, rs in runs.items():
        print(f"{who} built for: {rs[0]['cpu'].strip()}")


if __name__ == "__main__":
    main()
