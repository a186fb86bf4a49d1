"""Where a recurrent layer under ``check_module`` goes wrong, seen from outside (the module is a black box).

Three observations on the first failing configuration, each a few more runs of the module:

- the smallest T: the same configuration cut to its first T' = 1, 2, ... steps (upstream gradients
  cut alike, the final state's kept), the first T' that fails;
- the upstream step: the upstream gradient put at one step t only (dL/dout_t as drawn, every other
  step's, dL/dh_n and dL/dc_n zero), for each t: which arrays fail;
- the lag profile: in those same runs x.grad[:, k] is dE_t/dx_k, so against the lag t - k the
  module's and the reference's sizes max|dE_t/dx_k| and the error, judged per lag like an array.
  A kernel that drops the recurrence beyond one step is right at lags 0 and 1 and wrong (zero)
  from lag 2.

From them one sentence ("dW wrong from lag 2 on: the recurrence is cut after one step"), plus
what the wrong arrays look like where that is recognisable: an array that is zero, gate blocks
exchanged (GRU r, z, n; LSTM i, f, g, o), the Elman dW built from h_t where h_{t-1} belongs.

A stack (more layers, two directions, a projection: bptt_report.module.layers) is also seen by
layer and direction. A wrong forward goes wrong first in the lowest layer (and direction) whose
final state (or half of out) differs, since a layer's forward reads only the layers below it; a
reverse direction that reproduces the reference run with the forward direction's weights is
named so. Wrong gradients start at the highest layer whose parameters (or initial states'
gradients) differ, since the gradient of a layer comes down through the layers above it; the
layers below it are listed as wrong too. The lag profile is of dx, the whole stack's; with two
directions it has negative lags (k > t, reached through the reverse direction). With variable
lengths the failing configuration is also run with every sequence of length T and, for wrong
gradients, with the upstream gradient zero past each length: a layer wrong only with variable
lengths, one whose padding receives gradient (dx not zero past a length), and one that lets the
padding's upstream gradient in are each said so.

A failing configuration called in another way than the plain one (bptt_report.module.cases.CALLS:
eval() mode, m(x), x not requiring grad, a reused instance) is first run the plain way, and with
each of its ways alone: when the plain call agrees, the sentence names the way the module is
wrong in ("wrong only in eval() mode"); otherwise the plain call is localized as above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cells import GATE_NAMES, GATES
from ..judge.compare import FACTOR, compare_module_array, max_abs_diff
from ..judge.localize import shortest_failing
from ..judge.results import json_number_text
from .cases import CALL_WORDS, FORWARD, notation, reference, stack_params
from .contract import Shape, case_shape, param_name, parse_name, where_words
from .layers import PartCheck, grouped, part_words, parts, wrong_by_layer
from .session import Evaluation, Session
from .worker import PLAIN_CALL, call_of

_WORDS = {1: "one step", 2: "two steps", 3: "three steps"}


@dataclass(frozen=True)
class LagPoint:
    """Lag t - k: max|dE_t/dx_k| of the reference and of the module, the error, whether it agrees."""

    lag: int
    ref: float
    module: float
    err: float
    base: float | None
    ok: bool


@dataclass
class ModuleLocalization:
    """What the black-box localization found on configuration #config (see the module docstring)."""

    config: int
    sizes: dict[str, int]
    smallest_T: int | None = None
    forward_first_step: int | None = None
    steps_wrong: list[int] = field(default_factory=list)
    arrays_by_step: dict[int, list[str]] = field(default_factory=dict)
    lags: list[LagPoint] = field(default_factory=list)
    first_wrong_lag: int | None = None
    patterns: list[str] = field(default_factory=list)
    call: list[str] = field(default_factory=list)
    sentence: str = ""
    first_wrong_reverse_lag: int | None = None
    layer: str = ""
    layers_wrong: dict[str, list[str]] = field(default_factory=dict)
    lengths: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config, "sizes": self.sizes, "smallest_T": self.smallest_T,
            "forward_first_step": self.forward_first_step, "steps_wrong": self.steps_wrong,
            "arrays_by_step": {str(k): v for k, v in self.arrays_by_step.items()},
            "lag_profile": [
                {"lag": p.lag, "reference": json_number_text(p.ref), "module": json_number_text(p.module),
                 "error": json_number_text(p.err), "baseline_error": json_number_text(p.base), "ok": p.ok}
                for p in self.lags
            ],
            "first_wrong_lag": self.first_wrong_lag, "first_wrong_reverse_lag": self.first_wrong_reverse_lag,
            "patterns": self.patterns, "call": self.call, "layer": self.layer,
            "layers_wrong": self.layers_wrong, "lengths": self.lengths, "sentence": self.sentence,
        }  # fmt: skip


