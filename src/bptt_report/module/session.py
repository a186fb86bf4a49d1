"""check-module's session with a module under test: the worker process that runs the module, the
module's Shape for each size (asked of the worker, once per size), and each case evaluated (the
module's reply, the reference and the baseline of bptt_report.module.cases on the case as the
module was called, the verdict per array). Shared by the check (bptt_report.module.check) and the
localization (bptt_report.module.localize), which both import it.

A reply "usage" (the factory or the module cannot take the contract), or a forward that raised
what bptt_report.module.contract.forward_mismatch recognises as a contract mismatch, ends the
check with a UsageError naming the likely cause; "unsupported" (sizes the factory declines) is
not evaluated.

Variable lengths (``lengths``): True draws them for every module (fed as it declares, else as
PackedSequences), None when the module declares it takes them (contract.declared_feed), False
never.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..judge.compare import ArrayCheck, compare_module_arrays
from ..run import threads
from ..run.pool import BATCH, WorkerPool
from ..run.protocol import Reply, Request
from . import contract
from .cases import FORWARD, as_called, baseline, reference
from .contract import Shape
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


#: Requests given to the pool at a time: one of its batches.
CHUNK = BATCH


def _described(fields: dict[str, Any]) -> contract.LayerConfig:
    """The configuration a "describe" reply gives (module.worker.describe): num_layers >= 1,
    bidirectional, 0 <= proj_size, each a 0-d integer array; UsageError for anything else (the
    worker runs the module's code)."""
    values = {}
    for name, low in (("num_layers", 1), ("bidirectional", 0), ("proj_size", 0)):
        v = fields.get(name)
        if not (isinstance(v, np.ndarray) and v.shape == () and v.dtype.kind in "iu" and int(v) >= low):
            raise UsageError(f"the module's configuration could not be read: {name} is {v!r}")
        values[name] = int(v)
    return contract.LayerConfig(
        num_layers=values["num_layers"], bidirectional=values["bidirectional"] == 1,
        proj_size=values["proj_size"],
    )  # fmt: skip


class Session:
    """A running check: the worker pool, the settings, and what it has learnt of the module. A
    context manager: its worker starts on entering (TargetError, a UsageError, when the factory
    cannot be loaded) and stops on leaving."""

    def __init__(
        self, spec: str, cell: str, dtype: str, device: str, timeout: float, lengths: bool | None = None
    ) -> None:
        self.cell, self.dtype, self.device = cell, dtype, device
        self.settings = {"factory": spec, "cell": cell, "dtype": dtype, "device": device}
        self.pool = WorkerPool(program(self.settings), workers=1, timeout=timeout)
        self.activation = "tanh"
        self._activation_read = False
        self.lengths = lengths
        self._shapes: dict[tuple[int, int, bool], Shape] = {}
        self._last_shape = Shape()

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

    def shape_of(self, D: int, H: int, bias: bool) -> Shape:
        """The Shape of the module the factory builds for input_size D, hidden_size H and ``bias``
        (asked of the worker once per size): its layers, directions and projection, and how it
        is fed variable lengths. Sizes the factory declines (or a factory that raises) take the
        shape last read: their run is declined (or raises) in its turn."""
        key = (D, H, bias)
        if key in self._shapes:
            return self._shapes[key]
        (reply,) = self.pool.run([Request("describe", {"D": D, "H": H, "bias": bias})])
        spec = self.settings["factory"]
        if reply.status == "usage":
            raise UsageError(f"{spec}: {reply.message}")
        if reply.status != "ok":
            return self._last_shape
        if self.cell == "rnn" and not self._activation_read:
            self._read_activation(reply.nonlinearity)
        declared = reply.detail if reply.detail in contract.FEEDS else None
        feed = None if self.lengths is False or (self.lengths is None and declared is None) else (
            declared or "packed"
        )
        shape = contract.shape_of(_described(reply.fields), feed)
        self._shapes[key] = self._last_shape = shape
        return shape

    def _run(self, requests: list[Request]) -> list[Reply]:
        """The pool's replies to ``requests``, asked CHUNK at a time: one batch in flight, so that
        the worker never waits to write large replies while the pool waits to write the next
        large batch (both pipes full: a hang, seen with the large configurations' prefixes)."""
        replies: list[Reply] = []
        for i in range(0, len(requests), CHUNK):
            replies += self.pool.run(requests[i : i + CHUNK])
        return replies

    def evaluate(self, cases: Sequence[dict[str, Any]]) -> list[Evaluation]:
        """Run the module on every case (in the workers), then the reference and the baseline here
        (on THREADS threads: bptt_report.run.threads)."""
        replies = self._run([Request("run", c) for c in cases])
        spec = self.settings["factory"]
        for case, reply in zip(cases, replies, strict=True):
            if reply.status == "usage":
                raise UsageError(f"{spec}: {reply.message}")
            if reply.status == "raised" and (cause := contract.forward_mismatch(reply.message, case)):
                shape = contract.case_shape(case)
                h0 = f"({shape.rows}, {case['B']}, {shape.out_size(case['H'])})"
                fed = {"packed": " as a PackedSequence", "lengths": " and lengths"}.get(str(shape.feed), "")
                raise UsageError(
                    f"{spec}: the forward, called with x ({case['B']}, {case['T']}, {case['D']}){fed} and "
                    f"h0 {h0}, raised {reply.exception}: {reply.message}: {cause}"
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
