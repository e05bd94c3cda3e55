"""Shared by the gouache.enhance tests: a clean environment and small helpers."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ENHANCE_VARS = ("GOUACHE_DEPTH_MODEL", "GOUACHE_MODEL_DIRS", "GOUACHE_DEPTH_MODELS", "HF_HUB_CACHE", "HF_ENDPOINT")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No GOUACHE_ENHANCE_*/depth/model-folder variables, an empty Hugging Face cache and
    gouache cache in tmp_path, offline mode, and no connection can be opened (a test that
    wants the hub online replaces the hub calls)."""
    for name in list(os.environ):
        if name.startswith("GOUACHE_ENHANCE_") or name in ENHANCE_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GOUACHE_CACHE", str(tmp_path / "gouache_cache"))

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return monkeypatch


def fill_hf_cache(cache: Path, repo: str, files: dict[str, Path | bytes],
                  commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
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
    alpha[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return Image.fromarray(np.dstack([rgb, alpha]))


def depth_ramp(w: int = 96, h: int = 64, flip: bool = False) -> np.ndarray:
    d = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
    return d[:, ::-1].copy() if flip else d
