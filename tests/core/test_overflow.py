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

import gc
import warnings

import numpy as np
import pytest

import manual_bptt as mb
from manual_bptt.errors import NonFiniteError
from manual_bptt.fast.blocks import step_blocks
from manual_bptt.gated_params import GRUParams, LSTMParams

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
    assert str(err) == (
        f"dE/da_t: not finite (NaN or inf) at step t = {err.step} (the first reached by the backward "
        "pass, which runs from t = T - 1 down): the computation overflowed in float64. The recursion "
        "grows without bound over these steps (e.g. the identity or relu activation with W of spectral "
        "radius above 1); use shorter sequences (truncate=, or chunks carried by s0=), smaller weights, "
        "or float64"
    )


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


# ---------------------------------------------------------------------------------------------
# the output layer, the layer backward and the gradient sums: each overflow named exactly
# ---------------------------------------------------------------------------------------------
def saturating(v_column, dtype=np.float64, c=None):
    """H = 2, tokens of a vocabulary of 2: token 0 leaves s_t = 0, token 1 saturates it at
    s_t = (1, 1) (tanh(100) is 1.0 exactly); V's first column is ``v_column`` and its second
    0, so o_t = v_column at the steps of token 1 and o_t = c (or 0) at the others."""
    U = np.array([[0.0, 100.0], [0.0, 100.0]])
    V = np.zeros((len(v_column), 2))
    V[:, 0] = v_column
    return mb.RNNParams(U=U, W=np.zeros((2, 2)), V=V, b=None, c=c).astype(dtype)


def test_logits_that_overflow_are_named_at_their_first_step_by_forward_and_bptt():
    """o_t = V s_t = 1e308 + 1e308 overflows only at the steps of token 1, the first being t = 2."""
    p = saturating(np.array([1e308, 0.0])).replace(V=np.array([[1e308, 1e308], [0.0, 0.0]]))
    xs = np.array([0, 0, 1, 0, 1])
    ys = np.zeros(5, dtype=np.int64)
    calls = (lambda: mb.forward(p, xs), lambda: mb.bptt(p, xs, ys), lambda: mb.bptt(p, xs, ys, truncate=1))
    for call in calls:
        err = raises_nonfinite(call)
        assert (err.what, err.step) == ("o_t", 2), (err.what, err.step)
        assert str(err).startswith("o_t: not finite (NaN or inf) at step t = 2 "), str(err)


@pytest.mark.parametrize("truncate", [None, 2])
def test_finite_logits_whose_loss_overflows_name_the_first_such_step(truncate):
    """o_t = (1.7e308, -1.7e308) is finite, but E_t = max o_t - o_t[y_t] overflows for label 1:
    the first step with token 1 and label 1 is t = 3 (at t = 1 the label is 0)."""
    p = saturating(np.array([1.7e308, -1.7e308]))
    xs = np.array([0, 1, 0, 1, 1, 0])
    ys = np.array([1, 0, 1, 1, 1, 1])
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    assert (err.what, err.step) == ("E_t", 3), (err.what, err.step)
    assert str(err).startswith("E_t: not finite (NaN or inf) at step t = 3 "), str(err)
    assert np.isfinite(mb.forward(p, xs).o).all()  # the logits themselves are finite


def test_a_sum_of_finite_losses_that_overflows_is_named_as_the_sum():
    """float32: E_t = 2e38 - 0 at both steps, each finite; their sum 4e38 overflows."""
    p = saturating(np.array([2e38, 0.0]), dtype=np.float32)
    xs, ys = np.array([1, 1]), np.array([1, 1])
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys))
    assert (err.what, err.step) == ("E", None)
    assert str(err) == "E: the sum of the finite terms w_t E_t of steps 0..1 overflowed in float32"
    one = mb.bptt(p, xs[:1], ys[:1])  # one step alone is finite
    assert one.loss == pytest.approx(2e38, rel=1e-6)


def test_layer_backward_under_truncation_names_the_first_step_the_backward_pass_reaches():
    """Elman layer, states all 0 (U = 0, s0 = 0), W = 2 I, dL/ds_7 = 1e308 and 0 elsewhere:
    the chain from step 7 doubles per step, so delta_{7,k} = 2^(7-k) 1e308 overflows for every
    k <= 6. With tau = 3 the steps 4, 5, 6 overflow; the backward pass reaches 6 first."""
    T, H = 10, 3
    p = mb.RNNParams(U=np.zeros((H, 2)), W=2.0 * np.eye(H), V=np.zeros((1, H)))
    dhs = np.zeros((T, H))
    dhs[7] = 1e308
    err = raises_nonfinite(lambda: mb.backward(p, np.zeros(T, dtype=np.int64), dhs, truncate=3))
    assert (err.what, err.step) == ("dE/da_t", 6), (err.what, err.step)
    assert str(err).startswith("dE/da_t: not finite (NaN or inf) at step t = 6 "), str(err)


