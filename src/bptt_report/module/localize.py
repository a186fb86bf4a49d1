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
from .cases import CALL_WORDS, FORWARD, NOTATION
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
            "first_wrong_lag": self.first_wrong_lag, "patterns": self.patterns, "call": self.call,
            "sentence": self.sentence,
        }  # fmt: skip


def prefix(case: dict[str, Any], T: int) -> dict[str, Any]:
    """The case cut to its first T steps (the final state's upstream gradient kept)."""
    c = dict(case, T=T, repeat=False)
    c["x"], c["dout"] = case["x"][:, :T], case["dout"][:, :T]
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


def _names(names: list[str]) -> str:
    return ", ".join(NOTATION[n] for n in names)


def lag_profile(evals: list[Evaluation], dtype: str) -> list[LagPoint]:
    """From the at_step runs (evals[t] has the upstream at step t): one point per lag 0..T-1."""
    T = len(evals)
    points = []
    for lag in range(T):
        mods, refs, bases = [], [], []
        for t in range(lag, T):
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


def _zero_patterns(ev: Evaluation, bad: list[str]) -> list[str]:
    out = []
    zero = [n for n in bad if n in ev.arrays and not np.any(ev.arrays[n]) and np.any(ev.ref[n])]
    ok = set(ev.ref) - set(ev.failing())
    for n in zero:
        other = {"bias_ih_l0": "bias_hh_l0", "bias_hh_l0": "bias_ih_l0"}.get(n)
        if other in ok:
            out.append(
                f"{NOTATION[n]} is zero while {NOTATION[other]} agrees: the gradient of "
                f"{NOTATION[n][1:]} was given to {NOTATION[other][1:]} only"
            )
        else:
            out.append(f"{NOTATION[n]} is zero where the reference's is not: no gradient reaches it")
    return out


def _gate_patterns(cell: str, ev: Evaluation, bad: list[str]) -> list[str]:
    """Gate blocks of the parameter gradients that are wrong, and a pair that is exchanged."""
    G = GATES[cell]
    if G == 1:
        return []
    names = GATE_NAMES[cell]
    wrong_blocks: dict[str, list[str]] = {}
    swapped: dict[tuple[str, str], list[str]] = {}
    for n in bad:
        if n not in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
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
            f"the {gi} and {gj} gate blocks of {_names(arrays)} are exchanged: the {gi} and {gj} gate "
            "gradients are swapped"
        )
    rest = {n: b for n, b in wrong_blocks.items() if not any(n in a for a in swapped.values())}
    if rest and not swapped:
        parts = [
            f"{NOTATION[n]} in gate block{'s' if len(b) > 1 else ''} {', '.join(b)}"
            for n, b in rest.items()
            if b
        ]
        if parts:
            out.append("wrong " + "; ".join(parts))
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
    loc = ModuleLocalization(idx, _sizes(case))
    forward = bool(forward_bad)

    shrunk = session.evaluate([prefix(case, t) for t in range(1, T + 1)])
    loc.smallest_T = shortest_failing(
        shrunk, lambda sev: sev.status != "ok" or bool(sev.forward_failing() if forward else sev.failing())
    )

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
            f"the forward is wrong: {', '.join(NOTATION[n] for n in forward_bad)} differ from the "
            f"reference{step} (already at T = {loc.smallest_T}): the module computes a different "
            "function, so its gradients were not judged as gradients"
        )
        return loc

    steps = session.evaluate([at_step(case, t) for t in range(T)])
    for t, sev in enumerate(steps):
        names = sev.failing() if sev.status == "ok" else ["(the module did not run)"]
        if names:
            loc.steps_wrong.append(t)
            loc.arrays_by_step[t] = names
    loc.lags = lag_profile(steps, session.dtype)
    loc.first_wrong_lag = next((p.lag for p in loc.lags if not p.ok), None)
    bad = [n for n in grads_bad if n not in FORWARD]
    # the patterns on the shortest case that fails (one step: no recurrence to mix the blocks)
    short = next((s for s in shrunk if s.status == "ok" and s.failing()), ev)
    short_bad = [n for n in short.failing() if n not in FORWARD]
    loc.patterns = _zero_patterns(short, short_bad) + _gate_patterns(session.cell, short, short_bad)
    if session.cell == "rnn" and "weight_hh_l0" in bad:
        loc.patterns += _elman_dw_pattern(session, ev)
    loc.sentence = _sentence(loc, bad, session.dtype, ev)
    return loc


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
    names = _names(ev.failing()) or "the results"
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
    loc.lags = lag_profile(session.evaluate([at_step(case, t) for t in range(case["T"])]), session.dtype)
    loc.first_wrong_lag = next((p.lag for p in loc.lags if not p.ok), None)
    return loc


def _sizes(case: dict[str, Any]) -> dict[str, int]:
    return {k: int(case[k]) for k in ("D", "H", "T", "B")}


def _sentence(loc: ModuleLocalization, bad: list[str], dtype: str, ev: Evaluation) -> str:
    names = _names(bad) or "the gradients"
    L = loc.first_wrong_lag
    lags = loc.lags
    if L is not None and L >= 1:
        tail = [p for p in lags if p.lag >= L]
        cut = all(p.module <= 1e-6 * p.ref for p in tail if p.ref > 0)
        if cut:
            steps = _WORDS.get(L - 1, f"{L - 1} steps")
            main = f"{names} wrong from lag {L} on: the recurrence is cut after {steps}"
        else:
            main = (
                f"{names} wrong from lag {L} on: right at lags 0 to {L - 1}, the gradient carried back "
                f"through the recurrence goes wrong after {_WORDS.get(L - 1, f'{L - 1} steps')}"
            )
    elif L == 0:
        main = f"{names} wrong from lag 0 on: the step's own (immediate) terms are wrong"
    elif lags:
        main = (
            f"{names} wrong while dx agrees at every lag 0 to {lags[-1].lag}: the error is in the "
            "parameters' own terms, not in the recurrence"
        )
    else:
        main = f"{names} wrong"
    if dtype != "float64" and all(p.ok for p in lags) and not loc.patterns:
        worst = max((e for e in ev.errors if not e.passed), key=lambda e: e.ratio)
        main = (
            f"{names} less accurate than torch's own module at {dtype}: {NOTATION[worst.name]}'s error is "
            f"{worst.ratio:.0f} times the baseline's ({worst.rel_error:.1e} against "
            f"{worst.baseline_rel_error:.1e} relative; "
            f"allowed: {FACTOR:g} times) while dx agrees at every lag: a loss of precision, not a wrong term"
        )
    extra = "; ".join(loc.patterns)
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