def prefix(case: dict[str, Any], T: int) -> dict[str, Any]:
    """The case cut to its first T steps (the final state's upstream gradient kept; lengths cut
    to at most T)."""
    c = dict(case, T=T, repeat=False)
    c["x"], c["dout"] = case["x"][:, :T], case["dout"][:, :T]
    if "lengths" in case:
        c["lengths"] = np.minimum(case["lengths"], T)
    return c


def at_step(case: dict[str, Any], t: int) -> dict[str, Any]:
    """The case with the upstream gradient at output step t only."""
    c = dict(case, repeat=False)
    dout = np.zeros_like(case["dout"])
    dout[:, t] = case["dout"][:, t]
    c["dout"] = dout
    for k in ("dh_n", "dc_n"):
        if k in case:
            c[k] = np.zeros_like(case[k])
    return c


def _names(names: list[str], shape: Shape | None = None) -> str:
    """The arrays as a sentence names them: "dW, db_ih" (one layer); by layer and direction, with
    their torch names, for a stack."""
    if shape is None or shape.one_layer:
        return ", ".join(notation(n) for n in names)
    return grouped(names, shape)


def lag_profile(evals: list[Evaluation], dtype: str, negative: bool = False) -> list[LagPoint]:
    """From the at_step runs (evals[t] has the upstream at step t): one point per lag 0..T-1
    (``negative``, for two directions: -(T-1)..T-1, k > t reached through the reverse direction)."""
    T = len(evals)
    points = []
    for lag in range(-(T - 1) if negative else 0, T):
        mods, refs, bases = [], [], []
        for t in range(max(lag, 0), min(T, T + lag)):
            ev = evals[t]
            if ev.status != "ok" or ev.ref is None or "x" not in ev.ref:
                continue
            k = t - lag
            refs.append(ev.ref["x"][:, k])
            a = ev.arrays.get("x")
            mods.append(
                a[:, k] if a is not None and a.shape == ev.ref["x"].shape else np.full_like(refs[-1], np.nan)
            )
            if ev.base is not None:
                bases.append(ev.base["x"][:, k])
        if not refs:
            continue
        R, A = np.stack(refs), np.stack(mods)
        Bs = np.stack(bases) if bases else None
        e = compare_module_array("x", A, R, Bs, dtype)
        mod_size = float(np.abs(A).max()) if np.isfinite(A).all() else math.inf
        points.append(LagPoint(lag, e.scale, mod_size, e.abs_error, e.baseline, e.passed))
    return points


