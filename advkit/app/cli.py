"""The ``advkit`` command: a thin shell over the Python API.

Each subcommand registers itself: ``register(subparsers)`` in each module of :data:`PARTS`
adds a parser whose ``func(args) -> int`` does the work.

A user's mistake (a missing or unreadable file, an unknown name, a bad number, a device this
machine lacks, an output folder that cannot be written) is answered here, in one place: one line
``advkit: error: ...`` on stderr and exit status 2; so is finished work that could not be written
where asked (:class:`advkit.outputs.OutputError`, which says where it was saved instead). Only the
exceptions that mean "this input is wrong" are answered so (:data:`USER_ERRORS`); anything else
is a bug and keeps its traceback. ``-v`` or the environment variable ``ADVKIT_TRACEBACK=1``
prints the traceback of a user error too.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import NoReturn

import torch

from .. import __version__
from ..attacks.errors import GradientMaskingError
from ..devices import device_problem
from ..distributed import group_from_environment
from ..outputs import OutputError
from .usage import UsageError

PARTS = ("advkit.app.evaluate_cli", "advkit.app.defend_cli", "advkit.app.gan_cli", "advkit.app.certify_cli")
TRACEBACK_ENV = "ADVKIT_TRACEBACK"
#: Longest message printed for a user error; the rest is behind ``-v``.
MAX_MESSAGE = 600
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


#: Exceptions that mean the user's input is wrong: answered with one line and exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
    GradientMaskingError, OutputError,
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line, answered by :func:`main`)
    instead of a usage block and ``sys.exit``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="advkit",
                    description="Adversarial robustness for PyTorch: attack, evaluate, defend, train GANs.")
    parser.add_argument("--version", action="version", version=f"advkit {__version__} (torch {torch.__version__})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():  # `advkit evaluate ... -v` works as well as `advkit -v evaluate ...`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as advkit -v")
    return parser


def check_device(name: str | None) -> None:
    """Raise :class:`UsageError` unless ``name`` (a ``--device`` value; None means automatic) is a
    device this machine has."""
    problem = None if name is None else device_problem(name)
    if problem:
        raise UsageError(f"--device {problem}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status on success and
    raises ``SystemExit(2)`` after a one-line message when the input is wrong."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = bool(os.environ.get(TRACEBACK_ENV)) or any(a in ("-v", "--verbose") for a in argv)
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        check_device(getattr(args, "device", None))
        with group_from_environment():  # under torchrun: one process group for the whole command
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        _fail(err, verbose)
    except KeyboardInterrupt:
        print("advkit: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def _fail(err: BaseException, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    message = " ".join(str(err).split()) or type(err).__name__
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "... (the whole message with -v)"
    print(f"advkit: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
