"""The target's side of a worker process: it never imports torch or the oracle.

A worker process (bptt_report.run.pool, with ``program(spec)``) runs ``main(spec)``: the worker
loop of bptt_report.run.worker on the target's "module:function" name. ``load`` imports numpy,
manual_bptt and the target and says hello (what the target is, its signature, what it
declares); ``handle`` answers one request (bptt_report.run.protocol). A request names a
configuration (and optionally a prefix length); the worker rebuilds its arrays with
targets.contract.problem_for, hands the target fresh copies, and compares every input
(the parameters: U, W, V, b, c, or U, W, b_ih, b_hh, V, c for a gated cell; xs, ys, mask,
s0, the LSTM's as s0.h and s0.c) bitwise before and after the call: a change is reported as
such. The replies carry plain numbers and arrays only (bptt_report.run.wire), never objects.

Kinds of request:
    "call"    the target's loss and gradients on the problem (or on its first ``prefix`` steps)
    "probe"   the same, where a TypeError for a gated params type means that the target does
              not support the cell
    "fd"      the same, plus central differences of the target's own loss for every entry of
              the parameters, s0 (when given; the LSTM's h and c parts each), dense xs

Replies name the arrays flat (Reply.fields): loss, the cell's parameters, ds0 (the LSTM: ds0.h
and ds0.c), dxs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from manual_bptt.checking import central_differences
from manual_bptt.gated_params import LSTMState
from manual_bptt.problems import Problem

from ..errors import BadResult, Mutated, TargetError, Unsupported
from ..run.protocol import Hello, Program, Reply, Request
from ..run.worker import Handle, serve
from .contract import (
    DECLARATION,
    TargetOutput,
    accepted_keywords,
    call_target,
    load_target,
    problem_for,
    signature_text,
    state_parts,
)

#: Finite-difference step.
FD_EPS = 1e-5


def _inputs(p: Any, xs: Any, ys: Any, s0: Any, mask: Any) -> dict[str, Any]:
    params = {name: getattr(p, name) for name in _param_names(p)}
    parts = state_parts(s0) if isinstance(s0, tuple) else None
    state = {"s0": s0} if parts is None else {"s0.h": parts[0], "s0.c": parts[1]}
    return {**params, "xs": xs, "ys": ys, "mask": mask, **state}


def _param_names(p: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(p))


def _copy_state(s0: Any) -> Any:
    if s0 is None:
        return None
    if isinstance(s0, tuple):
        return LSTMState(s0[0].copy(), s0[1].copy())
    return s0.copy()


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of two inputs (None only equals None)."""
    if a is None or b is None:
        return a is None and b is None
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return False
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def guarded_call(
    fn: Callable[..., Any], prob: Problem, truncate: Any = "keep", *, probe: bool = False
) -> TargetOutput:
    """call_target on fresh copies of the problem's arrays (``truncate`` overriding the
    configuration's unless "keep"); Mutated if any input changed."""
    p = prob.params
    copies = type(p)(**{n: None if (a := getattr(p, n)) is None else a.copy() for n in _param_names(p)})
    xs, ys = prob.xs.copy(), prob.ys.copy()
    s0 = _copy_state(prob.s0)
    mask = None if prob.mask is None else prob.mask.copy()
    kw = {**prob.kwargs(), "s0": s0, "mask": mask}
    if truncate != "keep":
        kw["truncate"] = truncate
    changed: list[str] = []
    try:
        out = call_target(fn, copies, xs, ys, kw, probe=probe)
    finally:
        after = _inputs(copies, xs, ys, s0, mask)
        before = _inputs(p, prob.xs, prob.ys, prob.s0, prob.mask)
        changed = [n for n in before if not _same(before[n], after.get(n))]
        if changed:
            raise Mutated(changed)  # a changed input matters more than what was raised
    return out


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


def _fd(fn: Callable[..., Any], prob: Problem, out: TargetOutput) -> dict[str, np.ndarray]:
    """Central differences of the target's own loss for every entry of the parameters, s0 (the
    LSTM's h and c parts each) and dense xs."""
    p = prob.params

    def loss(params: Any = p, xs: Any = prob.xs, s0: Any = prob.s0) -> float:
        q = Problem(cfg=prob.cfg, params=params, xs=np.array(xs), ys=prob.ys, s0=_copy_state(s0),
                    mask=prob.mask)  # fmt: skip
        return float(np.asarray(guarded_call(fn, q, None).loss, dtype=np.float64))

    numeric: dict[str, np.ndarray] = {}
    for name, value in p.items():
        numeric[name] = central_differences(
            lambda a, name=name: loss(params=p.replace(**{name: np.array(a)})), value, eps=FD_EPS
        )
    if isinstance(prob.s0, tuple) and out.ds0 is not None:
        h0, c0 = prob.s0
        numeric["ds0.h"] = central_differences(lambda a: loss(s0=LSTMState(np.array(a), c0)), h0, eps=FD_EPS)
        numeric["ds0.c"] = central_differences(lambda a: loss(s0=LSTMState(h0, np.array(a))), c0, eps=FD_EPS)
    elif prob.s0 is not None and out.ds0 is not None:
        numeric["ds0"] = central_differences(lambda a: loss(s0=a), prob.s0, eps=FD_EPS)
    if not prob.cfg.tokens and out.dxs is not None:
        numeric["dxs"] = central_differences(lambda a: loss(xs=a), prob.xs, eps=FD_EPS)
    return numeric


def handle(fn: Callable[..., Any], request: Request) -> Reply:
    """The reply to one request (see the module docstring); what the target raises otherwise is
    answered by the worker loop."""
    cfg = request.config
    prob = problem_for(cfg, request.prefix)
    if prob is None:
        return Reply(status="skipped")
    try:
        numeric = {}
        if request.kind == "fd":
            out = guarded_call(fn, prob, None)
            numeric = _fd(fn, prob, out)
        else:
            out = guarded_call(fn, prob, probe=request.kind == "probe")
    except Unsupported as exc:
        return Reply(status="unsupported", keywords=tuple(exc.keywords), message=str(exc), detail=exc.detail)
    except Mutated as exc:
        return Reply(status="mutated", mutated=tuple(exc.names))
    except BadResult as exc:
        return Reply(status="bad_result", message=str(exc))
    fields, notes = output_fields(out, cfg.cell)
    return Reply(status="ok", fields=fields, notes=notes, numeric=numeric)


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
    """What a worker process of the target ``spec`` ("module:function") runs."""
    return Program(main, spec, f"--target {spec}")
