"""The ``gouache`` command (also ``python -m gouache``).

Generation runs in a child process: the native engine cannot be cancelled, so Ctrl-C
terminates the child at once and the parent exits with code 130; images already
finished are kept (each is written atomically as soon as it exists), nothing partial is
left.  Exit codes: 0 ok, 1 runtime error, 2 usage error (bad option or value), 130
interrupted.  Errors print one line; ``--debug`` prints the traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback

from .._errors import GouacheError, InvalidInputError
from ..batch import _cli as batch_cli
from ..server import _cli as serve_cli
from .arguments import resolve_prompt
from .commands import run_assemble, run_convert, run_enhance, run_info, run_models, run_pull, run_upscale
from .firstrun import choose_model
from .generate import Failure, run_generation
from .output import EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE
from .parser import GENERATION_COMMANDS, build_parser

_COMMANDS = {
    "upscale": run_upscale,
    "convert": run_convert,
    "assemble": run_assemble,
    "info": run_info,
    "models": run_models,
    "pull": run_pull,
    "enhance": run_enhance,
    "serve": serve_cli.run,
    "batch": batch_cli.run,
}

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    a = parser.parse_args(argv)  # usage errors exit with 2 here
    if a.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING, format="%(name)s: %(message)s")
    if not a.debug:  # libraries' retry chatter would come before gouache's one line
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        if a.command in GENERATION_COMMANDS:
            resolve_prompt(a)
            return run_generation(a, argv + choose_model(a))
        return _COMMANDS[a.command](a)
    except Failure as exc:
        print(f"gouache: error: {exc}", file=sys.stderr)
        if a.debug:
            print(exc.tb, file=sys.stderr)
        return EXIT_USAGE if exc.kind == "usage" else EXIT_RUNTIME
    except KeyboardInterrupt:
        print("gouache: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (GouacheError, OSError) as exc:
        print(
            f"gouache: error: {type(exc).__name__}: {exc}".splitlines()[0] if not a.debug else f"gouache: error: {exc}",
            file=sys.stderr,
        )
        if a.debug:
            traceback.print_exc()
        return EXIT_USAGE if isinstance(exc, InvalidInputError) else EXIT_RUNTIME
    except Exception as exc:  # noqa: BLE001 - an unexpected error: one line, the traceback with --debug
        if a.debug:
            traceback.print_exc()
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(f"gouache: error: {first} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_RUNTIME