def _zero_patterns(ev: Evaluation, bad: list[str], shape: Shape | None = None) -> list[str]:
    """Wrong arrays that are zero where the reference's are not: a bias whose gradient went to the
    other bias, a projection whose gradient is lost, an array no gradient reaches (a stack: with
    its torch name)."""
    shape = shape or Shape()
    out = []
    zero = [n for n in bad if n in ev.arrays and not np.any(ev.arrays[n]) and np.any(ev.ref[n])]
    ok = set(ev.ref) - set(ev.failing())
    for n in zero:
        parsed = parse_name(n)
        kind = parsed[0] if parsed else ""
        named = notation(n) if shape.one_layer else f"{notation(n)} ({n})"
        swap = {"bias_ih": "bias_hh", "bias_hh": "bias_ih"}.get(kind)
        other = param_name(swap, parsed[1], parsed[2]) if swap and parsed else None
        if other in ok:
            other_named = notation(other) if shape.one_layer else f"{notation(other)} ({other})"
            out.append(
                f"{named} is zero while {other_named} agrees: the gradient of "
                f"{notation(n)[1:]} was given to {notation(other)[1:]} only"
            )
        elif kind == "weight_hr":
            out.append(f"the projection's gradient ({n}) is lost: it is zero where the reference's is not")
        else:
            out.append(f"{named} is zero where the reference's is not: no gradient reaches it")
    return out


def _gate_patterns(cell: str, ev: Evaluation, bad: list[str], shape: Shape | None = None) -> list[str]:
    """Gate blocks of the parameter gradients that are wrong, and a pair that is exchanged."""
    shape = shape or Shape()
    G = GATES[cell]
    if G == 1:
        return []
    names = GATE_NAMES[cell]
    wrong_blocks: dict[str, list[str]] = {}
    swapped: dict[tuple[str, str], list[str]] = {}
    for n in bad:
        parsed = parse_name(n)
        if parsed is None or parsed[0] == "weight_hr":
            continue
        a, r = ev.arrays.get(n), ev.ref[n]
        if a is None or a.shape != r.shape:
            continue
        H = r.shape[0] // G
        blocks_a = [a[g * H : (g + 1) * H] for g in range(G)]
        blocks_r = [r[g * H : (g + 1) * H] for g in range(G)]
        tol = 1e-6 * float(np.abs(r).max()) + 1e-12
        wrong = [g for g in range(G) if max_abs_diff(blocks_a[g], blocks_r[g]) > tol]
        wrong_blocks[n] = [names[g] for g in wrong]
        if len(wrong) == 2:
            i, j = wrong
            if (
                max_abs_diff(blocks_a[i], blocks_r[j]) <= tol
                and max_abs_diff(blocks_a[j], blocks_r[i]) <= tol
            ):
                swapped.setdefault((names[i], names[j]), []).append(n)
    out = []
    for (gi, gj), arrays in swapped.items():
        out.append(
            f"the {gi} and {gj} gate blocks of {_names(arrays, shape)} are exchanged: the {gi} and {gj} gate "
            "gradients are swapped"
        )
    rest = {n: b for n, b in wrong_blocks.items() if not any(n in a for a in swapped.values())}
    if rest and not swapped:
        blocks = [  # (every block wrong tells nothing)
            f"{notation(n) if shape.one_layer else f'{notation(n)} ({n})'} in gate "
            f"block{'s' if len(b) > 1 else ''} {', '.join(b)}"
            for n, b in rest.items()
            if b and len(b) < G
        ]
        if blocks:
            out.append("wrong " + "; ".join(blocks))
    return out


