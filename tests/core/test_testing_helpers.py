"""manual_bptt.testing itself: the comparison must be able to fail, the strategies must draw
what they promise. Every other test relies on these helpers, so a helper that always passed
would make the whole suite vacuous."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis.errors import InvalidArgument

import manual_bptt as mb
from conftest import examples
from manual_bptt.testing import (
    S0_KINDS,
    WEIGHT_SCALES,
    RNNConfig,
    assert_close,
    assert_results_close,
    make_problem,
    max_rel_error,
    rnn_configs,
)


# ---------------------------------------------------------------------------------------------
# assert_close / max_rel_error
# ---------------------------------------------------------------------------------------------
def test_assert_close_passes_within_tolerance():
    a = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert_close(a, a.copy(), name="same")
    assert_close(a + 1e-11, a, name="within rtol * max|expected|")  # 1e-11 <= 3e-10 + 1e-12
    assert_close(np.zeros(3), np.zeros(3), name="zeros")
    assert_close(np.zeros(3) + 5e-13, np.zeros(3), name="within atol")
    assert_close(np.float32(1.0), 1.0, name="scalar, float32 vs float64")
    assert_close(np.zeros((0, 4)), np.zeros((0, 4)), name="empty")


@pytest.mark.parametrize(
    ("actual", "expected", "pattern"),
    [
        (np.array([[1.0, 2.0], [3.0, 4.0]]).T, np.array([[1.0, 2.0], [3.0, 4.0]]), r"index \(0, 1\)"),
        (np.array([1.0, 2.0, 3.0 + 1e-9]), np.array([1.0, 2.0, 3.0]), r"index \(2,\)"),
        (-np.array([1.0, 2.0]), np.array([1.0, 2.0]), "actual"),
        (np.array([1.0, np.nan]), np.array([1.0, 2.0]), "actual is not finite"),
        (np.array([1.0, 2.0]), np.array([np.inf, 2.0]), "expected is not finite"),
        (np.array([np.nan]), np.array([np.nan]), "not finite"),  # NaN == NaN must not pass
        (np.array([np.inf]), np.array([np.inf]), "not finite"),
        (np.zeros((2, 3)), np.zeros((3, 2)), "shape"),
        (np.zeros(3), np.zeros((3, 1)), "shape"),
        (np.array([1e-11]), np.array([0.0]), "tolerance"),  # 0 expected: atol only
    ],
)
def test_assert_close_fails(actual, expected, pattern):
    with pytest.raises(AssertionError, match=pattern):
        assert_close(actual, expected, name="X")


def test_assert_close_message_says_where_and_by_how_much():
    expected = np.arange(12.0).reshape(3, 4)
    actual = expected.copy()
    actual[2, 1] += 1e-6
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, name="grads.W")
    msg = str(info.value)
    for part in ("grads.W", "(2, 1)", "9.000001", "9.0", "tolerance 1.101e-09", "rtol 1e-10", "atol 1e-12"):
        assert part in msg, (part, msg)


def test_max_rel_error():
    assert max_rel_error(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == pytest.approx(0.25)
    assert max_rel_error(np.zeros(2), np.zeros(2)) == 0.0
    assert max_rel_error(np.array([1e-300]), np.array([0.0])) > 1e-10  # no 0/0, no silent 0
    assert max_rel_error(np.array([np.nan]), np.array([1.0])) == math.inf
    assert max_rel_error(np.array([1.0]), np.array([np.inf])) == math.inf
    with pytest.raises(ValueError, match="shapes"):
        max_rel_error(np.zeros(2), np.zeros(3))


def _result(**overrides):
    g = SimpleNamespace(U=np.ones((2, 3)), W=np.eye(2), V=np.ones((4, 2)), b=np.ones(2), c=None)
    base = {"loss": 1.5, "grads": g, "ds0": np.ones(2), "dxs": None, "final_state": np.zeros(2)}
    return SimpleNamespace(**{**base, **overrides})


def test_assert_results_close_checks_every_field_and_none_ness():
    errors = assert_results_close(_result(), _result())
    assert set(errors) == {"loss", "grads.U", "grads.W", "grads.V", "grads.b", "ds0", "final_state"}
    bad_grads = SimpleNamespace(**{**vars(_result().grads), "W": np.eye(2) * 2})
    cases = {
        "loss": _result(loss=1.6),
        "grads.W": _result(grads=bad_grads),
        "grads.c": _result(grads=SimpleNamespace(**{**vars(_result().grads), "c": np.ones(4)})),
        "ds0": _result(ds0=np.array([1.0, np.nan])),
        "dxs": _result(dxs=np.zeros((3, 3))),
        "final_state": _result(final_state=np.array([0.0, 1.0])),
    }
    for field, wrong in cases.items():
        with pytest.raises(AssertionError, match=rf"^{field}"):
            assert_results_close(wrong, _result())


# ---------------------------------------------------------------------------------------------
# rnn_configs / make_problem
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(1.0))
@given(cfg=rnn_configs())
def test_rnn_configs_draw_what_they_promise(cfg):
    assert 1 <= cfg.T <= 8 and 1 <= cfg.D <= 6 and 1 <= cfg.H <= 6 and 2 <= cfg.K <= 6
    sizes = [cfg.T, cfg.D, cfg.H, cfg.K] + ([] if cfg.B is None else [cfg.B])
    assert len(set(sizes)) == len(sizes), f"sizes not distinct: {sizes}"
    assert cfg.B is None or 1 <= cfg.B <= 4
    assert cfg.truncate is None or 0 <= cfg.truncate <= cfg.T + 2
    assert cfg.s0_kind in S0_KINDS and (cfg.s0_kind != "per_row" or cfg.B is not None)
    assert cfg.weight_scale in WEIGHT_SCALES and cfg.activation in mb.ACTIVATIONS


@settings(max_examples=examples(1.0))
@given(cfg=rnn_configs())
def test_make_problem_builds_consistent_deterministic_arrays(cfg):
    prob = make_problem(cfg)
    seq = (cfg.T,) if cfg.B is None else (cfg.B, cfg.T)
    p = prob.params
    assert (p.input_size, p.hidden_size, p.output_size) == (cfg.D, cfg.H, cfg.K)
    assert (p.b is None) == (not cfg.bias) and (p.c is None) == (not cfg.bias)
    rho = float(np.max(np.abs(np.linalg.eigvals(p.W))))
    assert 0.9 * cfg.weight_scale - 1e-12 <= rho <= 1.1 * cfg.weight_scale + 1e-12
    if cfg.tokens:
        assert prob.xs.shape == seq and prob.xs.dtype == np.int64
        assert prob.xs.min() >= 0 and prob.xs.max() < cfg.D
    else:
        assert prob.xs.shape == (*seq, cfg.D) and prob.xs.dtype == np.float64
    assert prob.ys.shape == seq and prob.ys.min() >= 0 and prob.ys.max() < cfg.K
    want_s0 = {None: None, "shared": (cfg.H,), "per_row": (cfg.B, cfg.H)}[cfg.s0_kind]
    assert (None if prob.s0 is None else prob.s0.shape) == want_s0
    if cfg.use_mask:
        assert prob.mask.shape == seq and prob.mask.dtype == np.bool_ and prob.mask.any()
    else:
        assert prob.mask is None
    assert repr(prob) == f"make_problem({cfg!r})"
    again = make_problem(cfg)
    for a, b in zip((prob.xs, prob.ys, prob.s0, prob.mask, *p.arrays()),
                    (again.xs, again.ys, again.s0, again.mask, *again.params.arrays()), strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)
    other = make_problem(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert not np.array_equal(other.params.U, p.U)


def first(strategy):
    """The first (simplest) value a strategy draws, without Hypothesis' example() warning."""
    return find(strategy, lambda _: True, settings=settings(database=None, max_examples=10))


