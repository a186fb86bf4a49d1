"""The target's side of a worker process: it never imports torch or the oracle.

A worker process (bptt_report.run.pool, with ``program(spec)``) runs ``main(spec)``: the worker
loop of bptt_report.run.worker on the target's "module:function" name. ``load`` imports numpy,
manual_bptt and the target and says hello (what the target is, its signature, what it
declares); ``handle`` answers one request (bptt_report.run.protocol). A request names a
configuration (and optionally a prefix length); the worker rebuilds its arrays with
targets.contract.problem_for and hands the target fresh copies. Right after the call, before
anything else runs here, it reads the result as plain arrays, twice (Reply.fields, and
Reply.reread for the second read), then copies the inputs as the call left them
(Reply.inputs). Nothing about them is judged here, where the target could tamper with the
judgment: the checker compares the inputs with its own arrays and the two reads with each
other (bptt_report.targets.replies.verified). The replies carry plain numbers and arrays only
(bptt_report.run.wire), never objects.

Kinds of request:
    "call"    the target's loss and gradients on the problem (or on its first ``prefix`` steps)
    "probe"   the same, where a TypeError for a gated params type means that the target does
              not support the cell
    "fd"      the same, plus central differences of the target's own loss for every entry of
              the parameters, s0 (when given; the LSTM's h and c parts each), dense xs (each
              evaluation on fresh copies too)

Replies name the arrays flat (Reply.fields): loss, the cell's parameters, ds0 (the LSTM: ds0.h
and ds0.c), dxs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manual_bptt.checking import central_differences
from manual_bptt.gated_params import LSTMState
from manual_bptt.problems import Problem

from ..errors import BadResult, TargetError, Unsupported
from ..run.protocol import Hello, Program, Reply, Request
from ..run.worker import Handle, exception_reply, serve
from .contract import (
    DECLARATION,
    TargetOutput,
    accepted_keywords,
    input_arrays,
    invoke,
    load_target,
    problem_for,
    read_output,
    signature_text,
    state_parts,
)

#: Finite-difference step.
FD_EPS = 1e-5


def _param_names(p: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(p))


def _copy_state(s0: Any) -> Any:
    if s0 is None:
        return None
    if isinstance(s0, tuple):
        return LSTMState(s0[0].copy(), s0[1].copy())
    return s0.copy()


def _plain(value: Any) -> tuple[np.ndarray | None, str]:
    """(a plain numeric copy of a returned value, "") or (None, why it cannot be read)."""
    if value is None:
        return None, ""
    try:
        a = np.array(value, copy=True)
    except Exception as exc:  # a target may return anything
        return None, f"cannot be read as an array ({type(exc).__name__}: {exc})"
    if a.dtype.kind not in "fiub":
        return None, f"has dtype {a.dtype}, not a real number type"
    return a, ""


def output_fields(out: TargetOutput, cell: str = "rnn") -> tuple[dict[str, Any], dict[str, str]]:
    """(field -> plain array or None, field -> note for values that cannot be read); the
    LSTM's ds0 as the two fields ds0.h and ds0.c."""
    raw = {"loss": out.loss, **out.grads}
    notes: dict[str, str] = {}
    if cell == "lstm":
        parts = state_parts(out.ds0)
        if out.ds0 is not None and parts is None:
            notes["ds0.h"] = notes["ds0.c"] = (
                f"is a {type(out.ds0).__name__}, not a pair (dh0, dc0) (an LSTMState or a 2-tuple)"
            )
            parts = (None, None)
        raw["ds0.h"], raw["ds0.c"] = parts or (None, None)
    else:
        raw["ds0"] = out.ds0
    raw["dxs"] = out.dxs
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        a, note = _plain(value)
        fields[name] = a
        if note and name not in notes:
            notes[name] = note
    return fields, notes


def read_result(result: Any, cell: str) -> tuple[dict[str, Any], dict[str, str]]:
    """One read of what the target returned: output_fields of read_output (BadResult when it is
    not a result)."""
    return output_fields(read_output(result, cell), cell)


@dataclass
class Called:
    """One call of the target on fresh copies: the result read twice as plain arrays (empty
    when it raised), the inputs as the call left them, and what it raised."""

    fields: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    reread: dict[str, Any] = field(default_factory=dict)
    reread_notes: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None

    def reply(self, **more: Any) -> Reply:
        """The reply: a result ("ok"), or what the target did instead; the inputs with either."""
        back = {"inputs": self.inputs}
        if self.error is not None:
            return dataclasses.replace(_reply_for(self.error), **back)
        return Reply(status="ok", fields=self.fields, notes=self.notes, reread=self.reread,
                     reread_notes=self.reread_notes, **back, **more)  # fmt: skip


def _reply_for(exc: BaseException) -> Reply:
    """What the target did instead of returning a result, as a reply."""
    if isinstance(exc, Unsupported):
        return Reply(status="unsupported", keywords=tuple(exc.keywords), message=str(exc), detail=exc.detail)
    if isinstance(exc, BadResult):
        return Reply(status="bad_result", message=str(exc))
    return exception_reply(exc)


def _copies(prob: Problem) -> tuple[Any, np.ndarray, np.ndarray, Any, np.ndarray | None]:
    """Fresh copies of the problem's arrays: (params, xs, ys, s0, mask)."""
    p = prob.params
    params = type(p)(**{n: None if (a := getattr(p, n)) is None else a.copy() for n in _param_names(p)})
    mask = None if prob.mask is None else prob.mask.copy()
    return params, prob.xs.copy(), prob.ys.copy(), _copy_state(prob.s0), mask


