"""Shared fixtures: forged random-weight models (cached on disk) and loaded contexts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest

import gouache as g
from gouache.testing import forge

from .memory_plugin import ModuleMemory

_ENHANCE_VARS = ("GOUACHE_DEPTH_MODEL", "GOUACHE_MODEL_DIRS", "GOUACHE_DEPTH_MODELS", "HF_HUB_CACHE", "HF_ENDPOINT")
SIZE = 64
_RUN_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """A test run writes only where it is told: forged models in the forge cache (kept across
    runs, shared), everything else gouache caches (torch configs, depth models) in
    ``$GOUACHE_CACHE`` if set, else in a folder removed at the end.  Subprocesses inherit both.
    Also registers the per-module memory table (tests/memory_plugin.py)."""
    os.environ.setdefault("GOUACHE_FORGE_CACHE", str(forge.cache_dir()))
    if "GOUACHE_CACHE" not in os.environ:
        config.stash[_RUN_CACHE] = os.environ["GOUACHE_CACHE"] = tempfile.mkdtemp(prefix="gouache-test-cache-")
    config.pluginmanager.register(ModuleMemory(), "gouache-module-memory")


def pytest_unconfigure(config):
    if _RUN_CACHE in config.stash:
        shutil.rmtree(config.stash[_RUN_CACHE], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model():
    return forge.sd1_tiny()


@pytest.fixture(scope="session")
def full_model():
    return forge.sd1()


@pytest.fixture(scope="session")
def taesd_model():
    return forge.taesd()


@pytest.fixture(scope="module")
def tiny_ctx(tiny_model, taesd_model):
    """The tiny distilled SD1 UNet with TAESD (fast encode/decode), able to encode (img2img).
    Module scope: closed when its module is done (as a session fixture it held ~1 GB through
    the SDXL and torch modules that run after it)."""
    with g.SDContext(g.SDContextParams(model_path=tiny_model, taesd_path=taesd_model, vae_decode_only=False)) as ctx:
        yield ctx


def gen_params(**kw) -> g.SDImageGenParams:
    """64x64, 2 steps, CFG 1 (one UNet pass per step) unless the test says otherwise."""
    sample = kw.pop("sample", {})
    base = dict(prompt="a red cube on a table", width=SIZE, height=SIZE, seed=42)
    base.update(kw)
    return g.SDImageGenParams(sample_params=g.SDSampleParams(**{"sample_steps": 2, "txt_cfg": 1.0, **sample}), **base)


def run_isolated(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter: a crash in C fails the caller's test, not the run."""
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No GOUACHE_ENHANCE_*/depth/model-folder variables, an empty Hugging Face cache and
    gouache cache in tmp_path, offline mode, and no connection can be opened (a test that
    wants the hub online replaces the hub calls)."""
    for name in list(os.environ):
        if name.startswith("GOUACHE_ENHANCE_") or name in _ENHANCE_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GOUACHE_CACHE", str(tmp_path / "gouache_cache"))

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return monkeypatch