def _layer_case(name):
    """float32 Elman layers whose error signals are finite but one gradient's sum overflows:
    (params, xs, dhs, s0, the gradient named)."""
    T, H, D = 10, 2, 10
    dhs = np.full((T, H), 1e38, dtype=np.float32)
    zeros_UW = dict(U=np.zeros((H, D)), W=np.zeros((H, H)), V=np.zeros((1, H)))
    if name == "dE/dU":  # the same token at every step: one column of dU sums 10 x 1e38
        return mb.RNNParams(**zeros_UW), np.zeros(T, dtype=np.int64), dhs, None
    if name == "dE/dW":  # distinct tokens (dU finite), s_{t-1} near tanh(1): dW sums 10 x 1e38
        p = mb.RNNParams(U=np.ones((H, D)), W=np.zeros((H, H)), V=np.zeros((1, H)))
        return p, np.arange(T), 3 * dhs, np.full(H, 0.5, dtype=np.float32)
    if name == "dE/db":  # states 0: dU, dW finite; db sums 10 x 1e38
        return mb.RNNParams(**zeros_UW, b=np.zeros(H)), np.arange(T), dhs, None
    one = np.zeros((T, H), dtype=np.float32)
    one[0] = 1e10
    if name == "dE/ds0":  # dE/ds0 = W^T g_0 = 1e30 x 1e10
        p = mb.RNNParams(U=np.zeros((H, D)), W=np.full((H, H), 1e30), V=np.zeros((1, H)))
        return p, np.arange(T), one, None
    # dE/dxs: dense zeros (states 0), dE/dx_0 = U^T g_0 = 1e30 x 1e10
    p = mb.RNNParams(U=np.full((H, D), 1e30), W=np.zeros((H, H)), V=np.zeros((1, H)))
    return p, np.zeros((T, D), dtype=np.float32), one, None


@pytest.mark.parametrize("name", ["dE/dU", "dE/dW", "dE/db", "dE/ds0", "dE/dxs"])
def test_layer_backward_names_the_gradient_whose_sum_overflows(name):
    p, xs, dhs, s0 = _layer_case(name)
    p = p.astype(np.float32)
    err = raises_nonfinite(lambda: mb.backward(p, xs, dhs, s0=s0))
    assert (err.what, err.step) == (name, None), (err.what, name)
    want = f"{name}: not finite (NaN or inf): the sum over the steps overflowed in float32"
    assert str(err).startswith(want), str(err)


# ---------------------------------------------------------------------------------------------
# bptt: every step's terms finite, one gradient's sum over the steps overflows (float32)
# ---------------------------------------------------------------------------------------------
BPTT_ORDER = ["dE/dU", "dE/dW", "dE/dV", "dE/db", "dE/dc", "dE/ds0", "dE/dxs"]
BIG = 2.0**126  # 8.5e37: ten of them overflow float32's 3.4e38, four do not
#: e_t = V^T dE/do_t = (a, a) for V = a * SAME, (a, -a) for V = a * ORTHOGONAL, when every logit
#: is 0 and the label 0 of K = 2 (dE/do_t = (-1/2, 1/2)); ORTHOGONAL's rows are orthogonal to
#: states with two equal entries, so the logits V s_t stay 0 however large s_t is.
SAME = np.array([[-1.0, -1.0], [1.0, 1.0]])
ORTHOGONAL = np.array([[-1.0, 1.0], [1.0, -1.0]])


