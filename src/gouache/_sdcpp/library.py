"""Locating and loading ``libstable-diffusion`` (and the C runtime that frees what it allocates)."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
import sysconfig
from ctypes import c_void_p
from pathlib import Path

from .._errors import LibraryNotFoundError
from .native import FUNCTIONS, decode

#: Environment variable naming the shared library to load instead of the bundled one.
LIBRARY_ENV = "GOUACHE_LIBRARY"
#: The version of stable-diffusion-cpp-python whose header these declarations match.
CARRIER_PACKAGE = "stable-diffusion-cpp-python"
CARRIER_VERSION = "0.4.7"

_LIB_NAMES = {
    "linux": "libstable-diffusion.so",
    "darwin": "libstable-diffusion.dylib",
    "win32": "stable-diffusion.dll",
}


def library_filename() -> str:
    return _LIB_NAMES.get(sys.platform, "libstable-diffusion.so")


def _site_dirs() -> list[Path]:
    dirs: list[Path] = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.append(Path(p))
    for p in sys.path:
        if p and p.endswith("site-packages"):
            dirs.append(Path(p))
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (``$GOUACHE_LIBRARY`` overrides all)."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        return [Path(override)]
    name = library_filename()
    found: list[Path] = []
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("stable_diffusion_cpp")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            found.append(Path(loc) / "lib" / name)
    for site in _site_dirs():
        found.append(site / "stable_diffusion_cpp" / "lib" / name)
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def header_candidates() -> list[Path]:
    """Where the installed ``stable-diffusion.h`` of the carrier package may be."""
    out: list[Path] = []
    prefixes = [Path(sys.prefix), Path(sys.base_prefix)]
    for site in _site_dirs():
        out.append(site / "include" / "stable-diffusion.h")
    for prefix in prefixes:
        out.append(prefix / "include" / "stable-diffusion.h")
    for lib_path in candidate_paths():
        out.append(lib_path.parent.parent / "include" / "stable-diffusion.h")
        out.append(lib_path.parent.parent.parent / "include" / "stable-diffusion.h")
    unique: list[Path] = []
    for p in out:
        if p not in unique:
            unique.append(p)
    return unique


def _declare(cdll: ctypes.CDLL) -> None:
    for fname, (restype, argtypes) in FUNCTIONS.items():
        fn = getattr(cdll, fname)
        fn.restype = restype
        fn.argtypes = argtypes


@functools.cache
def lib() -> ctypes.CDLL:
    """Load (once) and return the declared engine library.

    Raises :class:`~gouache.LibraryNotFoundError` naming every path tried.
    """
    tried: list[str] = []
    for path in candidate_paths():
        if not path.is_file():
            tried.append(f"{path} (not found)")
            continue
        try:
            cdll = ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_LOCAL", 0))
        except OSError as exc:
            tried.append(f"{path} (could not be loaded: {exc})")
            continue
        try:
            _declare(cdll)
        except AttributeError as exc:
            tried.append(f"{path} (missing symbol, wrong library version? {exc})")
            continue
        cdll._gouache_path = str(path)  # type: ignore[attr-defined]
        return cdll
    raise LibraryNotFoundError(
        "could not load the stable-diffusion.cpp library; tried:\n  "
        + "\n  ".join(tried or ["(no candidate paths)"])
        + f"\nFix: `pip install {CARRIER_PACKAGE}=={CARRIER_VERSION}` (it compiles the library),"
        f" or set {LIBRARY_ENV}=/path/to/{library_filename()} (e.g. a CUDA or Vulkan build).",
        tried=tried,
    )


def library_path() -> str:
    """The path of the loaded engine library."""
    return lib()._gouache_path


@functools.cache
def libc() -> ctypes.CDLL:
    """The C runtime whose ``free`` releases what the engine ``malloc``s."""
    if sys.platform == "win32":  # pragma: no cover - not supported by the carrier wheel
        crt = ctypes.cdll.msvcrt
    else:
        crt = ctypes.CDLL(None)
    crt.free.argtypes = [c_void_p]
    crt.free.restype = None
    return crt


def take_string(ptr: int | None) -> str:
    """Decode a ``char*`` the engine malloc'd, then free it (exactly once)."""
    if not ptr:
        return ""
    try:
        return decode(ctypes.string_at(ptr))
    finally:
        libc().free(ptr)


def free(ptr: int | ctypes._Pointer | None) -> None:  # type: ignore[name-defined]
    """``free()`` memory the engine allocated."""
    if ptr is None:
        return
    address = ctypes.cast(ptr, c_void_p).value
    if address:
        libc().free(address)