def _elman_dw_pattern(session: Session, ev: Evaluation) -> list[str]:
    """Whether the Elman module's dW is sum_t delta_t h_t^T (h_t where h_{t-1} belongs).

    delta_t = dL/da_t of the reference: delta_t = (dout_t + [t = T-1] dh_n + W^T delta_{t+1}) * f'(a_t),
    with f'(a_t) = 1 - h_t^2 for tanh, [h_t > 0] for relu."""
    case, ref = ev.used or ev.case, ev.ref  # the case as called (zeros for an h0 not given)
    a = ev.arrays.get("weight_hh_l0")
    if a is None or a.shape != ref["weight_hh_l0"].shape:
        return []
    W = case["params"]["weight_hh_l0"]  # (H, H)
    hs = ref["out"]  # h_t, (B, T, H)
    T = hs.shape[1]
    fprime = 1.0 - hs**2 if session.activation == "tanh" else (hs > 0).astype(float)
    delta = np.zeros_like(hs)
    carried = case["dh_n"][0].copy()  # the final state's upstream gradient, (B, H)
    for t in range(T - 1, -1, -1):
        delta[:, t] = (case["dout"][:, t] + carried) * fprime[:, t]  # dL/da_t
        carried = delta[:, t] @ W  # W^T delta_t, to h_{t-1}
    prev = np.concatenate([case["h0"][0][:, None], hs[:, :-1]], axis=1)  # h_{t-1}, (B, T, H)
    right = np.einsum("bti,btj->ij", delta, prev)
    if max_abs_diff(right, ref["weight_hh_l0"]) > 1e-8 * (np.abs(right).max() + 1):
        return []  # the recursion here does not reproduce the reference: say nothing
    shifted = np.einsum("bti,btj->ij", delta, hs)  # sum_t delta_t h_t^T
    tol = 1e-4 * float(np.abs(shifted).max()) + 1e-12
    if max_abs_diff(a, shifted) <= tol:
        return ["dW equals sum_t delta_t h_t^T: h_t is used where h_{t-1} belongs"]
    return []


def localize(
    session: Session, evals: list[Evaluation], forward_bad: list[str], grads_bad: list[str]
) -> ModuleLocalization | None:
    """The localization of the first failing configuration (None when none was run)."""
    idx = next((i for i, ev in enumerate(evals) if ev.status == "ok" and ev.failing()), None)
    if idx is None:
        mutated = next(
            (i for i, ev in enumerate(evals) if ev.status == "ok" and ev.reply.mutated), None
        )
        if mutated is None:
            return None
        ev = evals[mutated]
        loc = ModuleLocalization(mutated, _sizes(ev.case))
        loc.sentence = (
            f"the module modifies {', '.join(ev.reply.mutated)} in place: the caller's tensor "
            "is not the same after the call"
        )
        return loc
    ev = evals[idx]
    if call_of(ev.case) != PLAIN_CALL:
        plain, ways = _by_way(session, ev.case)
        if plain.agrees:
            return _way_localization(idx, ev, ways)
        if plain.status == "ok":  # wrong the plain way too: localize that (it has dx, dh0)
            ev = plain
            forward_bad = plain.forward_failing()
            grads_bad = [n for n in plain.failing() if n not in FORWARD]
    case = ev.case
    T = case["T"]
    shape = case_shape(case)
    loc = ModuleLocalization(idx, _sizes(case))
    forward = bool(forward_bad)

    shrunk = session.evaluate([prefix(case, t) for t in range(1, T + 1)])
    loc.smallest_T = shortest_failing(
        shrunk, lambda sev: sev.status != "ok" or bool(sev.forward_failing() if forward else sev.failing())
    )
    loc.lengths = _lengths_words(session, ev, forward)

    if forward:
        out, ref, base = ev.arrays.get("out"), ev.ref["out"], None if ev.base is None else ev.base["out"]
        if out is not None and out.shape == ref.shape:
            for t in range(T):
                e = compare_module_array(
                    "out", out[:, t], ref[:, t], None if base is None else base[:, t], session.dtype
                )
                if not e.passed:
                    loc.forward_first_step = t
                    break
        step = "" if loc.forward_first_step is None else f" from step {loc.forward_first_step} on"
        loc.sentence = (
            f"the forward is wrong: {', '.join(notation(n) for n in forward_bad)} differ from the "
            f"reference{step} (already at T = {loc.smallest_T}): the module computes a different "
            "function, so its gradients were not judged as gradients"
        )
        if not shape.one_layer:
            words = _stack_forward(session, ev, loc)
            loc.patterns = _reverse_weights_pattern(session, ev, loc)
            loc.sentence = "; ".join([loc.sentence, words, *loc.patterns, *loc.lengths])
        elif loc.lengths:
            loc.sentence = "; ".join([loc.sentence, *loc.lengths])
        return loc

    steps = session.evaluate([at_step(case, t) for t in range(T)])
    for t, sev in enumerate(steps):
        names = sev.failing() if sev.status == "ok" else ["(the module did not run)"]
        if names:
            loc.steps_wrong.append(t)
            loc.arrays_by_step[t] = names
    loc.lags = lag_profile(steps, session.dtype, negative=shape.directions == 2)
    loc.first_wrong_lag = next((p.lag for p in loc.lags if p.lag >= 0 and not p.ok), None)
    loc.first_wrong_reverse_lag = next((p.lag for p in reversed(loc.lags) if p.lag <= 0 and not p.ok), None)
    bad = [n for n in grads_bad if n not in FORWARD]
    # the patterns on the shortest case that fails (one step: no recurrence to mix the blocks)
    short = next((s for s in shrunk if s.status == "ok" and s.failing()), ev)
    short_bad = [n for n in short.failing() if n not in FORWARD]
    loc.patterns = _zero_patterns(short, short_bad, shape)
    loc.patterns += _gate_patterns(session.cell, short, short_bad, shape)
    if session.cell == "rnn" and shape.one_layer and "weight_hh_l0" in bad:
        loc.patterns += _elman_dw_pattern(session, ev)
    stack = "" if shape.one_layer else _stack_grads(ev, loc)
    loc.sentence = _sentence(loc, bad, session.dtype, ev, stack)
    return loc