def _bptt_case(case):
    """float32 Elman cells (H = 2, weights and inputs powers of 2 or 0, so the products that
    cancel are exact and every logit is 0) whose states, logits, loss and dE/da_t are finite,
    while the gradients of the test's ``past_float32`` overflow: their sums over the steps (for
    dE/ds0 = W^T delta_0 and dE/dx_0 = U^T delta_0, the sum inside one product).
    Returns (params, xs, ys, activation, extra keyword arguments of bptt).

    dE/dc = sum_t dE/do_t has no case: |dE/do_t| <= 1 per step (w_t <= 1 with reduction="sum"),
    so its sum could overflow float32 only past 3.4e38 steps; nor can its place in the order
    be seen.
    """
    T, H = 10, 2
    labels, one_token, distinct = np.zeros(T, dtype=np.int64), np.zeros(T, dtype=np.int64), np.arange(T)
    half = np.full(H, 0.5, dtype=np.float32)
    if case == "dE/dU, dE/dW, dE/db":  # identity, W = 0: s_t = s0 = 1/2, delta_t = e_t = (BIG, -BIG);
        # one token: a column of dU sums 10 x BIG, dW 10 x BIG / 2, db 10 x BIG
        p = mb.RNNParams(U=np.full((H, 1), 0.5), W=np.zeros((H, H)), V=BIG * ORTHOGONAL, b=np.zeros(H))
        return p, one_token, labels, "identity", {"s0": half}
    if case == "dE/dW, dE/db":  # the same with distinct tokens: each column of dU holds one delta_t
        p = mb.RNNParams(U=np.full((H, T), 0.5), W=np.zeros((H, H)), V=BIG * ORTHOGONAL, b=np.zeros(H))
        return p, distinct, labels, "identity", {"s0": half}
    if case == "dE/dW, dE/dV":  # identity, W = 0: s_t = (BIG, BIG), s0 = 0, delta_t = e_t = (1, -1):
        # dU sums 10 x 1, dW 9 x BIG, dV 10 x BIG / 2
        p = mb.RNNParams(U=np.full((H, 1), BIG), W=np.zeros((H, H)), V=ORTHOGONAL)
        return p, one_token, labels, "identity", {}
    if case == "dE/dV":  # as above with delta_t = e_t = 2^-10 (1, -1): dW (9 x 2^116) stays finite
        p = mb.RNNParams(U=np.full((H, 1), BIG), W=np.zeros((H, H)), V=2.0**-10 * ORTHOGONAL)
        return p, one_token, labels, "identity", {}
    if case == "dE/db":  # states 0: dW = dV = 0; distinct tokens: dU finite; db sums 10 x BIG
        p = mb.RNNParams(U=np.zeros((H, T)), W=np.zeros((H, H)), V=BIG * SAME, b=np.zeros(H))
        return p, distinct, labels, "tanh", {}
    if case == "dE/dV, dE/db, dE/ds0":
        return _states_and_signals_apart()
    if case == "dE/db, dE/ds0":  # states 0, K = 3: e_t = (BIG, 0) for label 0, (0, BIG) for label 1
        # (V's rows (-BIG, 0), (0, -BIG), (BIG, BIG)); W^T = [[0, 2^10], [0, 0]] sends (BIG, 0) to 0,
        # so delta_t = e_t: db sums 9 x BIG; label 1 at step 0: dE/ds0 = W^T delta_0 = (2^10 BIG, 0)
        V = BIG * np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
        p = mb.RNNParams(U=np.zeros((H, T)), W=np.array([[0.0, 0.0], [2.0**10, 0.0]]), V=V, b=np.zeros(H))
        ys = labels.copy()
        ys[0] = 1
        return p, distinct, ys, "tanh", {}
    first = {"mask": np.arange(T) == 0}  # only step 0 counted: delta_0 = e_0, every other delta_t 0
    if case == "dE/ds0":  # states 0 (U = 0): dW = dV = 0, dU = delta_0 = 2^40 (token inputs: no dxs);
        # dE/ds0 = W^T delta_0 = 2^100 x 2 x 2^40
        p = mb.RNNParams(U=np.zeros((H, 1)), W=np.full((H, H), 2.0**100), V=2.0**40 * SAME)
        return p, one_token, labels, "tanh", first
    xs = np.zeros((T, 3), dtype=np.float32)  # dense zeros: states 0, dU = dW = dV = 0
    if case == "dE/ds0, dE/dxs":  # dE/ds0 = W^T delta_0 and dE/dx_0 = U^T delta_0 = 2^100 x 2 x 2^40
        p = mb.RNNParams(U=np.full((H, 3), 2.0**100), W=np.full((H, H), 2.0**100), V=2.0**40 * SAME)
        return p, xs, labels, "tanh", first
    assert case == "dE/dxs"  # W = 0, so dE/ds0 = 0; dE/dx_0 = U^T delta_0 = 2^100 x 2 x 2^40
    p = mb.RNNParams(U=np.full((H, 3), 2.0**100), W=np.zeros((H, H)), V=2.0**40 * SAME)
    return p, xs, labels, "tanh", first


