"""The ``report`` command of ``manual-bptt`` (the parser and the run; manual_bptt_cli wires it in
beside ``train``), and ``python -m bptt_report``, which has the report command alone.

    manual-bptt report [--out DIR] [--target MODULE:FUNCTION] [--seed N] [--examples N] [--jobs N]
                       [--timeout SECONDS] [--quick] [--no-plots] [--no-progress] [--replay CONFIG]
                       [--cell rnn|gru|lstm|all]
                       [--profile quick|default|thorough] [--scheduler ADDRESS|local] [--annotations]
    manual-bptt check-module MODULE:FACTORY --cell rnn|gru|lstm [--lengths] [--device cpu|cuda]
                       [--dtype float64|float32|bfloat16|float16] [--out DIR] [--seed N] [--examples N]
                       [--timeout SECONDS] [--quick] [--no-plots]
    manual-bptt --version

Exit status of ``report`` (EXIT_STATUSES): 0 PASS, 1 FAIL (anything disagrees, or the target
raised, exited, crashed, hung or modified its inputs), 2 usage error (bad arguments, a target
that cannot be loaded, an output location that cannot be written, PyTorch missing), 3
INSUFFICIENT (too little could be checked for PASS), 4 internal error of the checker, 130
interrupted (Ctrl-C or SIGTERM).

This module imports neither torch nor the oracle until a command runs (only the constants its
options name).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from manual_bptt.environment import usable_cpus

from .cells import CELLS
from .errors import UsageError, install_hint
from .module.check import MAX_MODULE_EXAMPLES, MODULE_DTYPES, MODULE_EXAMPLES, MODULE_QUICK_EXAMPLES
from .plan.profiles import PROFILES, THOROUGH
from .plan.sweep import FULL, MAX_EXAMPLES, QUICK
from .run.pool import DEFAULT_TIMEOUT, JOBS_PER_CPU, max_jobs
from .targets.contract import DEFAULT_TARGET

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_INSUFFICIENT, EXIT_INTERNAL = 0, 1, 2, 3, 4
#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: The exit statuses of ``report``, as documented.
EXIT_STATUSES = {
    EXIT_OK: "PASS: everything checked agrees, and enough was checked",
    EXIT_DISAGREE: "FAIL: a disagreement, or the target raised, exited, crashed, hung or changed its inputs",
    EXIT_USAGE: "usage error (arguments, a target that cannot be loaded, an output location not writable)",
    EXIT_INSUFFICIENT: "INSUFFICIENT: nothing disagrees, but too little could be checked for PASS",
    EXIT_INTERNAL: "internal error of the checker (please report it)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); no report written",
}
#: The exit status of each verdict.
EXIT_OF_VERDICT = {"PASS": EXIT_OK, "FAIL": EXIT_DISAGREE, "INSUFFICIENT": EXIT_INSUFFICIENT}
DEFAULT_OUT = "bptt-report"
MAX_DEFAULT_JOBS = 8
#: The files a report writes into DIR (a directory of one of these names is in the way).
REPORT_FILES = ("report.json", "report.md", "report.xml", "errors.png", "state_grads.png", "lag_profile.png")


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _default_jobs() -> int:
    """The CPUs this process may use, at most MAX_DEFAULT_JOBS."""
    return max(1, min(usable_cpus(), MAX_DEFAULT_JOBS))


def _exit_text() -> str:
    return "Exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_STATUSES.items()) + "."


def _add_out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", metavar="DIR", default=default, help=f"output directory (default: {default})")


def _add_timeout(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time one configuration may take in {where} before its process is killed "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="check an implementation of BPTT against PyTorch and write a report",
        description=(
            "Run a sweep of random configurations of each cell (--cell: the Elman RNN, the GRU, the LSTM; "
            "every input form, activation, truncation, reduction, mask, s0, bias, and weight scales from "
            "vanishing to exploding) inside what the target supports, comparing the implementation under "
            "test with the PyTorch autograd oracle, the cell's native torch module (nn.RNN, nn.GRU, "
            "nn.LSTM) where it applies, and central finite differences on a small subset. The target "
            "runs in separate worker processes. Disagreements are localized (array, element, smallest "
            "failing T and configuration, lag). Writes report.json, report.md and PNG plots into DIR."
        ),
        epilog=_exit_text(),
    )
    _add_out(p, DEFAULT_OUT)
    p.add_argument(
        "--target",
        metavar="MODULE:FUNCTION",
        default=DEFAULT_TARGET,
        help="the implementation to check: any callable with manual_bptt.bptt's signature returning "
        f".loss and .grads (default: {DEFAULT_TARGET})",
    )
    p.add_argument("--seed", type=_integer(0), default=0, metavar="N", help="seed of the sweep (default: 0)")
    p.add_argument(
        "--examples",
        type=_integer(1),
        default=None,
        metavar="N",
        help=f"configurations checked against the oracle (default: {FULL.examples}; {QUICK.examples} with "
        f"--quick; at most {MAX_EXAMPLES})",
    )
    p.add_argument(
        "--jobs",
        type=_integer(1),
        default=None,
        metavar="N",
        help=f"worker processes (default: the number of CPUs, at most {MAX_DEFAULT_JOBS}; 1 with --quick; "
        f"at most {JOBS_PER_CPU} x the CPUs; one when the sweep is too small to gain from more; with "
        "--scheduler local: the number of Dask workers)",
    )
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default=None,
        help="size of the sweep: quick (= --quick), default, or thorough "
        f"({THOROUGH.examples} configurations, T up to {THOROUGH.max_T}, H up to {THOROUGH.max_H}, and per "
        f"cell one of T {THOROUGH.large_T}, one of B {THOROUGH.large_B}, one of H {THOROUGH.large_H}; RTRL "
        "and decomposition cross-checks for manual_bptt's own bptt: the sweep worth a cluster). Every "
        f"profile has per cell one configuration of T {QUICK.large_T}, one of B {QUICK.large_B} and one "
        f"of H {QUICK.large_H} at least",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run the sweep on the Dask distributed cluster whose scheduler is at ADDRESS "
        "(e.g. tcp://10.0.0.5:8786), or 'local' for a LocalCluster of --jobs workers here; needs "
        f"{install_hint('dist')}",
    )
    p.add_argument(
        "--annotations",
        action="store_true",
        help="also print a GitHub Actions '::error file=...,title=...::' line for the first failure "
        "of each array",
    )
    _add_timeout(p, "the target")
    p.add_argument(
        "--cell",
        choices=(*CELLS, "all"),
        default="all",
        help="the cell(s) to check: the Elman RNN, the GRU, the LSTM, or all three (default: all; the "
        "examples are split evenly over the cells the target supports)",
    )
    p.add_argument("--quick", action="store_true", help="a small sweep of short sequences (a few seconds)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (a bar on a terminal; otherwise, as in a CI log, a line when each phase "
        "starts, every 10 s and when it ends)",
    )
    p.add_argument(
        "--replay",
        metavar="CONFIG",
        default=None,
        help="run the target on one configuration (the JSON object report.md gives for a failure) against "
        "the oracle, print the comparison, and write nothing",
    )
    p.set_defaults(func=run_report)


DEFAULT_MODULE_OUT = "check-module-report"


def _add_check_module(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-module",
        help="check a PyTorch RNN/GRU/LSTM layer against the float64 reference and write a report",
        description=(
            "Check a PyTorch recurrent layer, built by FACTORY(input_size=D, hidden_size=H, bias=..., "
            "batch_first=True) (torch.nn:LSTM itself is one), against the hand-written reference in "
            "float64: forward (out, h_n, c_n) first, then every parameter's .grad, x.grad, h0.grad "
            "(c0.grad), on random configurations (one or two of them large) with random upstream "
            "gradients, called in train() and eval() mode, with h0 and as m(x), with x requiring grad "
            "and not, on a fresh and on a reused instance. Any num_layers, bidirectional or not, with or "
            "without the LSTM's proj_size, read from the layer's attributes or its parameter names; "
            "with --lengths (or when the layer declares it takes them) batches of variable lengths, "
            "fed as PackedSequences (or as x and lengths= to a forward with a lengths parameter). A "
            "factory that does not take those keywords, or a layer outside the contract, is a usage "
            "error; sizes the factory declines with NotImplementedError are not checked. Below float64 the "
            "module is judged against torch's own nn.RNN/nn.GRU/nn.LSTM at the same dtype and device. "
            "The module runs in separate worker processes. A failure is localized (the way of calling, "
            "smallest T, the upstream step, the lag). Writes report.json, report.md and lag_profile.png "
            "into DIR."
        ),
        epilog=_exit_text(),
    )
    p.add_argument("factory", metavar="MODULE:FACTORY", help="the factory of the layer, e.g. torch.nn:LSTM")
    p.add_argument("--cell", required=True, choices=CELLS, help="the layer's equations")
    p.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N) (default: cpu)")
    p.add_argument(
        "--dtype",
        default="float64",
        choices=MODULE_DTYPES,
        help="the module's parameters and inputs (default: float64)",
    )
    _add_out(p, DEFAULT_MODULE_OUT)
    p.add_argument("--seed", type=_integer(0), default=0, metavar="N", help="seed (default: 0)")
    p.add_argument(
        "--examples", type=_integer(1), default=None, metavar="N",
        help=f"random configurations (default: {MODULE_EXAMPLES}; {MODULE_QUICK_EXAMPLES} with --quick; "
        f"at most {MAX_MODULE_EXAMPLES})",
    )  # fmt: skip
    _add_timeout(p, "the module")
    p.add_argument(
        "--quick", action="store_true", help=f"{MODULE_QUICK_EXAMPLES} configurations of short sequences"
    )
    p.add_argument("--no-plots", action="store_true", help="do not draw lag_profile.png")
    p.add_argument(
        "--lengths", action="store_true", default=None,
        help="batches of variable lengths (automatic for a layer that declares it takes them: a forward "
        "with a lengths parameter, or takes_packed_sequence = True on the factory or the layer)",
    )  # fmt: skip
    p.set_defaults(func=run_check_module)


def run_check_module(args: argparse.Namespace) -> int:
    """The ``check-module`` command: check, write, print the summary; the exit status (EXIT_STATUSES)."""
    return _interruptible("manual-bptt check-module", _run_check_module, args)


def _run_check_module(args: argparse.Namespace) -> int:
    name = "manual-bptt check-module"
    try:
        from .module.check import check_module
        from .module.report import write_module_report
    except ImportError as exc:
        hint = f"{install_hint('report')} ({type(exc).__name__}: {exc})"
        print(f"{name}: needs PyTorch: {hint}", file=sys.stderr)
        return EXIT_USAGE
    t0 = time.perf_counter()
    try:
        out = check_out_dir(args.out)
        result = check_module(
            args.factory, cell=args.cell, device=args.device, dtype=args.dtype, seed=args.seed,
            examples=args.examples, quick=args.quick, timeout=args.timeout, lengths=args.lengths,
        )  # fmt: skip
        files = write_module_report(result, out, plots=not args.no_plots)
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        return _internal_error(name)
    print(result.summary())
    print(f"report: {out}/ ({', '.join(files)}) in {time.perf_counter() - t0:.1f} s")
    return EXIT_OF_VERDICT[result.verdict]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m bptt_report`` with the subcommand report (``manual-bptt``, in
    manual_bptt_cli, adds train beside it)."""
    from manual_bptt import __version__

    parser = argparse.ArgumentParser(
        prog=prog or "manual-bptt",
        description="Hand-written BPTT for the Elman RNN, GRU and LSTM, proven against PyTorch autograd.",
        epilog=f"Start with: manual-bptt report (writes {DEFAULT_OUT}/). {_exit_text()}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_report(sub)
    _add_check_module(sub)
    return parser


def check_out_dir(path: str) -> Path:
    """--out as an absolute path, after making sure a report can be written there.

    Raises:
        UsageError with one line saying what is wrong: a file, a dangling symlink, a parent
        that is a file, no permission, a directory in the way of a report file, ...
    """
    out = Path(os.path.abspath(path))
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {path}: a symbolic link to {os.readlink(out)}, which does not exist")
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {path}: exists and is not a directory")
        for name in REPORT_FILES:
            if (out / name).is_dir():
                raise UsageError(f"--out {path}: {name} inside it is a directory")
        probe_in = out
    else:
        probe_in = out.parent
        ancestor = out.parent
        while not ancestor.exists():
            if ancestor.is_symlink():
                raise UsageError(f"--out {path}: {ancestor} is a symbolic link that leads nowhere")
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise UsageError(f"--out {path}: {ancestor} is not a directory")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {path}: cannot create {out.parent}: {exc.strerror or exc}") from None
    for where in {probe_in, out.parent}:
        try:
            probe = where / f".{out.name}.tmp-probe-{os.getpid()}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            raise UsageError(f"--out {path}: cannot write in {where}: {exc.strerror or exc}") from None
    return out


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` command: check, write, print the summary; the exit status (EXIT_STATUSES).

    SIGTERM is handled like Ctrl-C: the workers are stopped, no temporary files are left, and
    nothing is written.
    """
    return _interruptible("manual-bptt report", _run_report, args)


def _interruptible(name: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)`` with SIGTERM handled like Ctrl-C: either ends it with "NAME: interrupted; no
    report written" and EXIT_INTERRUPTED."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _internal_error(name: str) -> int:
    """Say that the checker itself failed, with the traceback; EXIT_INTERNAL."""
    print(f"{name}: internal error of the checker (please report it):", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    return EXIT_INTERNAL


def _run_report(args: argparse.Namespace) -> int:
    try:
        from . import runner
        from .output.report import write_report
    except ImportError as exc:
        print(
            "manual-bptt report: needs PyTorch (the oracle): "
            f"{install_hint('report')} ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    jobs = args.jobs if args.jobs is not None else (1 if args.quick else _default_jobs())
    try:
        if jobs > max_jobs():
            raise UsageError(
                f"--jobs {jobs}: at most {max_jobs()} ({JOBS_PER_CPU} x the {usable_cpus()} usable CPUs)"
            )
        if args.examples is not None and args.examples > MAX_EXAMPLES:
            raise UsageError(f"--examples {args.examples}: at most {MAX_EXAMPLES}")
        if args.quick and args.profile not in (None, "quick"):
            raise UsageError(f"--quick and --profile {args.profile} contradict each other")
        if args.scheduler is not None:
            from .run.cluster import require_dask

            require_dask()
        if args.replay is not None:
            return _replay(args, runner)
        out = check_out_dir(args.out)
    except UsageError as exc:
        print(f"manual-bptt report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = not args.no_progress  # a bar on a terminal, else a line now and then
    t0 = time.perf_counter()
    try:
        result = runner.check(
            args.target,
            seed=args.seed,
            examples=args.examples,
            quick=args.quick,
            jobs=jobs,
            progress=progress,
            timeout=args.timeout,
            cells=args.cell,
            **_dist_arguments(args),
        )
        files = write_report(result, out, plots=not args.no_plots)
    except UsageError as exc:  # a target that cannot be loaded, a Dask cluster that cannot run it
        print(f"manual-bptt report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        return _internal_error("manual-bptt report")
    print(result.summary())
    if args.annotations:
        from .output.annotations import annotation_lines

        for line in annotation_lines(result):
            print(line)
    print(f"report: {out}/ ({', '.join(files.files)}) in {time.perf_counter() - t0:.1f} s")
    if not files.plots_written and not args.no_plots:
        print(f"note: plots skipped: {files.plots_note}", file=sys.stderr)
    return EXIT_OF_VERDICT[result.verdict]


def _dist_arguments(args: argparse.Namespace) -> dict[str, object]:
    """check()'s profile and scheduler arguments, passed only when given (so a check() without
    them keeps working)."""
    out: dict[str, object] = {}
    if args.profile is not None and not args.quick:
        out["profile"] = args.profile
    if args.scheduler is not None:
        out["scheduler"] = args.scheduler
    return out


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _replay(args: argparse.Namespace, runner) -> int:
    """--replay: the target on one configuration against the oracle, printed; nothing written."""
    try:
        fields = json.loads(args.replay)
        from manual_bptt.problems import RNNConfig

        cfg = RNNConfig(**fields)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"--replay: expected the JSON object of a configuration (as in report.md): {exc}"
        ) from None
    try:
        checks = runner.replay(args.target, cfg, timeout=args.timeout)
    except ValueError as exc:  # UsageError included
        raise UsageError(str(exc)) from None
    failed = False
    for c in checks:
        print(f"{c.kind}: {c.status}" + (f": {c.message}" if c.message else ""))
        if c.traceback:
            print(c.traceback.rstrip())
        failed |= c.status != "pass"
    return EXIT_DISAGREE if failed else EXIT_OK


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
