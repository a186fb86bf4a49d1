"""A computation that overflows raises NonFiniteError naming the step, never a silent NaN.

Cases (H = 4 unless stated):
    forward overflow   identity activation, W = 1.5 I: s_t grows as 1.5^t, past float64's 1.8e308
                       near t = 1750 (T = 2000) and past float32's 3.4e38 near t = 219 (T = 230).
    backward overflow  tanh, U = 0, b = 0, s0 = 0, W = 2 I: every state is exactly 0 (finite), but
                       dE/da_t grows as 2^(T-1-t) from the last step down, past float64 near
                       T - 1 - t = 1024 (T = 1100).
No numpy RuntimeWarning may escape (warnings are errors inside these tests).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import manual_bptt as mb

H, D, K = 4, 3, 2


def exploding_identity(dtype):
    """Identity activation with W = 1.5 I: |s_t| ~ 1.5^t."""
    p = mb.RNNParams(U=np.full((H, D), 0.1), W=1.5 * np.eye(H), V=np.ones((K, H)), b=None, c=None)
    return p.astype(dtype)


def exploding_backward():
    """tanh with zero states throughout and W = 2 I: dE/da_t ~ 2^(T-1-t), the states stay 0."""
    rng = np.random.default_rng(0)
    return mb.RNNParams(U=np.zeros((H, D)), W=2.0 * np.eye(H), V=rng.standard_normal((K, H)), b=None, c=None)


def tokens(T):
    return np.zeros(T, dtype=np.int64), np.zeros(T, dtype=np.int64)


def raises_nonfinite(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the test
        with pytest.raises(mb.NonFiniteError) as info:
            call()
    return info.value


@pytest.mark.parametrize(("dtype", "T", "first"), [(np.float64, 2000, 1750), (np.float32, 230, 219)])
def test_bptt_names_the_first_step_whose_state_overflows(dtype, T, first):
    xs, ys = tokens(T)
    err = raises_nonfinite(lambda: mb.bptt(exploding_identity(dtype), xs, ys, activation="identity"))
    assert err.what == "s_t"
    # 0.1 * 3 * 1.5^t / 0.5 reaches the largest float near step `first`: allow a few steps
    assert abs(err.step - first) <= 5, err.step
    assert str(err).startswith(f"s_t: not finite (NaN or inf) at step t = {err.step} ")
    assert np.dtype(dtype).name in str(err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_names_the_first_step_whose_state_overflows(dtype):
    T = 2000 if dtype == np.float64 else 230
    err = raises_nonfinite(lambda: mb.forward(exploding_identity(dtype), tokens(T)[0], activation="identity"))
    assert err.what == "s_t" and err.step < T


def test_truncated_bptt_and_batched_dense_input_overflow_are_named_too():
    xs = np.ones((2, 2000, D))
    ys = np.zeros((2, 2000), dtype=np.int64)
    p = exploding_identity(np.float64)
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, activation="identity", truncate=3))
    assert err.what == "s_t" and 1700 < err.step < 2000


@pytest.mark.parametrize("truncate", [None, 1050])
def test_backward_overflow_names_the_first_step_reached_by_the_backward_pass(truncate):
    T = 1100
    xs, ys = tokens(T)
    p = exploding_backward()
    assert np.all(mb.forward(p, xs).s == 0)  # the forward pass is finite
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    assert err.what == "dE/da_t"
    # |dE/da_t| ~ 2^(T-1-t) |e|: past 1.8e308 about 1020 steps below the last one
    assert T - 1 - 1030 <= err.step <= T - 1 - 1010, err.step


def test_just_below_overflow_is_finite_and_warning_free():
    T = 1500
    xs, ys = tokens(T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mb.bptt(exploding_identity(np.float64), xs[:T], ys[:T], activation="identity", truncate=2)
    assert np.isfinite(r.loss) and all(np.isfinite(a).all() for a in r.grads.arrays())


def test_nonfinite_error_is_a_floating_point_error_exported_by_the_package():
    assert mb.NonFiniteError is mb.errors.NonFiniteError
    assert issubclass(mb.NonFiniteError, FloatingPointError)