def _states_and_signals_apart():
    """dV and db both overflow, dW does not: the large states and the large dE/da_t are in
    different sequences of a batch of 2 (T = 128, identity, K = 3, H = 2, W = [[1, -1], [-1, 1]]).

    Sequence 0, token 0 (U's column (BIG, BIG)), labels 0: s_t = (BIG, BIG), which W sends to 0
    and V (rows 0, (1, -1), (-1, 1)) to logits 0; dE/do_t = (-2/3, 1/3, 1/3), so e_t = 0 and
    delta_t = 0, while dV's first row sums 128 x 2/3 x BIG.
    Sequence 1, tokens 1..128 (zero columns of U): states 0, labels 0 but the last 1, so e_t = 0
    but e_127 = (-1, 1); W^T doubles it at each step back: delta_t = 2^(127-t) (-1, 1), finite
    (2^127 at t = 0), but db sums 2^128 - 1, and dE/ds0 = W^T delta_0 = 2^128 (-1, 1).
    dW = sum_t delta_t s_{t-1}^T = 0 (each row has one of the two 0), dU: one delta_t per token.
    Truncated (delta_t keeps at most one step of the chain) only dV overflows.
    """
    T, H = 128, 2
    U = np.zeros((H, T + 1))
    U[:, 0] = BIG
    V = np.array([[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    p = mb.RNNParams(U=U, W=np.array([[1.0, -1.0], [-1.0, 1.0]]), V=V, b=np.zeros(H))
    xs = np.stack([np.zeros(T, dtype=np.int64), np.arange(1, T + 1)])
    ys = np.zeros((2, T), dtype=np.int64)
    ys[1, -1] = 1
    return p, xs, ys, "identity", {}


TWO_WAYS = [None, 1]  # full BPTT, and truncated BPTT with one step of the chain (T >= 10)


@pytest.mark.parametrize(
    ("case", "truncate", "past_float32"),
    [
        *[("dE/dU, dE/dW, dE/db", t, ["dE/dU", "dE/dW", "dE/db"]) for t in TWO_WAYS],
        *[("dE/dW, dE/db", t, ["dE/dW", "dE/db"]) for t in TWO_WAYS],
        *[("dE/dW, dE/dV", t, ["dE/dW", "dE/dV"]) for t in TWO_WAYS],
        *[("dE/dV", t, ["dE/dV"]) for t in TWO_WAYS],
        ("dE/dV, dE/db, dE/ds0", None, ["dE/dV", "dE/db", "dE/ds0"]),
        ("dE/dV, dE/db, dE/ds0", 1, ["dE/dV"]),
        *[("dE/db", t, ["dE/db"]) for t in TWO_WAYS],
        *[("dE/db, dE/ds0", t, ["dE/db", "dE/ds0"]) for t in TWO_WAYS],
        *[("dE/ds0", t, ["dE/ds0"]) for t in TWO_WAYS],
        *[("dE/ds0, dE/dxs", t, ["dE/ds0", "dE/dxs"]) for t in TWO_WAYS],
        *[("dE/dxs", t, ["dE/dxs"]) for t in TWO_WAYS],
    ],
)
def test_bptt_names_the_first_gradient_whose_sum_overflows(case, truncate, past_float32):
    """bptt names the first in BPTT_ORDER of the gradients past float32's range (``past_float32``,
    checked on the same case in float64); the cases where two or three overflow pin the order."""
    name = past_float32[0]
    p, xs, ys, act, kw = _bptt_case(case)
    p32 = p.astype(np.float32)
    err = raises_nonfinite(lambda: mb.bptt(p32, xs, ys, activation=act, truncate=truncate, **kw))
    assert (err.what, err.step) == (name, None), (err.what, name)
    want = f"{name}: not finite (NaN or inf): the sum over the steps overflowed in float32"
    assert str(err).startswith(want), str(err)
    # the same case in float64 is finite, and exactly the gradients expected are past float32's range
    xs64 = xs.astype(np.float64) if xs.dtype.kind == "f" else xs
    r = mb.bptt(p.astype(np.float64), xs64, ys, activation=act, truncate=truncate, **kw)
    grads = {"dE/dU": r.grads.U, "dE/dW": r.grads.W, "dE/dV": r.grads.V, "dE/db": r.grads.b,
             "dE/dc": r.grads.c, "dE/ds0": r.ds0, "dE/dxs": r.dxs}
    assert np.isfinite(r.loss) and all(np.isfinite(g).all() for g in grads.values() if g is not None)
    top = np.finfo(np.float32).max
    big = [g for g in BPTT_ORDER if grads[g] is not None and np.abs(grads[g]).max() > top]
    assert big == past_float32, big


# ---------------------------------------------------------------------------------------------
# the exact first step, at block boundaries, with the whole message
# ---------------------------------------------------------------------------------------------
def accumulating(H=2, D=2):
    """Identity activation, W = I, U's column of token 1 is 1e308: s_t = s_{t-1} + U x_t, so the
    state is 1e308 after the first token 1 and inf after the second (s0 = 0)."""
    U = np.zeros((H, D))
    U[:, 1] = 1e308
    return mb.RNNParams(U=U, W=np.eye(H), V=np.zeros((2, H)), b=None, c=None)


@pytest.mark.parametrize(("B", "T", "second"), [(1, 6, 3), (4, 600, 255), (4, 600, 256), (4, 600, 511)])
def test_a_state_that_overflows_is_named_at_its_exact_step_by_forward_and_bptt(B, T, second):
    """Token 1 at step 1 and at step `second` (0 elsewhere): s_t is finite before `second` and
    inf from it on, in every sequence. With B = 4 a block holds 256 steps, so 255 is the last
    step of the first block, 256 the first of the second, 511 the last of the second."""
    xs = np.zeros((B, T), dtype=np.int64)
    xs[:, [1, second]] = 1
    ys = np.zeros((B, T), dtype=np.int64)
    p = accumulating()
    want = (
        f"s_t: not finite (NaN or inf) at step t = {second} (the first such step): the computation "
        "overflowed in float64. The recursion grows without bound over these steps (e.g. the identity "
        "or relu activation with W of spectral radius above 1); use shorter sequences (truncate=, or "
        "chunks carried by s0=), smaller weights, or float64"
    )
    for call in (
        lambda: mb.forward(p, xs, activation="identity"),
        lambda: mb.bptt(p, xs, ys, activation="identity"),
        lambda: mb.bptt(p, xs, ys, activation="identity", truncate=2),
    ):
        err = raises_nonfinite(call)
        assert (err.what, err.step) == ("s_t", second)
        assert str(err) == want


def test_an_output_bias_that_makes_the_logits_overflow_is_counted():
    """V s_t = 1e308 is finite; with c = 1e308 the logit o_t[0] = 2e308 overflows at step 2."""
    p = saturating(np.array([1e308, 0.0]), c=np.array([1e308, 0.0]))
    xs = np.array([0, 0, 1, 0])
    err = raises_nonfinite(lambda: mb.bptt(p, xs, np.zeros(4, dtype=np.int64)))
    assert (err.what, err.step) == ("o_t", 2)


def test_a_loss_that_overflows_is_named_in_a_batch_and_masked_steps_do_not_count():
    """Two sequences; E_t overflows (as in the test above) at step 4 of sequence 1 only; at
    step 1 of sequence 0 it is finite but masked (weight 0): the first bad step is 4."""
    p = saturating(np.array([1.7e308, -1.7e308]))
    xs = np.array([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0]])
    ys = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0]])
    mask = np.ones((2, 6), dtype=bool)
    mask[0, 1] = False
    for reduction in ("sum", "mean"):
        err = raises_nonfinite(lambda reduction=reduction: mb.bptt(p, xs, ys, mask=mask, reduction=reduction))
        assert (err.what, err.step) == ("E_t", 4), (reduction, err.what, err.step)


