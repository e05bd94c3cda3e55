"""The ``gouache`` command.  This release has ``--version`` and ``info``; generation
subcommands arrive with the high-level API."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gouache", description="Local diffusion: stable-diffusion.cpp from Python.")
    p.add_argument("--version", action="store_true", help="print gouache's and the engine's versions and exit")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("info", help="print the engine library path, version and CPU features")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"gouache {__version__}")
        return 0
    if args.command == "info":
        from . import _native, physical_cores, system_info, version
        from ._errors import GouacheError

        try:
            v = version()
            print(f"gouache {__version__}")
            print(f"engine: stable-diffusion.cpp {v['version']} ({v['commit']})")
            print(f"library: {_native.lib()._gouache_path}")
            print(f"physical cores: {physical_cores()}")
            print(f"system: {system_info().strip()}")
        except GouacheError as exc:
            print(f"gouache: error: {exc}", file=sys.stderr)
            return 1
        return 0
    _parser().print_help()
    return 0
