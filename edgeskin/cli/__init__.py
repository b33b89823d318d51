"""The ``edgeskin`` command.

Each subcommand is a module ``edgeskin.cli.<name>`` with two functions::

    def add_parser(subparsers) -> argparse.ArgumentParser   # registers itself on the subparsers
    def run(args: argparse.Namespace) -> int                # does the work, returns the exit status

To add one, write the module and add its name to :data:`SUBCOMMANDS`. A listed module that is absent is
skipped, so the command works while parts are still being written. Modules import heavy dependencies
inside ``run`` only, which keeps ``edgeskin --help`` fast.

Errors: an :class:`~edgeskin.errors.EdgeskinError` becomes one line ``edgeskin: error: <message>`` on
stderr and exit status 2, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from edgeskin.errors import EdgeskinError

PROG = "edgeskin"
SUBCOMMANDS: tuple[str, ...] = ("predict", "classify", "info", "evaluate", "run", "kiosk", "ui", "bench")
EXIT_ERROR = 2

logger = logging.getLogger("edgeskin")


def _load_subcommand(name: str) -> ModuleType | Exception | None:
    """The subcommand's module; None when it does not exist; the exception when it fails to import."""
    module_name = f"{__name__}.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        return exc
    except Exception as exc:  # a broken subcommand must not take the others down with it
        return exc


def _add_common_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # Sub-parsers use SUPPRESS so that "edgeskin --debug classify" is not reset by the sub-parser's default.
    default = (lambda value: value) if top_level else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks of errors")
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="log more (-v: info, -vv: debug)")


def _broken_subcommand(name: str, error: Exception):
    def run(args: argparse.Namespace) -> int:
        raise EdgeskinError(f"the '{name}' command is unavailable: {type(error).__name__}: {error}")

    return run


def build_parser() -> argparse.ArgumentParser:
    """The ``edgeskin`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Skin-lesion detection and classification with INT8 TFLite models on small devices.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_common_options(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        loaded = _load_subcommand(name)
        if loaded is None:
            continue
        before = set(subparsers.choices)
        if isinstance(loaded, Exception):
            sub = subparsers.add_parser(name, help=f"(unavailable: {type(loaded).__name__})")
            sub.set_defaults(_run=_broken_subcommand(name, loaded))
        else:
            loaded.add_parser(subparsers)
            for added in set(subparsers.choices) - before:
                subparsers.choices[added].set_defaults(_run=loaded.run)
        for added in set(subparsers.choices) - before:
            _add_common_options(subparsers.choices[added], top_level=False)
    return parser


def _version() -> str:
    import edgeskin

    return edgeskin.__version__


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def report_error(error: BaseException) -> str:
    """Print ``error`` as the one ``edgeskin: error:`` line on stderr and return its message.

    For subcommands that report a bad input, skip it and go on with the others.
    """
    message = _one_line(error)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edgeskin`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    _configure_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except EdgeskinError as exc:
        if args.debug:
            raise
        report_error(exc)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. an --out folder that cannot be written
        if args.debug:
            raise
        report_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["SUBCOMMANDS", "build_parser", "main", "report_error"]