def _lengths_words(session: Session, ev: Evaluation, forward: bool) -> list[str]:
    """What a failing configuration of variable lengths shows besides (see the module docstring):
    run again with every sequence of length T and, for wrong gradients, with the upstream gradient
    zero past each length; the module's out (forward) or dx (gradients) past each length."""
    case = ev.case
    if "lengths" not in case:
        return []
    T = case["T"]
    padded = np.arange(T)[None, :] >= case["lengths"][:, None]  # (B, T): the steps past each length
    if not padded.any():
        return []
    full = dict(plain_of(case), lengths=np.full_like(case["lengths"], T))
    zeroed = plain_of(case)
    zeroed["dout"] = np.where(padded[:, :, None], 0.0, case["dout"])
    runs = session.evaluate([full] if forward else [full, zeroed])
    words = []
    if runs[0].agrees:
        words.append(
            "wrong only with variable lengths: the same configuration with every sequence of length T agrees"
        )
    name = "out" if forward else "x"
    a, r = ev.arrays.get(name), (ev.ref or {}).get(name)
    if a is not None and r is not None and a.shape == r.shape and np.any(a[padded] != 0):
        if forward:
            words.append(
                "out is not zero at steps past a sequence's length (pad_packed_sequence gives zeros there)"
            )
        else:
            words.append(
                "steps past a sequence's length receive gradient: dx is not zero at steps t >= n_b (the "
                "padding)"
            )
    if not forward and runs[1].agrees:
        words.append(
            "the upstream gradient at steps past a sequence's length (random there, as the padding is) "
            "reaches the gradients: with it zero the configuration agrees"
        )
    return words


#: The parts of a layer and direction that its forward computes.
_FORWARD_PARTS = ("h_n", "c_n", "out")


def _part_list(names: list[str]) -> str:
    return ", ".join(part_words(n) for n in names)


