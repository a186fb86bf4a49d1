"""Hypothesis strategies for random BPTT problems, and (re-exported) the comparison helpers.

Needs ``hypothesis`` (the ``test`` extra) besides numpy; never imports torch.

Random problems
    ``rnn_configs()`` draws an ``RNNConfig`` (sizes, input kind, activation, truncation,
    reduction, mask, initial state, weight scale, seed); ``make_problem(cfg)`` turns it into
    concrete arrays, deterministically from ``cfg.seed``. ``rnn_problems()`` does both::

        from hypothesis import given
        from manual_bptt.testing import rnn_problems

        @given(rnn_problems(max_T=20, max_H=10))
        def test_something(prob):
            r = manual_bptt.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())

The plain problem model (``RNNConfig``, ``Problem``, ``make_problem``, ``WEIGHT_SCALES``,
``S0_KINDS``) lives in ``manual_bptt.problems`` and the comparison (``assert_close``,
``max_rel_error``, ``result_fields``, ``assert_results_close``, ``central_differences``) in
``manual_bptt.checking``, both numpy only; they are re-exported here, so every
``manual_bptt.testing.*`` name keeps working.

Notation (as in the package): T steps, B sequences (None: unbatched), D inputs (the
vocabulary size for token inputs), H hidden units, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .activations import ACTIVATIONS
from .checking import (
    ATOL,
    RTOL,
    assert_close,
    assert_results_close,
    central_differences,
    max_rel_error,
    result_fields,
)
from .problems import CELLS, REDUCTIONS, S0_KINDS, WEIGHT_SCALES, Problem, RNNConfig, make_problem

__all__ = [
    "ATOL",
    "CELLS",
    "RTOL",
    "S0_KINDS",
    "WEIGHT_SCALES",
    "Problem",
    "RNNConfig",
    "assert_close",
    "assert_results_close",
    "central_differences",
    "make_problem",
    "max_rel_error",
    "result_fields",
    "rnn_configs",
    "rnn_problems",
]


def _bool_or(value: bool | None) -> st.SearchStrategy[bool]:
    return st.booleans() if value is None else st.just(bool(value))


def _check_range(name: str, lo: int, hi: int, least: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or lo < least or hi < lo:
        raise InvalidArgument(f"{name}: need integers {least} <= min <= max, got min={lo}, max={hi}")


@st.composite
def rnn_configs(
    draw: st.DrawFn,
    *,
    min_T: int = 1,
    max_T: int = 8,
    min_B: int = 1,
    max_B: int = 4,
    min_D: int = 1,
    max_D: int = 6,
    min_H: int = 1,
    max_H: int = 6,
    min_K: int = 2,
    max_K: int = 6,
    batched: bool | None = None,
    tokens: bool | None = None,
    bias: bool | None = None,
    activations: Sequence[str] | None = None,
    truncation: bool = True,
    reductions: Sequence[str] = REDUCTIONS,
    masks: bool | None = None,
    s0_kinds: Sequence[str | None] = S0_KINDS,
    weight_scales: Sequence[float] = WEIGHT_SCALES,
    distinct_sizes: bool = True,
    cells: Sequence[str] = ("rnn",),
) -> RNNConfig:
    """Strategy for RNNConfig.

    Args:
        min_*/max_*: inclusive size ranges for T, B, D, H, K (K >= 2 by default: with one
            class the loss and every gradient are identically zero).
        batched, tokens, bias, masks: fix the choice (True/False) or draw it (None).
        activations: names to draw from (default: all of manual_bptt.ACTIVATIONS).
        truncation: if True, truncate is None or an int in 0..T+2; if False, always None.
        reductions, s0_kinds, weight_scales: the values to draw from ("per_row" is only drawn
            for batched configs).
        distinct_sizes: draw T, D, H, K (and B when batched) pairwise different, so that a
            transposed or mis-indexed array shows up as a shape or value error. The ranges
            must leave room for that.
        cells: the cells to draw from, some of "rnn", "gru", "lstm" (default: the Elman cell
            alone, drawn exactly as before the option existed). A gated configuration has
            activation None.
    """
    cells = list(cells)
    if not cells or any(c not in CELLS for c in cells):
        raise InvalidArgument(f"cells: need a non-empty list of {CELLS}, got {cells!r}")
    _check_range("T", min_T, max_T, 1)
    _check_range("B", min_B, max_B, 1)
    _check_range("D", min_D, max_D, 1)
    _check_range("H", min_H, max_H, 1)
    _check_range("K", min_K, max_K, 1)
    used: list[int] = []

    def size(name: str, lo: int, hi: int) -> int:
        choices = [v for v in range(lo, hi + 1) if not (distinct_sizes and v in used)]
        if not choices:
            raise InvalidArgument(
                f"{name}: range {lo}..{hi} leaves no size distinct from {used}; widen it or "
                "pass distinct_sizes=False"
            )
        v = draw(st.sampled_from(choices))
        used.append(v)
        return v

    is_batched = draw(_bool_or(batched))
    B = size("B", min_B, max_B) if is_batched else None  # the smallest range goes first
    K = size("K", min_K, max_K)
    H = size("H", min_H, max_H)
    D = size("D", min_D, max_D)
    T = size("T", min_T, max_T)
    cell = draw(st.sampled_from(cells)) if len(cells) > 1 else cells[0]
    names = sorted(ACTIVATIONS) if activations is None else list(activations)
    activation = draw(st.sampled_from(names)) if cell == "rnn" else None
    truncate = draw(st.none() | st.integers(0, T + 2)) if truncation else None
    kinds = [k for k in s0_kinds if B is not None or k != "per_row"]
    return RNNConfig(
        T=T,
        B=B,
        D=D,
        H=H,
        K=K,
        tokens=draw(_bool_or(tokens)),
        bias=draw(_bool_or(bias)),
        activation=activation,
        truncate=truncate,
        reduction=draw(st.sampled_from(list(reductions))),
        use_mask=draw(_bool_or(masks)),
        s0_kind=draw(st.sampled_from(kinds)),
        weight_scale=draw(st.sampled_from(list(weight_scales))),
        seed=draw(st.integers(0, 2**32 - 1)),
        cell=cell,
    )


def rnn_problems(**kwargs: Any) -> st.SearchStrategy[Problem]:
    """Strategy for Problem: ``rnn_configs(**kwargs).map(make_problem)``."""
    return rnn_configs(**kwargs).map(make_problem)
