"""The backward recursion and forward pass at their edges: truncation that keeps every term,
a single step, the ``out`` buffer, the last lag, the compute dtype of the Trace, and softmax
with extreme logits. Some check the documented contracts of the Elman fast path's internal helpers
(truncated_deltas, lag_deltas, run_forward's Trace), which decompose and rtrl build on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_identical
from manual_bptt import RNNParams, bptt, forward
from manual_bptt._inputs import prepare
from manual_bptt.fast.elman import delta_grads, lag_deltas, run_forward, truncated_deltas
from manual_bptt.output import output_layer
from manual_bptt.testing import assert_close

RNG = np.random.default_rng(31)
D, H, K, B, T = 5, 7, 4, 3, 30
P = RNNParams.init(D, H, K, seed=4)
XS = RNG.standard_normal((B, T, D))
YS = RNG.integers(0, K, (B, T))


@pytest.mark.parametrize("tau", [T - 1, T, T + 5])
def test_truncate_of_at_least_T_minus_1_is_full_bptt_exactly(tau):
    # A tau >= T - 1 keeps every term, so it must be the full recursion itself (not the
    # O(tau T) lag-by-lag sum, which rounds differently): exactly at T - 1, and above.
    assert_identical(bptt(P, XS, YS, truncate=tau), bptt(P, XS, YS))


@pytest.mark.parametrize("tau", [T - 1, T])
def test_truncated_deltas_that_keep_every_term_give_the_gradients_of_the_full_recursion(tau):
    # The lag-by-lag sum with tau >= T - 1 and bptt's blocked reverse recursion are two ways
    # to the same g_k: their gradients agree to rounding (not bitwise: the sums differ).
    tr, e = _trace_and_e()
    dU, dW, db, ds0, dxs = delta_grads(tr, truncated_deltas(tr, e, tau))
    full = bptt(P, XS, YS)
    for name, got, want in (
        ("U", dU, full.grads.U),
        ("W", dW, full.grads.W),
        ("b", db, full.grads.b),
        ("ds0", ds0, full.ds0),
        ("dxs", dxs, full.dxs),
    ):
        assert_close(got, want, name=name)


def test_truncated_deltas_of_a_single_step():
    # T = 1: there is no step 1 to shape the carried term from
    tr, e = _trace_and_e(xs=XS[:, :1], ys=YS[:, :1])
    delta = truncated_deltas(tr, e, 0)
    np.testing.assert_array_equal(delta, e * tr.fprime)  # delta_0 = e_0 * f'(a_0)


def _trace_and_e(p=P, xs=XS, ys=YS):
    batch = prepare(p, xs, ys, activation="tanh", s0=None)
    tr = run_forward(p, batch)
    n, H = batch.T * batch.B, batch.H
    y, w = batch.Y.reshape(n), batch.weight.reshape(n)
    out = output_layer(tr.s.reshape(n, H), tr.V.T, tr.V, tr.c, y, w, overflow=lambda loss: None)
    e = out.e.reshape(tr.a.shape)  # e_t = V^T dE/do_t
    return tr, e


@pytest.mark.parametrize("tau", [0, 3])
def test_truncated_deltas_out_argument(tau):
    # Documented: out is an optional array for the result, which may be e itself; without
    # it e is only read, and with it the result is written there and returned.
    tr, e = _trace_and_e()
    e_copy = e.copy()
    fresh = truncated_deltas(tr, e, tau)
    np.testing.assert_array_equal(e, e_copy)  # e is only read when out is None
    out = np.empty_like(e)
    into = truncated_deltas(tr, e, tau, out=out)
    assert into is out
    np.testing.assert_array_equal(into, fresh)
    same = truncated_deltas(tr, e, tau, out=e)  # overwriting e itself, as bptt does
    assert same is e
    np.testing.assert_array_equal(same, fresh)


@pytest.mark.parametrize("batch_rows", [1, 2])
def test_lag_deltas_stops_at_T_minus_1(batch_rows):
    # lags are 0..min(max_lag, T-1), each Q_L of shape (T - L, B, H), even for max_lag > T
    tr, e = _trace_and_e(xs=XS[:batch_rows], ys=YS[:batch_rows])
    lags = [(L, Q.shape) for L, Q in lag_deltas(tr, e, T + 3)]
    assert lags == [(L, (T - L, batch_rows, H)) for L in range(T)]


def test_trace_parameters_are_in_the_compute_dtype():
    # The Trace documents U, W, V, b, c in the compute dtype (float64 here: float64 inputs),
    # the biases included.
    p32 = P.astype(np.float32)
    tr = run_forward(p32, prepare(p32, XS, YS, activation="tanh", s0=None))
    for name in ("U", "W", "V", "b", "c"):
        a = getattr(tr, name)
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, getattr(p32, name).astype(np.float64), err_msg=name)


def test_forward_softmax_with_extreme_logits_matches_torch():
    # The maximum is subtracted (adding it overflows), per step and row (one maximum over
    # every step and row underflows the rows with much smaller logits to 0 / 0). Identity
    # activation, s_t = x_t: row 0 has logits (1000, 2000), row 1 (-1000, -2000).
    p = RNNParams(U=[[1.0]], W=[[0.0]], V=[[1.0], [2.0]])
    xs = np.array([[[1000.0], [1000.0]], [[-1000.0], [-1000.0]]])
    fw = forward(p, xs, activation="identity")
    want = torch.softmax(torch.tensor(fw.o), dim=-1).numpy()
    assert np.all(np.isfinite(fw.y_hat))
    np.testing.assert_allclose(fw.y_hat, want, rtol=1e-12, atol=1e-300)
