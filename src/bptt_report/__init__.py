"""bptt_report: check an implementation of BPTT against PyTorch, and write a report about it.

    import bptt_report
    result = bptt_report.check("mypackage.rnn:bptt", quick=True)   # or a callable; None: manual_bptt.bptt
    assert result.ok, result.summary()
    r = bptt_report.check_module("torch.nn:LSTM", cell="lstm", dtype="float32")  # a PyTorch layer
    r.assert_ok()
    bptt_report.write_report(result, "report/")                    # report.json, report.md, PNG plots

This package uses both manual_bptt (the numpy implementation) and reference (the PyTorch
oracle); neither of them imports it. The names below are loaded on first use, so that
the target's worker processes (bptt_report.targets.worker) never import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = sorted(
    [
        "ArrayCheck", "CheckResult", "ConfigCheck", "LagStep", "Localization", "ReportFiles",
        "SCHEMA_VERSION", "TargetError", "check", "load_schema", "load_target", "write_report",
        "check_module", "ModuleCheckResult", "write_module_report",
    ]
)  # fmt: skip


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module on first use (plain imports, run late so
    that a worker process that imports bptt_report.targets.worker never loads torch)."""
    if name == "check":
        from .runner import check as value
    elif name in ("check_module", "ModuleCheckResult"):
        from .module import check as module

        value = getattr(module, name)
    elif name == "write_module_report":
        from .module.report import write_module_report as value
    elif name in ("CheckResult", "ConfigCheck", "Localization", "LagStep", "SCHEMA_VERSION"):
        from .judge import results as module

        value = getattr(module, name)
    elif name == "ArrayCheck":
        from .judge.compare import ArrayCheck as value
    elif name in ("write_report", "ReportFiles", "load_schema"):
        from .output import report as module

        value = getattr(module, name)
    elif name in ("load_target", "TargetError"):
        from .targets import contract as module

        value = getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
