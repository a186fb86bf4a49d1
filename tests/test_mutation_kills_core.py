"""Tests added to kill mutants of src/manual_bptt/core.py that survived mutation testing
(see docs/mutation.md). Each test names the mutants it kills. Some check the documented
contracts of core's internal helpers (backward_deltas, lag_deltas, run_forward's Trace),
which decompose and rtrl build on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_identical
from manual_bptt import RNNParams, bptt, forward
from manual_bptt._inputs import prepare
from manual_bptt.core import backward_deltas, lag_deltas, output_layer, run_forward

RNG = np.random.default_rng(31)
D, H, K, B, T = 5, 7, 4, 3, 30
P = RNNParams.init(D, H, K, seed=4)
XS = RNG.standard_normal((B, T, D))
YS = RNG.integers(0, K, (B, T))


@pytest.mark.parametrize("tau", [T - 1, T, T + 5])
def test_truncate_of_at_least_T_minus_1_is_full_bptt_exactly(tau):
    # kills backward_deltas__mutmut_5 (tau >= T-1 -> tau > T-1) and _6 (-> tau >= T+1): such
    # a tau keeps every term, so it must be the full recursion itself (not the O(tau T)
    # lag-by-lag sum, which rounds differently).
    assert_identical(bptt(P, XS, YS, truncate=tau), bptt(P, XS, YS))


def test_backward_deltas_with_truncate_of_at_least_T_minus_1_is_the_full_recursion():
    # kills backward_deltas__mutmut_4 (tau >= T-1 -> tau > T-1) and _5 (-> tau >= T+1):
    # bptt routes such a tau to its blocked full recursion itself, so only a direct call
    # reaches this branch; the lag-by-lag sum would round differently.
    tr, e = _trace_and_e()
    full = backward_deltas(tr, e, None)
    for tau in (T - 1, T):
        np.testing.assert_array_equal(backward_deltas(tr, e, tau), full)


def test_backward_deltas_of_a_single_step():
    # kills backward_deltas__mutmut_18 (carry shaped from e[1]: there is no step 1 when T = 1)
    tr, e = _trace_and_e(xs=XS[:, :1], ys=YS[:, :1])
    delta = backward_deltas(tr, e, None)
    np.testing.assert_array_equal(delta, e * tr.fprime)  # delta_0 = e_0 * f'(a_0)


def _trace_and_e(p=P, xs=XS, ys=YS):
    batch = prepare(p, xs, ys, activation="tanh", s0=None)
    tr = run_forward(p, batch)
    _, dO = output_layer(tr)
    e = (dO.reshape(-1, dO.shape[-1]) @ tr.V).reshape(tr.a.shape)
    return tr, e


@pytest.mark.parametrize("tau", [None, 3])
def test_backward_deltas_out_argument(tau):
    # kills backward_deltas__mutmut_9, _11, _12, _67, _69 (out=None broken) and _10, _68
    # (the result not written into out). Documented: out is an optional array for the
    # result, which may be e itself.
    tr, e = _trace_and_e()
    e_copy = e.copy()
    fresh = backward_deltas(tr, e, tau)
    np.testing.assert_array_equal(e, e_copy)  # e is only read when out is None
    out = np.empty_like(e)
    into = backward_deltas(tr, e, tau, out=out)
    assert into is out
    np.testing.assert_array_equal(into, fresh)
    same = backward_deltas(tr, e, tau, out=e)  # overwriting e itself, as bptt does
    assert same is e
    np.testing.assert_array_equal(same, fresh)


@pytest.mark.parametrize("batch_rows", [1, 2])
def test_lag_deltas_stops_at_T_minus_1(batch_rows):
    # kills lag_deltas__mutmut_15 (min(max_lag, T - 1) -> min(max_lag, T + 1)): lags are
    # 0..min(max_lag, T-1), each Q_L of shape (T - L, B, H)
    tr, e = _trace_and_e(xs=XS[:batch_rows], ys=YS[:batch_rows])
    lags = [(L, Q.shape) for L, Q in lag_deltas(tr, e, T + 3)]
    assert lags == [(L, (T - L, batch_rows, H)) for L in range(T)]


def test_trace_parameters_are_in_the_compute_dtype():
    # kills run_forward__mutmut_13, _15 (b) and _21, _23 (c) kept in their own dtype: the
    # Trace documents U, W, V, b, c in the compute dtype (float64 here: float64 inputs).
    p32 = P.astype(np.float32)
    tr = run_forward(p32, prepare(p32, XS, YS, activation="tanh", s0=None))
    for name in ("U", "W", "V", "b", "c"):
        a = getattr(tr, name)
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, getattr(p32, name).astype(np.float64), err_msg=name)


def test_forward_softmax_with_extreme_logits_matches_torch():
    # kills forward__mutmut_39 (o + max: overflow), _40 and _42 (max over every step and row:
    # rows with much smaller logits underflow to 0 / 0). Identity activation, s_t = x_t:
    # row 0 has logits (1000, 2000), row 1 (-1000, -2000).
    p = RNNParams(U=[[1.0]], W=[[0.0]], V=[[1.0], [2.0]])
    xs = np.array([[[1000.0], [1000.0]], [[-1000.0], [-1000.0]]])
    fw = forward(p, xs, activation="identity")
    want = torch.softmax(torch.tensor(fw.o), dim=-1).numpy()
    assert np.all(np.isfinite(fw.y_hat))
    np.testing.assert_allclose(fw.y_hat, want, rtol=1e-12, atol=1e-300)
