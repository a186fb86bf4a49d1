"""check-module's session with a module under test: the worker process that runs the module, and
each case evaluated (the module's reply, the reference and the baseline of bptt_report.module.cases
on the case as the module was called, the verdict per array). Shared by the check
(bptt_report.module.check) and the localization (bptt_report.module.localize), which both import it.

A reply "usage" (the factory or the module cannot take the contract), or a forward that raised
what bptt_report.module.contract.forward_mismatch recognises as a contract mismatch, ends the
check with a UsageError naming the likely cause; "unsupported" (sizes the factory declines) is
not evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..judge.compare import ArrayCheck, compare_module_arrays
from ..run import threads
from ..run.pool import WorkerPool
from ..run.protocol import Reply, Request
from . import contract
from .cases import FORWARD, as_called, baseline, reference
from .worker import program


# ---------------------------------------------------------------------------------------------
# Evaluation of cases through the pool
# ---------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """One case: the module's reply, the reference, the baseline and the array verdicts."""

    case: dict[str, Any]
    reply: Reply
    used: dict[str, Any] | None = None  # the case as the module was called (cases.as_called)
    ref: dict[str, np.ndarray] | None = None
    base: dict[str, np.ndarray] | None = None
    errors: list[ArrayCheck] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply.status

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return self.reply.arrays

    def failing(self) -> list[str]:
        return [e.name for e in self.errors if not e.passed]

    def forward_failing(self) -> list[str]:
        return [n for n in self.failing() if n in FORWARD]

    @property
    def agrees(self) -> bool:
        return self.status == "ok" and not self.failing() and not self.reply.mutated


class Session:
    """A running check: the worker pool, the settings, and what it has learnt of the module. A
    context manager: its worker starts on entering (TargetError, a UsageError, when the factory
    cannot be loaded) and stops on leaving."""

    def __init__(self, spec: str, cell: str, dtype: str, device: str, timeout: float) -> None:
        self.cell, self.dtype, self.device = cell, dtype, device
        self.settings = {"factory": spec, "cell": cell, "dtype": dtype, "device": device}
        self.pool = WorkerPool(program(self.settings), workers=1, timeout=timeout)
        self.activation = "tanh"
        self._activation_read = False

    def __enter__(self) -> Session:
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.__exit__(*exc)

    def _read_activation(self, nl: Any) -> None:
        """The Elman module's nonlinearity (its attribute, as torch.nn.RNN has it)."""
        spec = self.settings["factory"]
        if nl is None:
            raise UsageError(
                f"{spec}: the Elman module needs an attribute nonlinearity ('tanh' or 'relu'), as "
                "torch.nn.RNN has"
            )
        if nl not in ("tanh", "relu"):
            raise UsageError(f"{spec}: nonlinearity {nl!r}: expected 'tanh' or 'relu'")
        self.activation, self._activation_read = nl, True

    def evaluate(self, cases: Sequence[dict[str, Any]]) -> list[Evaluation]:
        """Run the module on every case (in the workers), then the reference and the baseline here
        (on THREADS threads: bptt_report.run.threads)."""
        replies = self.pool.run([Request("run", c) for c in cases])
        spec = self.settings["factory"]
        for case, reply in zip(cases, replies, strict=True):
            if reply.status == "usage":
                raise UsageError(f"{spec}: {reply.message}")
            if reply.status == "raised" and (cause := contract.forward_mismatch(reply.message, case)):
                raise UsageError(
                    f"{spec}: the forward, called with x ({case['B']}, {case['T']}, {case['D']}) and "
                    f"h0 (1, {case['B']}, {case['H']}), raised {reply.exception}: {reply.message}: {cause}"
                )
        if self.cell == "rnn" and not self._activation_read:
            first = next((r for r in replies if r.status == "ok"), None)
            if first is not None:
                self._read_activation(first.nonlinearity)
        evals = [Evaluation(case=case, reply=reply) for case, reply in zip(cases, replies, strict=True)]
        with threads.fixed():  # the thread rule: as in the module's worker (and the report's references)
            for ev in evals:
                if ev.status == "ok":
                    ev.used, skipped = as_called(ev.case, ev.reply.arrays)
                    ref = reference(self.cell, self.activation, ev.used)
                    ev.ref = {k: v for k, v in ref.items() if k not in skipped}
                    if self.dtype != "float64":
                        ev.base = baseline(self.cell, self.activation, self.settings, ev.used)
                    ev.errors = compare_module_arrays(ev.arrays, ev.ref, ev.base, self.dtype)
        return evals
