"""Shared by the gouache.enhance tests: a clean environment and small helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def fill_hf_cache(
    cache: Path, repo: str, files: dict[str, Path | bytes], commit: str = "0123456789abcdef0123456789abcdef01234567"
) -> Path:
    """The Hugging Face cache layout (models--owner--name/{refs/main, snapshots/<commit>/...});
    files are symlinked (forged models are large) or written."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    for name, data in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            target.symlink_to(data)
        else:
            target.write_bytes(data)
    return snapshot


def rgba_view(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return Image.fromarray(np.dstack([rgb, alpha]))


def depth_ramp(w: int = 96, h: int = 64, flip: bool = False) -> np.ndarray:
    d = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
    return d[:, ::-1].copy() if flip else d