def test_truncated_bptt_names_the_first_step_its_backward_pass_reaches():
    """States all 0 (U = 0), W = 2 I, V = (1e308, -1e308) per column: e_t = V^T dE/do_t is
    +-1e308 at every step (finite) and doubles across one step: with truncate = 2 every
    dE/da_k with k <= T - 2 overflows; the backward pass reaches k = T - 2 first."""
    T, H = 9, 2
    V = np.array([[1e308, 1e308], [-1e308, -1e308]])
    p = mb.RNNParams(U=np.zeros((H, 2)), W=2.0 * np.eye(H), V=V, b=None, c=None)
    xs, ys = np.zeros(T, dtype=np.int64), np.zeros(T, dtype=np.int64)
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=2))
    assert (err.what, err.step) == ("dE/da_t", T - 2), (err.what, err.step)


# ---------------------------------------------------------------------------------------------
# The loss and the gradient sums: named alike for every cell, by bptt full and truncated and by
# the layer backward
# ---------------------------------------------------------------------------------------------
CELL_PARAMS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
TRUNCATIONS = [None, 1]


def one_unit(cell, *, V, c=None):
    """D = H = 1, K = 2, U = 0 (so that any input leaves the pre-activations alone), W and the
    biases of init, the given V (2, 1) and c."""
    p = CELL_PARAMS[cell].init(1, 1, 2, seed=3)
    return p.replace(U=np.zeros_like(p.U), V=np.asarray(V, dtype=float).reshape(2, 1), c=c)


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("truncate", TRUNCATIONS)
def test_finite_loss_terms_whose_sum_overflows_are_named_E(cell, truncate):
    """V = 0 and c = (5e307, -5e307): o_t = c at every step, E_t = 1e308 for label 1 (finite),
    four of them sum past float64's 1.8e308."""
    p = one_unit(cell, V=[0.0, 0.0], c=np.array([5e307, -5e307]))
    xs, ys = np.zeros((4, 1)), np.ones(4, dtype=np.int64)
    assert mb.bptt(p, xs[:1], ys[:1]).loss == pytest.approx(1e308)  # one term: finite
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    assert (err.what, err.step) == ("E", None)
    assert str(err) == "E: the sum of the finite terms w_t E_t of steps 0..3 overflowed in float64"


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("truncate", TRUNCATIONS)
@pytest.mark.parametrize("T", [4, 1100])
def test_a_loss_term_that_overflows_with_finite_logits_is_named_at_its_step(cell, truncate, T):
    """V = 0 and c = (1.2e308, -1.2e308): finite logits o_t = c at every step. Label 0 gives
    E_t = 0; label 1 at step 3 gives E_3 = 2.4e308, past float64's 1.8e308. T = 1100: step 3 is
    in the first of two blocks of steps, which the output layer reaches last."""
    p = one_unit(cell, V=[0.0, 0.0], c=np.array([1.2e308, -1.2e308]))
    xs, ys = np.zeros((T, 1)), np.zeros(T, dtype=np.int64)
    ys[3] = 1
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    assert (err.what, err.step) == ("E_t", 3)
    assert str(err).startswith("E_t: not finite (NaN or inf) at step t = 3 (the first such step)")
    assert mb.bptt(p, xs[:3], ys[:3], truncate=truncate).loss == 0.0


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("truncate", TRUNCATIONS)
def test_a_gradient_sum_that_overflows_is_named_by_bptt_and_the_layer_backward(cell, truncate):
    """x_t = 1e308 with U = 0: every state and every per-step term is finite, but dE/dU = sum_t
    g_t x_t^T passes 1.8e308 over 40 steps. The first gradient in field order is dE/dU."""
    p = one_unit(cell, V=[1.0, -1.0])
    xs = np.full((40, 1), 1e308)
    ys = np.zeros(40, dtype=np.int64)
    want = "dE/dU: not finite (NaN or inf): the sum over the steps overflowed in float64; " \
        "use shorter sequences, smaller weights, or float64"
    for call in (lambda: mb.bptt(p, xs, ys, truncate=truncate),
                 lambda: mb.backward(p, xs, np.ones((40, 1)), truncate=truncate)):
        err = raises_nonfinite(call)
        assert (err.what, err.step, str(err)) == ("dE/dU", None, want)
    assert np.isfinite(mb.bptt(p, xs[:2], ys[:2], truncate=truncate).grads.U).all()  # two steps: finite


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("truncate", TRUNCATIONS)
def test_finite_loss_terms_of_one_block_whose_sum_overflows_name_the_steps_summed(cell, truncate):
    """Four terms E_t = 1e308 at steps 0..3 of T = 1100: their sum overflows inside the first
    block of steps (1024 steps for B = 1). The message names the steps whose terms were being
    summed: that block where the output layer runs a block at a time (the Elman cell, and the
    gated cells' full path), all T steps where it runs on every step at once (the gated cells'
    truncated path)."""
    T, block = 1100, step_blocks(1100, 1)[0][1]
    p = one_unit(cell, V=[0.0, 0.0], c=np.array([5e307, -5e307]))
    xs, ys = np.zeros((T, 1)), np.zeros(T, dtype=np.int64)
    ys[:4] = 1
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    last = T - 1 if (cell != "rnn" and truncate is not None) else block - 1
    assert (err.what, err.step) == ("E", None)
    assert str(err) == f"E: the sum of the finite terms w_t E_t of steps 0..{last} overflowed in float64"