def _stack_forward(session: Session, ev: Evaluation, loc: ModuleLocalization) -> str:
    """Where a stack's forward goes wrong first: the lowest layer (and direction) whose final state
    or half of out differs (a layer's forward reads only the layers below it)."""
    shape = case_shape(ev.case)
    checks = [p for p in parts(ev.errors, ev.arrays, ev.ref, shape) if p.name.startswith(_FORWARD_PARTS)]
    wrong = wrong_by_layer(checks)
    loc.layers_wrong = {where_words(*k, shape): v for k, v in wrong.items()}
    if not wrong:
        return ""
    low = min(layer for layer, _ in wrong)
    first = [(k, v) for k, v in wrong.items() if k[0] == low]
    loc.layer = "; ".join(where_words(*k, shape) for k, _ in first)
    words = "; ".join(f"{where_words(*k, shape)}: {_part_list(v)} differ{'s' if len(v) == 1 else ''}"
                      for k, v in first)  # fmt: skip
    agree = []
    if low > 0:
        agree.append(f"the layer{'s' if low > 1 else ''} below it agree{'' if low > 1 else 's'}")
    if shape.directions == 2 and len(first) == 1:
        agree.append(f"its {'forward' if first[0][0][1] else 'reverse'} direction agrees")
    return f"it goes wrong first in {words}" + (f" ({'; '.join(agree)})" if agree else "")


def _reverse_weights_pattern(session: Session, ev: Evaluation, loc: ModuleLocalization) -> list[str]:
    """A reverse direction that computes with the forward direction's weights: the reference with
    every weight_*_l{l}_reverse replaced by weight_*_l{l} gives the module's out and h_n."""
    case = ev.used or ev.case
    shape = case_shape(case)
    if shape.directions != 2 or "reverse direction" not in loc.layer:
        return []
    swapped = {}
    for n, a in case["params"].items():
        kind, layer, d = parse_name(n) or ("", 0, 0)
        swapped[n] = case["params"][param_name(kind, layer, 0)] if d == 1 else a
    p = stack_params(session.cell, session.activation, dict(case, params=swapped))
    hypothesis = reference(session.cell, session.activation, case, p)
    rel = 1e-8 if session.dtype == "float64" else 1e-3
    for name in ("out", "h_n"):
        a, h = ev.arrays.get(name), hypothesis[name]
        if a is None or max_abs_diff(a, h) > rel * float(np.abs(h).max()) + 1e-12:
            return []
    return [
        "its reverse direction computes with the forward direction's weights: the reference with "
        "weight_*_l{l} in place of weight_*_l{l}_reverse gives the module's out and h_n"
    ]


def _stack_grads(ev: Evaluation, loc: ModuleLocalization) -> str:
    """Where a stack's gradients go wrong, from the top: the highest layer (and direction) whose
    parameters or initial states' gradients differ, then the layers below it (their gradient comes
    down through it)."""
    shape = case_shape(ev.case)
    checks: list[PartCheck] = [
        p for p in parts(ev.errors, ev.arrays, ev.ref, shape) if not p.name.startswith(_FORWARD_PARTS)
    ]
    wrong = wrong_by_layer(checks)
    loc.layers_wrong = {where_words(*k, shape): v for k, v in wrong.items()}
    if not wrong:
        return ""
    top = max(layer for layer, _ in wrong)
    first = [(k, v) for k, v in wrong.items() if k[0] == top]
    below = [(k, v) for k, v in wrong.items() if k[0] < top]
    loc.layer = "; ".join(where_words(*k, shape) for k, _ in first)
    words = "; ".join(f"{where_words(*k, shape)}: {_part_list(v)} wrong" for k, v in first)
    agree = []
    if top < shape.num_layers - 1:
        agree.append(f"the layer{'s' if top < shape.num_layers - 2 else ''} above it agree"
                     + ("" if top < shape.num_layers - 2 else "s"))  # fmt: skip
    if shape.directions == 2 and len(first) == 1:
        agree.append(f"its {'forward' if first[0][0][1] else 'reverse'} direction agrees")
    text = words + (f" ({'; '.join(agree)})" if agree else "")
    if below:
        listed = "; ".join(f"{where_words(*k, shape)}: {', '.join(_short(n) for n in v)}" for k, v in below)
        text += f"; below it, wrong too (their gradient comes down through layer {top}): {listed}"
    return text


