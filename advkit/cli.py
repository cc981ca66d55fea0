"""The ``advkit`` command: a thin shell over the Python API.

Each part registers its own subcommand: ``register(subparsers)`` in ``advkit.<part>.cli``
adds a parser whose ``func(args) -> int`` does the work.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

PARTS = ("advkit.evaluation.cli", "advkit.gan.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advkit", description="Adversarial robustness for PyTorch: attack, evaluate, defend, train GANs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