def call_on_copies(
    fn: Callable[..., Any], prob: Problem, truncate: Any = "keep", *, probe: bool = False
) -> Called:
    """The target on fresh copies of the problem's arrays (``truncate`` overriding the
    configuration's unless "keep"): its result read twice, right after the call, then its
    inputs copied (see the module docstring)."""
    copies, xs, ys, s0, mask = _copies(prob)
    kw = {**prob.kwargs(), "s0": s0, "mask": mask}
    if truncate != "keep":
        kw["truncate"] = truncate
    called = Called()
    try:
        result = invoke(fn, copies, xs, ys, kw, probe=probe)
        called.fields, called.notes = read_result(result, prob.cfg.cell)
        called.reread, called.reread_notes = read_result(result, prob.cfg.cell)
    except (Exception, SystemExit) as exc:  # the checker judges what the target did
        called.error = exc
    finally:
        after = input_arrays(copies, xs, ys, s0, mask)
        called.inputs = {n: _plain(a)[0] if isinstance(a, np.ndarray) else a for n, a in after.items()}
    return called


def _loss(fn: Callable[..., Any], prob: Problem) -> float:
    """The target's loss on fresh copies of the problem's arrays (full BPTT)."""
    copies, xs, ys, s0, mask = _copies(prob)
    kw = {**prob.kwargs(), "s0": s0, "mask": mask, "truncate": None}
    out = read_output(invoke(fn, copies, xs, ys, kw), prob.cfg.cell)
    return float(np.asarray(out.loss, dtype=np.float64))


def _fd(fn: Callable[..., Any], prob: Problem, called: Called) -> dict[str, np.ndarray]:
    """Central differences of the target's own loss for every entry of the parameters, s0 (the
    LSTM's h and c parts each) and dense xs (s0 and xs only where the target returned ds0, dxs)."""
    p = prob.params

    def loss(params: Any = p, xs: Any = prob.xs, s0: Any = prob.s0) -> float:
        q = Problem(cfg=prob.cfg, params=params, xs=np.array(xs), ys=prob.ys, s0=s0, mask=prob.mask)
        return _loss(fn, q)

    numeric: dict[str, np.ndarray] = {}
    for name, value in p.items():
        numeric[name] = central_differences(
            lambda a, name=name: loss(params=p.replace(**{name: np.array(a)})), value, eps=FD_EPS
        )
    def gave(name: str) -> bool:
        return called.fields.get(name) is not None or name in called.notes

    gave_ds0 = any(gave(n) for n in ("ds0", "ds0.h", "ds0.c"))
    if isinstance(prob.s0, tuple) and gave_ds0:
        h0, c0 = prob.s0
        numeric["ds0.h"] = central_differences(lambda a: loss(s0=LSTMState(np.array(a), c0)), h0, eps=FD_EPS)
        numeric["ds0.c"] = central_differences(lambda a: loss(s0=LSTMState(h0, np.array(a))), c0, eps=FD_EPS)
    elif prob.s0 is not None and gave_ds0:
        numeric["ds0"] = central_differences(lambda a: loss(s0=a), prob.s0, eps=FD_EPS)
    if not prob.cfg.tokens and gave("dxs"):
        numeric["dxs"] = central_differences(lambda a: loss(xs=a), prob.xs, eps=FD_EPS)
    return numeric


def handle(fn: Callable[..., Any], request: Request) -> Reply:
    """The reply to one request (see the module docstring)."""
    cfg = request.config
    prob = problem_for(cfg, request.prefix)
    if prob is None:
        return Reply(status="skipped")
    if request.kind != "fd":
        return call_on_copies(fn, prob, probe=request.kind == "probe").reply()
    called = call_on_copies(fn, prob, None)
    if called.error is not None:
        return called.reply()
    try:
        numeric = _fd(fn, prob, called)
    except (Exception, SystemExit) as exc:
        return dataclasses.replace(_reply_for(exc), inputs=called.inputs)
    return called.reply(numeric=numeric)


def load(spec: str) -> tuple[Handle | None, Hello]:
    """Load the target: (its handler, the hello) or (None, the error)."""
    try:
        fn = load_target(spec)
    except TargetError as exc:
        return None, Hello(status="error", message=str(exc))
    except BaseException as exc:  # a target module may even call sys.exit
        return None, Hello(status="error", message=f"--target {spec}: importing it raised {exc!r}")
    declared = getattr(fn, DECLARATION, None)
    try:
        declared_value = None if declared is None else _jsonable(declared)
        declared_error = ""
    except ValueError as exc:
        declared_value, declared_error = None, str(exc)
    keywords = accepted_keywords(fn)
    hello = Hello(
        status="ready",
        signature=signature_text(fn),
        keywords=None if keywords is None else tuple(sorted(keywords)),
        declared=declared_value,
        declared_error=declared_error,
    )
    return functools.partial(handle, fn), hello


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(f"{DECLARATION}: cannot read a {type(value).__name__} in the declaration")


def main(spec: str) -> None:
    """A target's worker process (bptt_report.run.pool's BOOT): the worker loop on the target ``spec``."""
    serve(lambda: load(spec))


def program(spec: str) -> Program:
    """What a worker process of the target ``spec`` ("module:function") runs, and how the
    checker judges each of its replies (targets.replies.verified, imported here: the worker
    process itself never needs it)."""
    from .replies import verified

    return Program(main, spec, f"--target {spec}", check=verified)
