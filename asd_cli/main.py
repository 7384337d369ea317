"""Entry point of the ``asd`` command."""

from __future__ import annotations

import argparse
import importlib
import sys

from contract.errors import AsdError

# Subcommand modules, in the order `asd --help` lists them.
SUBCOMMAND_MODULES = [
    "asd_cli.quantize",
    "asd_cli.isa",
    "asd_cli.evaluate",
    "asd_cli.demo",
    "asd_cli.compile",
    "asd_cli.export",
    "asd_cli.hwreport",
    "asd_cli.sweep",
]


class UserError(AsdError):
    """A problem with the user's input, said in the command's terms: printed as one line,
    exit status 2 (as is any other :class:`AsdError` a command lets through)."""


def require_counts(args: argparse.Namespace, *names: str) -> None:
    """Each option of ``names`` that was given is a positive count (``--limit -3`` would
    otherwise slice away the last three images instead of keeping the first)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value}: expected a positive count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asd",
        description=(
            "Quantize trained CNNs to approximate signed digits (ASD) without retraining, "
            "compile them for a multiplier-less shift-add accelerator, and run them on the "
            "golden emulator or the RTL."
        ),
        epilog="Run 'asd COMMAND --help' for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AsdError as exc:
        # Every deliberate error (bad input, a program fault, a missing simulator) is one line;
        # anything else is a bug and keeps its traceback.
        print(f"asd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    # Run the copy that subcommands import, so `UserError` is one class under one name.
    from asd_cli.main import main as _main

    sys.exit(_main())
