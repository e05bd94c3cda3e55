"""Per test module: wall time and peak memory of the pytest process tree (pytest and every
subprocess it starts), printed at the end of the run, largest first.

The sampler is ``.ci/measure.py``'s (one home for "the tree's memory"): it sums the RSS of
the process and its descendants.  ``GOUACHE_TEST_MEMORY_JSON=path`` also writes the table
as JSON (for comparing runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

_MEASURE = Path(__file__).resolve().parent.parent / ".ci" / "measure.py"
GIB = 1 << 30


def _load_measure():
    spec = importlib.util.spec_from_file_location("gouache_ci_measure", _MEASURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ModuleMemory:
    """Peak tree RSS and time per test module; the sampler thread reads ``current``."""

    def __init__(self, interval: float = 0.2) -> None:
        self.measure = _load_measure()
        self.rows: dict[str, dict] = {}
        self.current: str | None = None
        self.sampler = self.measure.PeakSampler(os.getpid(), interval, on_sample=self._sample)

    def _sample(self, rss: int) -> None:
        module = self.current
        if module is not None:
            row = self.rows[module]
            row["peak"] = max(row["peak"], rss)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        module = item.nodeid.split("::")[0]
        self.rows.setdefault(module, {"peak": 0, "seconds": 0.0})
        self.current = module
        start = time.monotonic()
        yield
        self.rows[module]["seconds"] += time.monotonic() - start

    def pytest_terminal_summary(self, terminalreporter):
        self.sampler.stop()
        rows = sorted(self.rows.items(), key=lambda kv: -kv[1]["peak"])
        tr = terminalreporter
        tr.section("memory per test module (peak RSS of the pytest process tree)")
        tr.write_line(f"{'module':48} {'peak GiB':>9} {'time s':>8}")
        for module, row in rows:
            tr.write_line(f"{module:48} {row['peak'] / GIB:9.2f} {row['seconds']:8.1f}")
        tr.write_line(f"{'whole run':48} {self.sampler.peak / GIB:9.2f}")
        out = os.environ.get("GOUACHE_TEST_MEMORY_JSON")
        if out:
            Path(out).write_text(json.dumps({"peak": self.sampler.peak, "modules": self.rows}, indent=1))
