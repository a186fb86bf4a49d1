"""Localizing a disagreement: which arrays, how short a sequence, how small a configuration, which lag.

Given a configuration on which the target disagrees with the oracle (the target runs in its
worker processes, through a ``RunTarget``; the oracle here, on arrays rebuilt from the
configuration):

1. Sequence length. The target and the oracle are rerun on the prefixes x_0..x_{n-1} of the
   same sequence, n = 1, 2, ...; the smallest failing n is reported. With n = 1 there is no
   recurrence at all (each gradient is a lag-0 term).
2. Lag, by the decomposition dE_t/dθ = sum_k dE_t/ds_t ds_t/ds_k ∂s_k/∂θ. Truncating at tau
   keeps exactly the terms with lag t - k <= tau, so the target run with truncate = tau,
   tau = 0, 1, 2, ..., is compared with the oracle's truncated gradient: the first tau at
   which they disagree is the lag of the first wrong term. tau = 0 means the immediate terms
   (k = t) are wrong; tau >= 1 that they are right and the recurrence is not. Each step also
   records the weight of the oracle's lag-tau terms, ||G(tau) - G(tau - 1)||. A target
   without ``truncate`` is localized by the sequence length alone.
3. Configuration. Like Hypothesis' shrinker: simplifications (shorter T, no batch, no mask, no
   s0, full BPTT, sum, no bias, identity activation, smaller sizes, ...) are tried greedily,
   each kept when the target still disagrees on an array that disagreed at first, until none
   applies or the budget of evaluations runs out.
4. What the wrong dW is (the Elman cell): hypotheses tested on the failing configuration (full
   BPTT) against the oracle's own intermediate values (references.elman_trajectory): dW built
   as sum_t delta_t s_t^T (s_t used where s_{t-1} belongs), the transpose of the true dW, or
   zero; each said only when the recomputation with s_{t-1} reproduces the oracle's dW.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from manual_bptt.problems import RNNConfig

from ..plan.sweep import describe_config
from ..run.protocol import Reply, Request
from ..targets.contract import problem_for
from ..targets.replies import misbehaviour, target_output
from .checks import compare_output, failure_message
from .compare import FLOAT32_BAND, RECURRENT_FIELDS, ArrayCheck, looks_like_float32, not_comparable
from .references import Ref, elman_trajectory, oracle_reference, references
from .results import ConfigCheck, LagStep, Localization

#: Largest truncation window scanned for the lag.
MAX_LAG_SCAN = 12
#: Windows scanned past the first failing one (to show whether the error grows with lag).
LAGS_AFTER_FIRST = 4
#: Largest number of candidate configurations run by the shrinker.
SHRINK_BUDGET = 150
#: Pseudo-field of a run in which the target raised (or misbehaved).
RAISED = "exception"

R = TypeVar("R")
#: Runs the target (in its worker processes) on requests: the replies.
RunTarget = Callable[[list[Request]], list[Reply]]


def _raised(note: str) -> ArrayCheck:
    """The pseudo-array of a run in which the target raised or misbehaved: ``note`` says how."""
    return not_comparable(RAISED, note)


Run = tuple[list[ArrayCheck], Ref | None] | None


def run_against_oracle_many(run: RunTarget, items: list[tuple[RNNConfig, int | None]]) -> list[Run]:
    """For each (configuration, prefix): (the target's arrays compared with the oracle's, the
    oracle's result); ([a pseudo-array saying what happened], None) when the target raised or
    misbehaved; None when unsupported (or the prefix counts nothing)."""
    replies = run([Request("call", cfg, prefix) for cfg, prefix in items])
    out: list[Run] = []
    for (cfg, prefix), reply in zip(items, replies, strict=True):
        if reply.status in ("skipped", "not_run"):
            out.append(None)
            continue
        bad = misbehaviour(reply, f"a localization run ({describe_config(cfg)})")
        if bad is not None:
            out.append(None if bad[0] == "unsupported" else ([_raised(bad[1])], None))
            continue
        ref = references(cfg, prefix, with_torch_rnn=False)["oracle"]
        if not isinstance(ref, Ref):
            out.append(None)
            continue
        target, notes = target_output(reply, cfg.cell)
        out.append((compare_output(target, ref, notes), ref))
    return out


def run_against_oracle(run: RunTarget, cfg: RNNConfig, prefix: int | None = None) -> Run:
    return run_against_oracle_many(run, [(cfg, prefix)])[0]


def _failing(arrays: list[ArrayCheck]) -> set[str]:
    return {a.name for a in arrays if not a.passed}


def shortest_failing(runs: Sequence[R], fails: Callable[[R], bool]) -> int | None:
    """The smallest n whose run ``runs[n - 1]`` (on the first n steps) fails: the shortest failing
    prefix of a sequence (both products: a target against the oracle, a module against the
    reference)."""
    return next((n for n, r in enumerate(runs, start=1) if fails(r)), None)


def smallest_failing_length(run: RunTarget, cfg: RNNConfig, fields: set[str]) -> int | None:
    """The smallest n such that the target disagrees (on one of ``fields``) on the first n steps."""
    runs = run_against_oracle_many(run, [(cfg, n) for n in range(1, cfg.T + 1)])
    return shortest_failing(runs, lambda r: r is not None and bool(_failing(r[0]) & fields))


def _field_value(ref: Ref, name: str) -> np.ndarray:
    return np.asarray(ref.fields()[name], dtype=np.float64)


def lag_scan(run: RunTarget, cfg: RNNConfig, field: str) -> tuple[list[LagStep], int | None] | None:
    """Compare truncate = tau for tau = 0, 1, ...; (steps, first failing tau), None if unsupported.

    Stops LAGS_AFTER_FIRST windows after the first failing one, or at min(T - 1, MAX_LAG_SCAN).
    """
    steps: list[LagStep] = []
    first: int | None = None
    previous = None
    taus = list(range(min(cfg.T - 1, MAX_LAG_SCAN) + 1))
    runs = run_against_oracle_many(run, [(dataclasses.replace(cfg, truncate=tau), None) for tau in taus])
    for tau, r in zip(taus, runs, strict=True):
        if r is None:
            return None
        arrays, ref = r
        if ref is None:  # the target raised
            failing = (RAISED,)
            rel = {}
            norm = float("nan")
        else:
            failing = tuple(a.name for a in arrays if not a.passed and a.name in RECURRENT_FIELDS)
            rel = {a.name: a.rel_error for a in arrays if a.name in RECURRENT_FIELDS}
            G = _field_value(ref, field)
            norm = float(np.linalg.norm(G if previous is None else G - previous))
            previous = G
        steps.append(LagStep(tau=tau, rel_errors=rel, failing=failing, lag_term_norm=norm))
        if failing and first is None:
            first = tau
        if first is not None and tau >= first + LAGS_AFTER_FIRST:
            break
    return steps, first


def _candidates(c: RNNConfig) -> Iterator[RNNConfig]:
    """Simpler configurations than c, the simplest change first (each changes one thing)."""
    r = dataclasses.replace
    for T in sorted({1, 2, 3, c.T // 2, c.T - 1}):
        if 1 <= T < c.T:
            yield r(c, T=T, truncate=None if c.truncate is None else min(c.truncate, T + 1))
    if c.B is not None:
        yield r(c, B=None, s0_kind="shared" if c.s0_kind == "per_row" else c.s0_kind)
        for B in range(1, c.B):
            yield r(c, B=B)
    if c.use_mask:
        yield r(c, use_mask=False)
    if c.s0_kind is not None:
        yield r(c, s0_kind=None)
        if c.s0_kind == "per_row":
            yield r(c, s0_kind="shared")
    if c.truncate is not None:
        yield r(c, truncate=None)
        for tau in range(c.truncate):
            yield r(c, truncate=tau)
    if c.reduction != "sum":
        yield r(c, reduction="sum")
    if c.bias:
        yield r(c, bias=False)
    if c.cell == "rnn" and c.activation != "identity":
        yield r(c, activation="identity")  # the simplest: f' = 1
    if c.cell == "rnn" and c.activation not in ("identity", "tanh"):
        yield r(c, activation="tanh")
    if not c.tokens:
        yield r(c, tokens=True)
    if c.weight_scale != 1.0:
        yield r(c, weight_scale=1.0)
    for name, least in (("H", 1), ("D", 1), ("K", 2)):
        for v in range(least, getattr(c, name)):
            yield r(c, **{name: v})


def shrink(
    run: RunTarget, cfg: RNNConfig, fields: set[str], check_id: int, budget: int = SHRINK_BUDGET
) -> tuple[ConfigCheck | None, int]:
    """Greedy shrinking: (the smallest failing configuration's check, evaluations used)."""
    current: ConfigCheck | None = None
    evaluations = 0
    improved = True
    while improved and evaluations < budget:
        improved = False
        base = cfg if current is None else current.config
        for cand in _candidates(base):
            if evaluations >= budget:
                break
            evaluations += 1
            r = run_against_oracle(run, cand)
            if r is None:
                continue
            arrays = r[0]
            if _failing(arrays) & fields:
                current = ConfigCheck(
                    check_id, "oracle", cand, "fail", tuple(arrays), failure_message(arrays, "the oracle")
                )
                improved = True
                break
    return current, evaluations


def _lag_words(first: int) -> str:
    if first == 0:
        return (
            "it already disagrees with truncate=0, where each E_t keeps only its own step k = t: "
            "the immediate terms (lag 0) are wrong"
        )
    agree = "0" if first == 1 else f"0..{first - 1}"
    return (
        f"it agrees with the oracle's truncated gradient for truncate = {agree} and first disagrees at "
        f"truncate = {first}: the immediate terms are right and the recurrence is wrong, from the terms "
        f"at lag {first} (k = t - {first}) on"
    )


def _growth_words(steps: list[LagStep], field: str, first: int) -> str:
    errs = [s.rel_errors.get(field) for s in steps if s.tau >= first]
    errs = [e for e in errs if e is not None and np.isfinite(e)]
    if len(errs) < 2:
        return ""
    if errs[-1] > errs[0] * 1.5:
        trend = "grows"
    elif errs[-1] > errs[0] / 1.5:
        trend = "stays about the same"
    else:
        trend = "shrinks"
    return (
        f"; the relative error of {field} {trend} with more lags "
        f"({', '.join(f'{e:.1e}' for e in errs)} for truncate = {first}..{first + len(errs) - 1})"
    )


@dataclass(frozen=True)
class _Where:
    """Where a disagreement sits (see Localization): the class, in words, and the lag scan."""

    where: str
    words: str
    method: str = "none"
    steps: tuple[LagStep, ...] = ()
    first_lag: int | None = None


def _by_lag(run: RunTarget, cfg: RNNConfig, field: str, smallest_T: int | None) -> _Where:
    """The lag of a disagreement in a recurrent field: by truncation, else by sequence length."""
    scan = lag_scan(run, cfg, field)
    if scan is not None:
        steps, first = scan
        if first is not None:
            where = "immediate" if first == 0 else "recurrence"
            words = _lag_words(first) + _growth_words(steps, field, first)
            return _Where(where, words, "truncate", tuple(steps), first)
        top = steps[-1].tau if steps else 0
        why = (
            "its full-BPTT path differs from its truncated one"
            if top >= cfg.T - 1
            else f"the error is at a lag beyond {top}"
        )
        words = f"it agrees with the oracle at every truncate = 0..{top} but not with full BPTT ({why})"
        return _Where("undetermined", words, "truncate", tuple(steps))
    if smallest_T == 1:
        words = (
            "the target has no truncate option; it already disagrees on a single step (T = 1), "
            "where there is no recurrence: the immediate terms (lag 0) are wrong"
        )
        return _Where("immediate", words, "sequence length")
    if smallest_T is not None:
        words = (
            f"the target has no truncate option; it agrees on sequences of up to {smallest_T - 1} "
            f"step(s) and first disagrees at T = {smallest_T}: the recurrence is wrong "
            f"(terms at lag <= {smallest_T - 1})"
        )
        return _Where("recurrence", words, "sequence length")
    words = "the target has no truncate option and no prefix of the sequence disagrees"
    return _Where("undetermined", words, "sequence length")


def _where(
    run: RunTarget,
    cfg: RNNConfig,
    failing: list[ArrayCheck],
    float32: bool,
    field: str | None,
    smallest_T: int | None,
) -> _Where:
    """Classify a disagreement: exception, float32 precision, the loss, the output layer, or a lag."""
    names = {a.name for a in failing}
    if RAISED in names:
        return _Where("undetermined", failing[0].note)
    malformed = [a for a in failing if a.index is None]
    if malformed:
        return _Where("malformed output", "; ".join(a.note for a in malformed))
    if float32:
        lo, hi = FLOAT32_BAND
        how = "float32 arrays" if any(a.dtype == "float32" for a in failing) else f"{lo:g}..{hi:g}"
        words = (
            f"every disagreeing array is off by float32 rounding ({how}), not by a wrong term: float32 "
            "arithmetic cannot meet the float64 tolerance (rtol 1e-10)"
        )
        return _Where("precision", words)
    if "loss" in names:
        words = (
            "the loss itself disagrees, so the forward pass or the loss is wrong (and every gradient with it)"
        )
        return _Where("forward pass", words)
    if field is None:
        words = (
            f"only {', '.join(a.name for a in failing)} disagree: the output layer o_t = V s_t + c "
            "(V h_t + c for a gated cell), which does not go through the recurrence"
        )
        return _Where("output layer", words)
    return _by_lag(run, cfg, field, smallest_T)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two float64 computations of the same array agree (relative 1e-8 of the larger)."""
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) if a.size else 0.0
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= 1e-8 * scale + 1e-12


def recognise_dW(run: RunTarget, cfg: RNNConfig) -> list[str]:
    """What the target's wrong dW is, when it is one of the known mistakes (step 4 of the
    module docstring), on ``cfg`` with full BPTT; [] when none, or when the recomputation does
    not reproduce the oracle's dW (then nothing is said)."""
    full = dataclasses.replace(cfg, truncate=None)
    (reply,) = run([Request("call", full)])
    prob = problem_for(full)
    mine = reply.fields.get("W") if reply.status == "ok" else None
    if prob is None or mine is None:
        return []
    s, delta = elman_trajectory(prob)  # s[:, t + 1] = s_t, s[:, 0] = s_{-1}; delta_t = dE/da_t
    expected = np.asarray(oracle_reference(prob).grads["W"], dtype=np.float64)
    mine = np.asarray(mine, dtype=np.float64)
    if mine.shape != expected.shape or not _close(np.einsum("bti,btj->ij", delta, s[:, :-1]), expected):
        return []  # dW = sum_t delta_t s_{t-1}^T does not reproduce the oracle here: say nothing
    shifted = np.einsum("bti,btj->ij", delta, s[:, 1:])  # sum_t delta_t s_t^T
    if _close(mine, shifted) and not _close(shifted, expected):
        return ["dW equals sum_t delta_t s_t^T (delta_t = dE/da_t, from the oracle's own states): "
                "s_t is used where s_{t-1} belongs"]  # fmt: skip
    if _close(mine, expected.T) and not _close(expected, expected.T):
        return ["dW is the transpose of the true dW: sum_t s_{t-1} delta_t^T where sum_t delta_t "
                "s_{t-1}^T belongs"]  # fmt: skip
    if not mine.any() and expected.any():
        return ["dW is zero everywhere"]
    return []


def _localizable(c: ConfigCheck) -> bool:
    """A disagreement, an exception or an unreadable result; not a crash, exit, hang or
    modified input (rerunning those would only repeat them)."""
    if c.arrays:
        return True
    return c.message.startswith(("the target raised", "the target returned", "the target's result"))


#: The kinds of check that ran the target itself (the others are probes, or cross-checks of
#: manual_bptt's other methods): only those are localized.
_TARGET_KINDS = ("oracle", "torch_rnn", "finite_differences")


def select(checks: list[ConfigCheck], limit: int) -> list[ConfigCheck]:
    """Failing checks to localize: the most informative first (oracle checks, most disagreeing
    arrays, then the smallest configuration), each adding an array not already covered."""
    failing = [c for c in checks if c.status == "fail" and c.kind in _TARGET_KINDS and _localizable(c)]
    failing.sort(key=lambda c: (c.kind != "oracle", -len(c.failing), c.size_key(), c.id))
    chosen: list[ConfigCheck] = []
    covered: set[str] = set()
    for c in failing:
        if len(chosen) >= limit:
            break
        names = set(c.failing) or {c.message.split(":")[0]}
        if not names <= covered:
            covered |= names
            chosen.append(c)
    return chosen


def localize(run: RunTarget, check: ConfigCheck, *, shrink_budget: int = SHRINK_BUDGET) -> Localization:
    """Localize one failing check (see the module docstring); the target runs through ``run``."""
    cfg = check.config
    arrays = list(check.arrays) if check.kind == "oracle" and check.arrays else None
    if arrays is None:  # against another reference, or the target raised (no arrays)
        r = run_against_oracle(run, cfg)
        arrays = [] if r is None else r[0]
    fields_by_error = [a for a in sorted(arrays, key=lambda a: -a.rel_error) if not a.passed]
    fields = tuple(a.name for a in fields_by_error)
    head = f"#{check.id} {check.kind}"
    if not fields:
        return Localization(
            check=check,
            fields=check.failing,
            worst=check.worst or _raised(check.message),
            float32=looks_like_float32(list(check.arrays)),
            where="undetermined",
            first_lag=None,
            lag_method="none",
            field=None,
            lag_steps=(),
            smallest_T=None,
            shrunk=None,
            shrink_evaluations=0,
            verdict=f"{head}: {check.message} The oracle agrees with the target on this configuration, "
            f"so the disagreement is between the target and {check.kind} only.",
        )
    worst = fields_by_error[0]
    float32 = looks_like_float32(arrays)
    field_set = set(fields)
    smallest_T = smallest_failing_length(run, cfg, field_set)
    recurrent = [f for f in fields if f in RECURRENT_FIELDS]
    field = ("W" if "W" in recurrent else recurrent[0]) if recurrent else None
    at = _where(run, cfg, fields_by_error, float32, field, smallest_T)
    patterns = recognise_dW(run, cfg) if cfg.cell == "rnn" and "W" in field_set else []
    if patterns:
        at = dataclasses.replace(at, words=at.words + "; " + "; ".join(patterns))
    shrunk, evaluations = shrink(run, cfg, field_set, check.id, shrink_budget)
    if fields == (RAISED,):
        verdict = f"{head}: {worst.note}."
    else:
        verdict = (
            f"{head}: {', '.join(fields)} disagree{'s' if len(fields) == 1 else ''} with the oracle; worst "
            f"{worst.describe()}. Where: {at.where}: {at.words}."
        )
    if float32:
        verdict += " Compute in float64 (or check at a float32 tolerance)."
    if smallest_T is not None:
        verdict += f" Smallest failing sequence: its first {smallest_T} step(s) (T = {smallest_T})."
    if shrunk is not None:
        verdict += (
            f" Smallest failing configuration (greedy shrinking, {evaluations} runs): "
            f"{describe_config(shrunk.config)}"
            + (f" ({', '.join(shrunk.failing)} disagree)." if shrunk.failing != (RAISED,) else ".")
        )
    else:
        verdict += f" Shrinking found nothing smaller than {describe_config(cfg)}."
    return Localization(
        check=check,
        fields=fields,
        worst=worst,
        float32=float32,
        where=at.where,
        first_lag=at.first_lag,
        lag_method=at.method,
        field=field if at.method != "none" else None,
        lag_steps=at.steps,
        smallest_T=smallest_T,
        shrunk=shrunk,
        shrink_evaluations=evaluations,
        verdict=verdict,
        explanation=worst.note if fields == (RAISED,) else at.words,
    )
