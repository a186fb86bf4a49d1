"""bptt_report: check an implementation of BPTT against PyTorch, and write a report about it.

    import bptt_report
    result = bptt_report.check("mypackage.rnn:bptt", quick=True)   # or a callable; None: manual_bptt.bptt
    assert result.ok, result.summary()
    bptt_report.write_report(result, "report/")                    # report.json, report.md, PNG plots

This package uses both manual_bptt (the numpy implementation) and reference (the PyTorch
oracle); neither of them imports it. The names below are loaded on first use, so that
``bptt_report.cli`` (the command line, including the numpy-only ``train`` command) starts
without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule defining it.
_EXPORTS = {
    "check": "runner",
    "CheckResult": "results",
    "ConfigCheck": "results",
    "Localization": "results",
    "LagStep": "results",
    "ArrayCheck": "compare",
    "SCHEMA_VERSION": "results",
    "write_report": "report",
    "ReportFiles": "report",
    "load_schema": "report",
    "load_target": "targets",
    "TargetError": "targets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
