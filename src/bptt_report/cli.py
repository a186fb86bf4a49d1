"""The command line ``manual-bptt`` (also ``python -m bptt_report`` and ``python -m manual_bptt``).

    manual-bptt report [--out DIR] [--target MODULE:FUNCTION] [--seed N] [--examples N] [--jobs N]
                       [--quick] [--no-plots] [--no-progress]
    manual-bptt train ...        the numpy-only training loop of manual_bptt.train

Exit status of ``report``: 0 when everything agrees, 1 when anything disagrees, 2 on a usage
error (bad arguments, a target that cannot be loaded, PyTorch missing, --out not a directory).

This module imports neither torch nor the report machinery until a command needs them, so
``manual-bptt train`` runs with numpy alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE = 0, 1, 2
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "bptt-report"
MAX_DEFAULT_JOBS = 8


def _integer(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
        return value

    parse.__name__ = f"integer >= {least}"
    return parse


def _default_jobs() -> int:
    """The CPUs this process may use, at most MAX_DEFAULT_JOBS."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, MAX_DEFAULT_JOBS))


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="check an implementation of BPTT against PyTorch and write a report",
        description=(
            "Run a sweep of random configurations (every input form, activation, truncation, reduction, "
            "mask, s0, bias, and weight scales from vanishing to exploding), comparing the implementation "
            "under test with the PyTorch autograd oracle, torch.nn.RNN where it applies, and central finite "
            "differences on a small subset. Disagreements are localized (array, element, smallest failing "
            "T and configuration, lag). Writes report.json, report.md and PNG plots into DIR. "
            "Exit status: 0 all agree, 1 something disagrees, 2 usage error."
        ),
    )
    p.add_argument(
        "--out", metavar="DIR", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    p.add_argument(
        "--target",
        metavar="MODULE:FUNCTION",
        default="manual_bptt:bptt",
        help="the implementation to check: any callable with manual_bptt.bptt's signature returning "
        ".loss and .grads (default: manual_bptt:bptt)",
    )
    p.add_argument("--seed", type=_integer(0), default=0, metavar="N", help="seed of the sweep (default: 0)")
    p.add_argument(
        "--examples",
        type=_integer(1),
        default=None,
        metavar="N",
        help="configurations checked against the oracle (default: 3000; 32 with --quick)",
    )
    p.add_argument(
        "--jobs",
        type=_integer(1),
        default=None,
        metavar="N",
        help=f"worker processes (default: the number of CPUs, at most {MAX_DEFAULT_JOBS}; 1 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a small sweep of short sequences (a few seconds)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when stderr is not a terminal)"
    )
    p.set_defaults(func=run_report)


def _add_train(sub: argparse._SubParsersAction) -> None:
    help_text = "train an RNN with manual_bptt (numpy only)"
    try:
        train = importlib.import_module("manual_bptt.train")
    except ModuleNotFoundError as exc:
        if exc.name != "manual_bptt.train":
            raise
        p = sub.add_parser("train", help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_train_missing)
        return
    p = sub.add_parser(
        "train", help=help_text, description=(train.__doc__ or help_text).strip().splitlines()[0]
    )
    train.add_train_arguments(p)
    p.set_defaults(func=train.run_train)


def _train_missing(args: argparse.Namespace) -> int:
    print("manual-bptt train: this installation has no manual_bptt.train module", file=sys.stderr)
    return EXIT_USAGE


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``manual-bptt`` with the subcommands report and train."""
    parser = argparse.ArgumentParser(
        prog=prog or "manual-bptt",
        description="Hand-written BPTT for the Elman RNN, proven against PyTorch autograd.",
        epilog="Start with: manual-bptt report --out report",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_report(sub)
    _add_train(sub)
    return parser


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` command: check, write, print the summary; the exit status."""
    try:
        from .report import write_report
        from .runner import check
        from .targets import TargetError, load_target
    except ImportError as exc:
        print(
            "manual-bptt report: needs PyTorch (the oracle) and hypothesis: "
            f"pip install 'manual-bptt[report]' ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from pathlib import Path

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"manual-bptt report: --out {out}: exists and is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        load_target(args.target)
    except TargetError as exc:
        print(f"manual-bptt report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    jobs = args.jobs if args.jobs is not None else (1 if args.quick else _default_jobs())
    progress = not args.no_progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    try:
        result = check(
            args.target,
            seed=args.seed,
            examples=args.examples,
            quick=args.quick,
            jobs=jobs,
            progress=progress,
        )
        files = write_report(result, out, plots=not args.no_plots)
    except KeyboardInterrupt:
        print("manual-bptt report: interrupted; no report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(result.summary())
    print(f"report: {out}/ ({', '.join(files.files)}) in {time.perf_counter() - t0:.1f} s")
    if not files.plots_written and not args.no_plots:
        print(f"note: plots skipped: {files.plots_note}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_DISAGREE


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line on ``argv`` (default: sys.argv[1:]); the exit status."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