def _short(name: str) -> str:
    """A part's short name: dW, dh0[1]."""
    if parse_name(name):
        return notation(name)
    base, row = name.split("[")
    return f"{notation(base)}[{row}"


def plain_of(case: dict[str, Any]) -> dict[str, Any]:
    """``case`` called the plain way (train() mode, h0, x requiring grad, a fresh instance), once."""
    c = dict(case, call=dict(PLAIN_CALL), repeat=False)
    c.pop("warmup", None)
    return c


def _by_way(session: Session, case: dict[str, Any]) -> tuple[Evaluation, list[tuple[str, Evaluation]]]:
    """``case`` run the plain way, and with each of its ways of calling alone: (the plain
    evaluation, [(the way's words, its evaluation)])."""
    how, plain = call_of(case), plain_of(case)
    singles: list[tuple[str, dict[str, Any]]] = []
    for key, value in how.items():
        if value != PLAIN_CALL[key]:
            one = dict(plain, call=dict(PLAIN_CALL, **{key: value}))
            if key == "reused" and "warmup" in case:
                one["warmup"] = case["warmup"]
            singles.append((CALL_WORDS[key, value], one))
    done = session.evaluate([plain] + [c for _, c in singles])
    return done[0], [(words, ev) for (words, _), ev in zip(singles, done[1:], strict=True)]


#: What a module wrong only one way of being called most likely does (by CALL_WORDS).
_WAY_CAUSE = {
    CALL_WORDS["mode", "eval"]: "its eval() path computes something else than its train() path",
    CALL_WORDS["h0", False]: "its default initial state is not the zeros torch's layers start from "
    "(or its path without h0 computes something else)",
    CALL_WORDS["x_grad", False]: "its path for an x that does not require grad computes something else",
    CALL_WORDS["reused", True]: "it keeps something of an earlier call (a copy of its weights?) after "
    "its parameters were changed in place",
}


def _way_localization(idx: int, ev: Evaluation, ways: list[tuple[str, Evaluation]]) -> ModuleLocalization:
    """The localization of a configuration wrong only the way(s) it was called (the plain call agrees)."""
    loc = ModuleLocalization(idx, _sizes(ev.case))
    wrong = [(words, w) for words, w in ways if not w.agrees]
    names = _names(ev.failing(), case_shape(ev.case)) or "the results"
    plain = "in train() mode, with h0, x requiring grad, on a fresh instance"
    if wrong:
        loc.call = [words for words, _ in wrong]
        causes = [_WAY_CAUSE[words] for words in loc.call]
        loc.sentence = (
            f"{names} wrong only {' and, apart, '.join(loc.call)}: the same configuration agrees called "
            f"{plain}; {'; '.join(causes)}"
        )
    else:
        loc.call = [words for words, _ in ways]
        loc.sentence = (
            f"{names} wrong only {', '.join(loc.call)} together: the same configuration agrees called "
            f"{plain}, and called each of those ways alone"
        )
    return loc


def profile_only(session: Session, evals: list[Evaluation]) -> ModuleLocalization | None:
    """For a module that passes: the lag profile of the first configuration with dx, for the plot."""
    idx = next((i for i, ev in enumerate(evals) if ev.status == "ok" and call_of(ev.case)["x_grad"]), None)
    if idx is None:
        return None
    case = evals[idx].case
    loc = ModuleLocalization(idx, _sizes(case))
    two = case_shape(case).directions == 2
    loc.lags = lag_profile(session.evaluate([at_step(case, t) for t in range(case["T"])]), session.dtype, two)
    loc.first_wrong_lag = next((p.lag for p in loc.lags if p.lag >= 0 and not p.ok), None)
    loc.first_wrong_reverse_lag = next((p.lag for p in reversed(loc.lags) if p.lag <= 0 and not p.ok), None)
    return loc


def _sizes(case: dict[str, Any]) -> dict[str, int]:
    return {k: int(case[k]) for k in ("D", "H", "T", "B")}