@pytest.mark.parametrize("cell", CELL_PARAMS)
@pytest.mark.parametrize("truncate", TRUNCATIONS)
def test_finite_block_losses_whose_sum_overflows_are_named_E(cell, truncate):
    """The output layer runs a block of steps at a time: one term E_t = 1e308 at the first and
    at the last step of a long sequence (label 1; label 0 gives E_t = 0) makes each block's part
    finite and only their sum overflow; without the first step the loss is finite."""
    T = step_blocks(10**6, 1)[0][1] + 1  # one step more than a block holds
    p = one_unit(cell, V=[0.0, 0.0], c=np.array([5e307, -5e307]))
    xs, ys = np.zeros((T, 1)), np.zeros(T, dtype=np.int64)
    ys[[0, -1]] = 1
    err = raises_nonfinite(lambda: mb.bptt(p, xs, ys, truncate=truncate))
    assert (err.what, err.step) == ("E", None)
    assert str(err) == f"E: the sum of the finite terms w_t E_t of steps 0..{T - 1} overflowed in float64"
    assert mb.bptt(p, xs[1:], ys[1:], truncate=truncate).loss == pytest.approx(1e308)


def still_states(cell, *, V_scale=50.0):
    """Gated, D = 1, H = 4, K = 2, with the candidate's biases 0: with inputs 0 every state is
    exactly 0 (n_t = 0 for the GRU; g_t = 0, so c_t = 0 and h_t = 0, for the LSTM), whatever U and
    W are. The gradients of the gates' pre-activations are not 0 (through n_t, or g_t), and are
    scaled up by V."""
    P = CELL_PARAMS[cell]
    p = P.init(1, 4, 2, seed=5)
    H, cand = 4, 2  # the GRU's n block and the LSTM's g block are both the third
    b_ih, b_hh = p.b_ih.copy(), p.b_hh.copy()
    b_ih[cand * H : (cand + 1) * H] = 0.0
    b_hh[cand * H : (cand + 1) * H] = 0.0
    return p.replace(b_ih=b_ih, b_hh=b_hh, V=V_scale * p.V)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("part", ["ds0", "dxs"])
