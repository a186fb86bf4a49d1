"""manual_bptt_cli: the command line ``manual-bptt`` (also ``python -m manual_bptt_cli``).

    manual-bptt report ...     check an implementation of BPTT against PyTorch (bptt_report.cli)
    manual-bptt check-module   check a PyTorch recurrent layer against the reference (bptt_report.cli)
    manual-bptt train ...      train a character-level model with manual_bptt (bptt_train.cli)
    manual-bptt --version

The top of the package graph: it may import every other package of the project, and nothing
imports it. Each command's module is imported inside a function, only when that command is
chosen (or for the top-level help), so ``manual-bptt train`` never imports the checker or torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["EXIT_USAGE", "PROG", "build_parser", "main"]

PROG = "manual-bptt"
EXIT_USAGE = 2
REPORT_HELP = "check an implementation of BPTT against PyTorch and write a report"
CHECK_MODULE_HELP = "check a PyTorch RNN/GRU/LSTM layer against the float64 reference and write a report"
TRAIN_HELP = "train a character-level RNN with manual_bptt (numpy only)"


def _version() -> str:
    from manual_bptt import __version__

    return __version__


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    """The ``report`` subcommand, with the options and the run of bptt_report.cli."""
    from bptt_report.cli import _add_report

    _add_report(sub)


def _add_report_placeholder(sub: argparse._SubParsersAction) -> None:
    """``report`` listed by name only, when another command was chosen (the checker is not loaded)."""
    sub.add_parser("report", help=REPORT_HELP, add_help=False)


def _add_check_module_command(sub: argparse._SubParsersAction) -> None:
    """The ``check-module`` subcommand, with the options and the run of bptt_report.cli."""
    from bptt_report.cli import _add_check_module

    _add_check_module(sub)


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand, with the options and the run of bptt_train.cli."""
    from bptt_train.cli import DESCRIPTION, add_train_arguments, run_train

    p = sub.add_parser("train", help=TRAIN_HELP, description=DESCRIPTION)
    add_train_arguments(p)
    p.set_defaults(func=run_train)


def build_parser(prog: str | None = None, command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``manual-bptt`` with the subcommands report and train.

    Args:
        prog: the program name in usage lines (default ``manual-bptt``).
        command: the subcommand about to be parsed, if known: when it is ``train``, the report
            subcommand is listed without loading bptt_report.
    """
    parser = argparse.ArgumentParser(
        prog=prog or PROG,
        description="Hand-written BPTT for the Elman RNN, GRU and LSTM, proven against PyTorch autograd.",
        epilog=f"Start with: {prog or PROG} report --quick",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command == "train":
        _add_report_placeholder(sub)
        sub.add_parser("check-module", help=CHECK_MODULE_HELP, add_help=False)
    else:
        _add_report_command(sub)
        _add_check_module_command(sub)
    _add_train_command(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line on ``argv`` (default: sys.argv[1:]); the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog, command=args_list[0] if args_list else None)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))
