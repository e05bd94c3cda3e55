"""Run a command, print its wall time and the peak memory of its whole process tree, and fail
when that peak is over the limit.

``/usr/bin/time -v`` reports the largest single process only; the test run's memory is spread
over pytest, the subprocesses it starts (``run_isolated``, CLI runs, servers) and their children.
This samples the sum of the resident set sizes of the command and all its descendants every
``--interval`` seconds.  Shared pages are counted once per process, so the figure is an upper
bound of what the run holds (the out-of-memory killer sees less, never more).

    python .ci/measure.py --limit-gib 12 -- python -m pytest
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import psutil

GIB = 1 << 30


def tree_rss(root: psutil.Process) -> int:
    """Sum of RSS of ``root`` and every live descendant (processes gone mid-sample are skipped)."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakSampler:
    """Samples ``tree_rss`` of one process in a thread; ``peak`` (bytes) and ``when`` (seconds in).
    ``on_sample(rss)``, if given, sees every sample (the test plugin's per-module table)."""

    def __init__(self, pid: int, interval: float, on_sample=None) -> None:
        self.root, self.interval, self.on_sample = psutil.Process(pid), interval, on_sample
        self.peak, self.when, self.start = 0, 0.0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = tree_rss(self.root)
            if self.on_sample is not None:
                self.on_sample(rss)
            if rss > self.peak:
                self.peak, self.when = rss, time.monotonic() - self.start

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-gib", type=float, required=True, help="fail when the peak is above this")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between samples (default 0.2)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command given (put it after --)")
    start = time.monotonic()
    proc = subprocess.Popen(command)
    sampler = PeakSampler(proc.pid, a.interval)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        raise
    finally:
        sampler.stop()
    wall = time.monotonic() - start
    peak = sampler.peak / GIB
    print(
        f"\n[measure] wall time {wall / 60:.1f} min ({wall:.0f} s); peak memory of the whole process tree "
        f"{peak:.2f} GiB (at {sampler.when:.0f} s; limit {a.limit_gib:g} GiB); exit status {rc}",
        flush=True,
    )
    if peak > a.limit_gib:
        print(f"[measure] FAIL: peak memory {peak:.2f} GiB is over the limit of {a.limit_gib:g} GiB", flush=True)
        return rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
