"""bptt_report: check an implementation of BPTT against PyTorch, and write a report about it.

    import bptt_report
    result = bptt_report.check("mypackage.rnn:bptt", quick=True)   # or a callable; None: manual_bptt.bptt
    assert result.ok, result.summary()
    r = bptt_report.check_module("torch.nn:LSTM", cell="lstm", dtype="float32")  # a PyTorch layer
    r.assert_ok()
    bptt_report.write_report(result, "report/")                    # report.json, report.md, PNG plots

Two products: ``manual-bptt report`` (check: a BPTT function, the *target*, against the oracle,
the native torch module and finite differences) and ``manual-bptt check-module`` (check_module:
a PyTorch recurrent layer against the hand-written float64 reference). The code under test always
runs in worker processes of its own; every check that decides a verdict runs here. The map, from
the bottom up (each part imports only parts listed before it, and manual_bptt, reference, torch):

    errors.py     every exception, under one root (UsageError: exit status 2)
    cells.py      the three cells as both products name them: gate names, the native torch module
    run/          running the code under test, for both products
      protocol      Program, Request, Reply, Hello: the messages between the checker and a worker
      wire          how a worker's messages travel: JSON and raw arrays, never a pickle
      worker        the one loop of every worker process
      supervisor    between the checker and each worker: ends it and everything it started
      pool          the local worker processes (WorkerPool, a context manager)
      signals       Ctrl-C and SIGTERM belong to the checker
      threads       the thread rule of every process that computes for a sweep
      cluster       the sweep on a Dask cluster
    targets/      the implementation under test
      contract      what a target is: input forms, options, its declaration, loading, calling it
      worker        its side of a worker process (never imports torch or the oracle)
      replies       its reply read: the arrays, or what it did instead (raised, crashed, ...)
      probe         what it supports, per cell
      methods       manual_bptt's other derivations, as targets (the cross-checks)
    plan/         what is checked: the sweep's configurations (sweep), its sizes (profiles)
    judge/        the verdict
      compare       one array against a reference: the tolerances (both products)
      references    the oracle's and the native module's results
      checks        one configuration judged from the target's reply
      crosschecks   manual_bptt's other derivations against the same references
      localize      where a disagreement sits (and the shortest failing prefix, for both products)
      coverage      what PASS needs besides agreement
      results       CheckResult and its parts, the verdict, their JSON form
    output/       what a check writes: report (the files, report.json), markdown (report.md),
                  junit (report.xml), annotations (GitHub ::error lines), plots, regimes (their
                  sample models)
    module/       check-module: contract (what a layer must be, its shape, what is not checked,
                  the likely cause of a mismatch), worker (its side of a worker: the layer built,
                  described and called), cases (the random cases and the ways of calling, the
                  float64 reference, the baseline), session (running and evaluating them), layers
                  (a stack's arrays by layer and direction), check (check_module), localize, report
    runner.py     check() as its phases: probe, plan, run, judge, cross-check, localize; replay()
    cli.py        the command line (manual-bptt report / check-module, python -m bptt_report)

Where a change goes: a tolerance, judge/compare.py; what PASS requires, judge/coverage.py; a new
option or input form of the target contract, targets/contract.py (what it is), plan/sweep.py (how
often it is drawn) and targets/probe.py (its probe); a new kind of request, run/protocol.py and
the product's worker; a line of report.md, output/markdown.py; the layer contract of
check-module (and what it does not check yet), module/contract.py.

The public names below are imported on first use (plain imports inside __getattr__), so that a
worker process, which imports this package to reach bptt_report.targets.worker, never loads
torch or the oracle.
"""

from __future__ import annotations

from typing import Any

from .errors import TargetError as TargetError

__all__ = sorted(
    [
        "ArrayCheck", "CheckResult", "ConfigCheck", "LagStep", "Localization", "ReportFiles",
        "SCHEMA_VERSION", "TargetError", "check", "load_schema", "load_target", "write_report",
        "check_module", "ModuleCheckResult", "write_module_report",
    ]
)  # fmt: skip


def __getattr__(name: str) -> Any:
    """A public name, from its module (imported now, on first use)."""
    if name == "check":
        from . import runner as module
    elif name in ("check_module", "ModuleCheckResult"):
        from .module import check as module
    elif name == "write_module_report":
        from .module import report as module
    elif name in ("CheckResult", "ConfigCheck", "Localization", "LagStep", "SCHEMA_VERSION"):
        from .judge import results as module
    elif name == "ArrayCheck":
        from .judge import compare as module
    elif name in ("write_report", "ReportFiles", "load_schema"):
        from .output import report as module
    elif name == "load_target":
        from .targets import contract as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
