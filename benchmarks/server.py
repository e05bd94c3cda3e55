"""gouache serve: per-image time through each API vs SDModel.generate in one process,
concurrent clients, and memory after many requests.

    python benchmarks/server.py [--size 256] [--steps 4] [--rounds 5] [--clients 8] [--requests 25]
                                [--sequential 25] [--soak 200] [--threads auto] [--model PATH]

Default model: the forged tiny SD1 (random weights, real architecture) with TAESD, engine
"auto" (sdcpp for this family).  The server runs as ``gouache serve`` in its own process
(its model in a worker process); the direct baseline runs ``SDModel.generate`` in this
process with the same settings.  Methods are interleaved round by round (direct, A1111,
OpenAI, job API, ...) so a change of machine load hits all of them alike; medians are kept.

Targets (issue 14): HTTP overhead <= 3 % or <= 30 ms per image, whichever is larger;
``clients`` x ``requests`` concurrent requests all succeed with throughput equal to
sequential within 5 %; RSS growth of server and worker after ``soak`` requests < 50 MB.
"""

from __future__ import annotations

import argparse
import base64
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(a, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "gouache",
        "serve",
        "--model",
        a.model,
        "--port",
        str(port),
        "--threads",
        a.threads,
        "--max-queue",
        str(max(32, a.clients * 2)),
        "--result-ttl",
        "7200",
        "-q",
    ]
    if a.taesd:
        cmd += ["--taesd", a.taesd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(client, proc) -> dict:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
        try:
            workers = client.get("/v1/server").json()["workers"]
            if workers and workers[0]["phase"] == "idle":
                return workers[0]
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    raise TimeoutError("server not ready")


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--taesd", help="TAESD file (default: the forged one; 'none' for the full VAE)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the model family's)")
    ap.add_argument("--rounds", type=int, default=5, help="images per method for the per-image times")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25, help="requests per concurrent client")
    ap.add_argument(
        "--sequential", type=int, default=25, help="requests one after another, for the throughput baseline"
    )
    ap.add_argument("--soak", type=int, default=200, help="requests served before the second RSS reading")
    ap.add_argument(
        "--soak-size", type=int, default=None, help="image size of the extra soak requests (default --size)"
    )
    ap.add_argument("--threads", default="auto")
    a = ap.parse_args()
    # SIGTERM (timeout, a stopped job) must still reach the finally below, which stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import httpx
    import openai

    import gouache as g

    if a.model is None or a.taesd is None:
        from gouache.testing import forge

        a.model = a.model or str(forge.sd1_tiny())
        a.taesd = a.taesd or str(forge.taesd())
    a.taesd = None if a.taesd == "none" else a.taesd
    gen = {"width": a.size, "height": a.size, "steps": a.steps}
    if a.cfg is not None:
        gen["cfg_scale"] = a.cfg
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(a, port)
    client = httpx.Client(base_url=url, timeout=3600)
    oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=3600)
    served = 0
    try:
        worker = wait_ready(client, proc)
        threads = a.threads if a.threads == "auto" else int(a.threads)
        direct_model = g.SDModel(a.model, taesd=a.taesd, threads=threads)
        print(f"model {a.model} ({direct_model.family}, engine {direct_model.engine_name}), taesd {a.taesd}")
        print(
            f"{a.size}x{a.size}, {a.steps} steps, threads {a.threads}; "
            f"server pid {proc.pid}, worker pid {worker['pid']}\n"
        )

        def engine_seconds(job_id: str) -> float:
            """The worker's own generate() time of a job (after the timed request)."""
            return sum(t["total"] for t in client.get(f"/v1/jobs/{job_id}").json()["timings"])

        def direct(seed):
            res = direct_model.generate("a lighthouse at dusk", seed=seed, **gen)
            return lambda: res.timings["total"]

        def a1111(seed):
            r = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse at dusk", "seed": seed, **gen})
            r.raise_for_status()
            base64.b64decode(r.json()["images"][0])
            return lambda: engine_seconds(r.headers["X-Gouache-Job"])

        def openai_api(seed):
            raw = oa.images.with_raw_response.generate(
                prompt="a lighthouse at dusk",
                size=f"{a.size}x{a.size}",
                extra_body={"seed": seed, **{k: v for k, v in gen.items() if k not in ("width", "height")}},
            )
            base64.b64decode(raw.parse().data[0].b64_json)
            return lambda: engine_seconds(raw.headers["X-Gouache-Job"])

        def jobs(seed):
            job = client.post(
                "/v1/jobs", json={"kind": "generate", "prompt": "a lighthouse at dusk", "seed": seed, **gen}
            ).json()
            with client.stream("GET", f"/v1/jobs/{job['id']}/events") as s:
                for line in s.iter_lines():
                    if line.startswith("event: ") and line[7:] in ("done", "failed", "cancelled"):
                        break
            done = client.get(f"/v1/jobs/{job['id']}").json()
            assert done["state"] == "done", done
            client.get(done["results"][0]["url"]).raise_for_status()
            return lambda: engine_seconds(job["id"])

        methods = {
            "SDModel.generate (direct)": direct,
            "A1111 /sdapi/v1/txt2img": a1111,
            "OpenAI images.generate": openai_api,
            "job API + SSE + download": jobs,
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        overheads: dict[str, list[float]] = {k: [] for k in methods}
        direct(0)  # warm both sides once
        a1111(0)
        served += 1
        rss0 = (rss_mb(proc.pid), rss_mb(worker["pid"]))
        for r in range(a.rounds):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                engine = fn(100 + r)
                wall = time.perf_counter() - t0
                times[name].append(wall)
                overheads[name].append(wall - engine())
                served += name != "SDModel.generate (direct)"
        direct_model.close()
        base = statistics.median(times["SDModel.generate (direct)"])
        print("per image, median of", a.rounds, "(overhead = request time - the worker's own generate() time)")
        print(f"{'method':<30} {'s/image':>9} {'vs direct':>10} {'overhead ms':>12}  target")
        for name, ts in times.items():
            m = statistics.median(ts)
            over = statistics.median(overheads[name]) * 1000
            limit = max(0.03 * base * 1000, 30.0)
            verdict = (
                "" if name.startswith("SDModel") else ("met" if over <= limit else "MISSED") + f" (<= {limit:.0f} ms)"
            )
            print(f"{name:<30} {m:>9.3f} {m / base:>10.3f} {over:>12.1f}  {verdict}")

        # Throughput: the same A1111 requests one after another (before and after the concurrent
        # phase, to average out drifting machine load) and from concurrent clients.  "busy" is the
        # share of the wall time the worker spent in generate(): what the server itself controls.
        n = a.clients * a.requests

        def sequential(first_seed: int) -> tuple[float, float]:
            ids, t0 = [], time.perf_counter()
            for i in range(a.sequential):
                r = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "seed": first_seed + i, **gen})
                r.raise_for_status()
                ids.append(r.headers["X-Gouache-Job"])
            wall = time.perf_counter() - t0
            return a.sequential / wall, sum(engine_seconds(j) for j in ids) / wall

        seq1 = sequential(5000)
        latencies: list[float] = []
        failures: list[str] = []
        conc_ids: list[str] = []
        lock = threading.Lock()

        def client_loop(c: int):
            with httpx.Client(base_url=url, timeout=3600) as hc:
                for i in range(a.requests):
                    t0 = time.perf_counter()
                    r = hc.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "seed": c * 1000 + i, **gen})
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                        else:
                            conc_ids.append(r.headers["X-Gouache-Job"])

        t0 = time.perf_counter()
        pool = [threading.Thread(target=client_loop, args=(c,)) for c in range(a.clients)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - t0
        conc_tp, conc_busy = n / wall, sum(engine_seconds(j) for j in conc_ids) / wall
        seq2 = sequential(6000)
        served += n + 2 * a.sequential
        seq_tp, seq_busy = (seq1[0] + seq2[0]) / 2, (seq1[1] + seq2[1]) / 2
        lat = sorted(latencies)
        p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        print(
            f"\n{a.clients} clients x {a.requests} requests (A1111 txt2img): "
            f"{n - len(failures)}/{n} succeeded in {wall:.1f} s"
        )
        print(f"{'throughput':<34} {'img/s':>8} {'worker busy':>12}")
        print(f"{f'sequential (2 x {a.sequential}, mean)':<34} {seq_tp:>8.4f} {seq_busy:>11.1%}")
        print(f"{f'concurrent ({a.clients} clients)':<34} {conc_tp:>8.4f} {conc_busy:>11.1%}")
        print(
            f"ratio concurrent/sequential: {conc_tp / seq_tp:.3f} raw, {conc_busy / seq_busy:.3f} by worker busy time"
            " (target 0.95-1.05)"
        )
        print(f"latency under load: p50 {p50:.2f} s, p95 {p95:.2f} s")

        soak_gen = dict(gen)
        if a.soak_size:
            soak_gen.update(width=a.soak_size, height=a.soak_size)
        while served < a.soak:
            r = client.post("/sdapi/v1/txt2img", json={"prompt": "soak", "seed": served, **soak_gen})
            r.raise_for_status()
            served += 1
        rss1 = (rss_mb(proc.pid), rss_mb(worker["pid"]))
        print(f"\nRSS after {served} requests (target: growth < 50 MB)")
        print(f"{'process':<10} {'first MB':>9} {'after MB':>9} {'growth':>8}")
        for label, before, after in (("server", rss0[0], rss1[0]), ("worker", rss0[1], rss1[1])):
            print(f"{label:<10} {before:>9.1f} {after:>9.1f} {after - before:>+8.1f}")
        return 1 if failures else 0
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