def _lag_words(loc: ModuleLocalization) -> str:
    """What the lag profile of dx says: "wrong from lag 2 on: the recurrence is cut after one
    step", "wrong from lag 0 on: ...", with the negative lags of two directions; "" when dx
    agrees at every lag (or there is no profile)."""
    out = []
    for side, L in ((1, loc.first_wrong_lag), (-1, loc.first_wrong_reverse_lag)):
        if L is None:
            continue
        n = abs(L)
        if n == 0:  # (lag 0 is on both sides: said once)
            if side == 1:
                out.append("wrong from lag 0 on: the step's own (immediate) terms are wrong")
            continue
        tail = [p for p in loc.lags if side * p.lag >= n]
        cut = all(p.module <= 1e-6 * p.ref for p in tail if p.ref > 0)
        steps = _WORDS.get(n - 1, f"{n - 1} steps")
        on = f"lag {L} on" if side == 1 else f"lag {L} down (k > t, through the reverse direction)"
        if cut and n == 1:
            out.append(f"wrong from {on}: the recurrence is cut, nothing is carried back a step")
        elif cut:
            out.append(f"wrong from {on}: the recurrence is cut after {steps}")
        elif n == 1:
            out.append(
                f"wrong from {on}: right at lag 0 only, the gradient carried back through the recurrence is "
                "wrong from its first step"
            )
        else:
            out.append(
                f"wrong from {on}: right at lags 0 to {L - side}, the gradient carried back through the "
                f"recurrence goes wrong after {steps}"
            )
    return "; and ".join(out)


def _sentence(loc: ModuleLocalization, bad: list[str], dtype: str, ev: Evaluation, stack: str = "") -> str:
    shape = case_shape(ev.case)
    names = _names(bad) or "the gradients"
    lags = loc.lags
    lag = _lag_words(loc)
    span = f"{lags[0].lag} to {lags[-1].lag}" if lags else ""
    if shape.one_layer:
        if lag:
            main = f"{names} {lag}"
        elif lags:
            main = (
                f"{names} wrong while dx agrees at every lag {span}: the error is in the "
                "parameters' own terms, not in the recurrence"
            )
        else:
            main = f"{names} wrong"
    else:
        if lag:
            tail = f"the whole stack's dx {lag}"
        elif lags:
            tail = (
                f"the whole stack's dx agrees at every lag {span}: the error is in the parameters' own "
                "terms, not in the recurrence"
            )
        else:
            tail = ""
        main = "; ".join(t for t in (stack or f"{_names(bad, shape)} wrong", tail) if t)
    if dtype != "float64" and all(p.ok for p in lags) and not loc.patterns:
        worst = max((e for e in ev.errors if not e.passed), key=lambda e: e.ratio)
        main = (
            f"{names} less accurate than torch's own module at {dtype}: {notation(worst.name)}'s error is "
            f"{worst.ratio:.0f} times the baseline's ({worst.rel_error:.1e} against "
            f"{worst.baseline_rel_error:.1e} relative; "
            f"allowed: {FACTOR:g} times) while dx agrees at every lag: a loss of precision, not a wrong term"
        )
        if not shape.one_layer:
            main = f"{stack}; {main}" if stack else main
    extra = "; ".join(loc.patterns + loc.lengths)
    where = []
    if loc.steps_wrong:
        where.append(
            f"with the upstream gradient at one step t only, wrong for t in {_ranges(loc.steps_wrong)}"
        )
    if loc.smallest_T is not None:
        where.append(f"smallest failing T = {loc.smallest_T}")
    return main + (f"; {extra}" if extra else "") + (f" ({'; '.join(where)})" if where else "")


def _ranges(ts: list[int]) -> str:
    if ts == list(range(ts[0], ts[-1] + 1)):
        return f"{ts[0]}..{ts[-1]}" if len(ts) > 1 else str(ts[0])
    return ", ".join(map(str, ts))