def test_a_gated_initial_state_or_input_gradient_that_overflows_is_named(cell, part):
    """dE/ds0 = W^T dgh_0 and dE/dx_t = U^T dgi_t. With every state 0 (still_states) W and U never
    enter the forward run, so they can be +-1e308 with the signs of dgh_0 (read off db_hh of one
    step) or dgi_0 (db_ih): the products sum past the largest float. Named by bptt, full (T = 1)
    and truncated to tau = 0 (T = 2, where step 1's chain stops at step 1), and by the layer
    backward; the LSTM's state gradient is its h part."""
    p = still_states(cell)
    xs1, ys1 = np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    probe = mb.bptt(p, xs1, ys1).grads
    assert np.all(mb.forward(p, np.zeros((2, 1))).h == 0)
    if part == "ds0":
        p = p.replace(W=1e308 * np.sign(probe.b_hh)[:, None] * np.ones_like(p.W))
        name = "dE/ds0" if cell == "gru" else "dE/ds0.h"
    else:
        p = p.replace(U=1e308 * np.sign(probe.b_ih)[:, None] * np.ones_like(p.U))
        name = "dE/dxs"
    want = f"{name}: not finite (NaN or inf): the sum over the steps overflowed in float64; " \
        "use shorter sequences, smaller weights, or float64"
    dhs = np.tile(p.V[0] - p.V[1], (2, 1))  # the direction the loss pulls h_t in
    for call in (lambda: mb.bptt(p, xs1, ys1),
                 lambda: mb.bptt(p, np.zeros((2, 1)), np.zeros(2, dtype=np.int64), truncate=0),
                 lambda: mb.backward(p, xs1, dhs[:1]),
                 lambda: mb.backward(p, np.zeros((2, 1)), dhs, truncate=0)):
        err = raises_nonfinite(call)
        assert (err.what, err.step, str(err)) == (name, None, want)


@pytest.mark.parametrize("call", ["forward", "backward", "backward_truncated"])
def test_a_call_after_one_whose_states_overflowed_computes_as_if_alone(call):
    """Each block of steps checks only the states it has computed: a call right after one that
    overflowed (whose inf may be left in the memory the next call is given) runs as if alone.
    B = 256 makes blocks of 4 steps; identity, U x_t = 10 and W = 1e77 I make s_t about
    10^(1 + 77 t): s_3 is finite, s_4, the first state of the second block, is not."""
    B, T = 256, 8
    assert step_blocks(T, B)[1][0] == 4
    xs = np.zeros((B, T), dtype=np.int64)
    bad = mb.RNNParams(U=np.full((H, D), 10.0), W=1e77 * np.eye(H), V=np.ones((K, H)))
    good = bad.replace(W=0.5 * np.eye(H))
    dhs = np.ones((B, T, H))
    run = {
        "forward": lambda p: mb.forward(p, xs, activation="identity").s,
        "backward": lambda p: mb.backward(p, xs, dhs, activation="identity").grads.W,
        "backward_truncated": lambda p: mb.backward(p, xs, dhs, activation="identity", truncate=1).grads.W,
    }[call]
    alone = run(good)
    for _ in range(3):
        err = raises_nonfinite(lambda: run(bad))
        assert (err.what, err.step) == ("s_t", 4)
        err.__traceback__ = None  # frees the failed call's arrays for the next call to be given
        del err
        gc.collect()
        np.testing.assert_array_equal(run(good), alone)


# ---------------------------------------------------------------------------------------------
# the gated cells: a state, logits or dE/dgh_t that overflows, named at its first step
# ---------------------------------------------------------------------------------------------


GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


def overflowing(cls):
    """Parameters and dense inputs (T = 5, D = 1) whose state is exactly 0 for steps 0..2, about 1
    (every unit, same sign) at step 3, and NaN from step 4 on: there W h_3 overflows to inf and
    meets an opposite infinity (GRU: r_4 = σ(-inf) = 0 times gh_n = inf; LSTM: gi_4 = -inf + gh_4 = inf).
    """
    xs = np.array([[0.0], [0.0], [0.0], [10.0], [0.0]])
    if cls is GRUParams:  # H = 2, blocks r, z, n
        U = np.array([[10.0]] * 2 + [[-10.0]] * 2 + [[10.0]] * 2)  # step 3: r = 1, z = 0, n = 1: h_3 = 1
        W = np.zeros((6, 2))
        W[:2], W[4:] = -1e308, 1e308  # step 4: gh_r = -inf, gh_n = +inf
    else:  # H = 3; step 3: every gate saturated, c_3 = 1, h_3 = tanh(1); step 4: gh = +inf
        U, W = np.full((12, 1), 10.0), np.full((12, 3), 1e308)
        xs[4] = -1e308  # gi_4 = -inf
    return cls(U=U, W=W, V=np.ones((2, W.shape[1]))), xs


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cls", GATED)
def test_a_state_that_stops_being_finite_is_named_by_its_first_step(cls):
    p, xs = overflowing(cls)
    mb.forward(p, xs[:4])  # finite up to step 3
    with pytest.raises(NonFiniteError, match="t = 4") as info:
        mb.bptt(p, xs, np.zeros(5, int))
    assert (info.value.what, info.value.step) == ("z_t", 4)
    with pytest.raises(NonFiniteError, match="t = 4"):
        mb.forward(p, xs)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cls", GATED)
