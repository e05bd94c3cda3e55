"""What the command prints: exit codes, progress bars on stderr, results as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Progress:
    """Progress bars on stderr (tqdm); silent with --quiet or --json."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.phase = None

    def update(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.phase != phase or self.bar is None or self.bar.total != total:
            self.close()
            self.bar = tqdm(total=total, desc=phase, file=sys.stderr, leave=False, dynamic_ncols=True)
            self.phase = phase
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def emit(a: argparse.Namespace, data: dict[str, Any]) -> None:
    if a.json:
        print(json.dumps(data, default=str))
        return
    for k, v in data.items():
        print(f"{k}: {v}")