def test_rnn_configs_fixed_choices_and_impossible_ranges():
    cfg = first(rnn_configs(batched=True, tokens=False, bias=False, activations=["relu"], truncation=False,
                            reductions=["mean"], masks=True, s0_kinds=["per_row"], weight_scales=[0.5]))
    assert cfg.B is not None and not cfg.tokens and not cfg.bias and cfg.activation == "relu"
    assert cfg.truncate is None and cfg.reduction == "mean" and cfg.use_mask
    assert cfg.s0_kind == "per_row" and cfg.weight_scale == 0.5
    with pytest.raises(InvalidArgument, match="distinct"):
        first(rnn_configs(batched=True, max_B=1, min_K=1, max_K=1))
    with pytest.raises(InvalidArgument):
        first(rnn_configs(min_T=0))
    ones = dict(max_B=1, min_K=1, max_K=1, max_H=1, max_D=1, max_T=1)
    assert first(rnn_configs(batched=True, distinct_sizes=False, **ones)).T == 1


def test_rnn_config_rejects_inconsistent_fields():
    base = {"T": 3, "B": None, "D": 2, "H": 4, "K": 5, "tokens": True, "bias": True, "activation": "tanh",
            "truncate": None, "reduction": "sum", "use_mask": False, "s0_kind": None, "weight_scale": 1.0,
            "seed": 0}
    with pytest.raises(ValueError, match="s0_kind"):
        RNNConfig(**{**base, "s0_kind": "per_row"})
    with pytest.raises(ValueError, match="s0_kind"):
        RNNConfig(**{**base, "s0_kind": "rows"})
    with pytest.raises(ValueError, match="reduction"):
        RNNConfig(**{**base, "reduction": "avg"})