def test_logits_that_overflow_are_named_by_their_first_step(cls):
    p, xs = overflowing(cls)
    p = p.replace(V=np.full(p.V.shape, 1e308))  # o_3 = V h_3 overflows; o_0..o_2 = 0
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs[:4], np.zeros(4, int))
    assert (info.value.what, info.value.step) == ("o_t", 3)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("truncate", [0, 1, 2])
def test_truncated_bptt_names_the_first_step_whose_logits_overflow(cls, truncate):
    """Unbatched, T = 4: o_t = V h_t is 0 at steps 0..2 and overflows at step 3 (see overflowing);
    the windowed recursion names the logits and that step, with the whole message."""
    p, xs = overflowing(cls)
    p = p.replace(V=np.full(p.V.shape, 1e308))
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs[:4], np.zeros(4, int), truncate=truncate)
    assert (info.value.what, info.value.step) == ("o_t", 3)
    assert str(info.value) == (
        "o_t: not finite from step t = 3 on (the computation overflowed); scale the parameters or inputs down"
    )


def saturated_output(cls, a=1e308):
    """H = D = 1, K = 2, no weights (U = W = 0), the candidate's bias 0.2: 0 < h_t < 0.2 at every
    step; V = (a, -a). The logits ±a h_t are finite and so is the loss (2 a h_t per step, label 1),
    but dE_t/dh_t = V^T (y_hat_t - onehot(1)) = V^T (1, -1) = 2a overflows at every step."""
    G = cls.GATES
    b_ih = np.zeros(G)
    b_ih[2] = 0.2  # the GRU's n block, the LSTM's g block
    p = cls(U=np.zeros((G, 1)), W=np.zeros((G, 1)), b_ih=b_ih, b_hh=np.zeros(G), V=np.array([[a], [-a]]))
    return p, np.zeros((3, 1)), np.ones(3, dtype=np.int64)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("truncate", [None, 0, 1])
def test_a_gradient_from_the_output_layer_that_overflows_is_named_dE_dgh_t(cls, truncate):
    """Finite states, logits and loss, an infinite dE_t/dh_t from step 0 on: full and truncated
    BPTT name the first step whose dE/dgh_t is not finite, with the whole message."""
    p, xs, ys = saturated_output(cls)
    h = mb.forward(p.replace(V=np.ones((2, 1))), xs).h
    assert np.all((h > 0) & (h < 0.2))
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs, ys, truncate=truncate)
    assert (info.value.what, info.value.step) == ("dE/dgh_t", 0)
    assert str(info.value) == (
        "dE/dgh_t: not finite from step t = 0 on (the computation overflowed); "
        "scale the parameters or inputs down"
    )


@pytest.mark.parametrize("cls", GATED)
def test_overflow_is_named_and_never_a_warning_with_or_without_truncation(cls):
    """forward, full and truncated bptt and the truncated layer backward raise NonFiniteError
    for logits or gradients that overflow, and numpy warns of nothing on the way."""
    p, xs = overflowing(cls)
    big_v = p.replace(V=np.full(p.V.shape, 1e308))
    q, xs_q, ys_q = saturated_output(cls)
    calls = {
        "forward, o_t": lambda: mb.forward(big_v, xs[:4]),
        "bptt, o_t": lambda: mb.bptt(big_v, xs[:4], np.zeros(4, int)),
        "bptt truncate=1, o_t": lambda: mb.bptt(big_v, xs[:4], np.zeros(4, int), truncate=1),
        "bptt, dE/dgh_t": lambda: mb.bptt(q, xs_q, ys_q),
        "bptt truncate=1, dE/dgh_t": lambda: mb.bptt(q, xs_q, ys_q, truncate=1),
        "backward truncate=1, z_t": lambda: mb.backward(p, xs, np.ones((5, p.hidden_size)), truncate=1),
    }
    for label, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a RuntimeWarning is an error, not NonFiniteError
            try:
                call()
            except NonFiniteError:
                continue
            except RuntimeWarning as w:
                pytest.fail(f"{label}: numpy warned: {w}")
        pytest.fail(f"{label}: no NonFiniteError")
