"""The compute dtype: float32 only when every floating input is float32, else float64 (a longdouble
input too). An integer s0 is rounded once to the compute dtype; the gated cells' validated inputs
hold every array in it.

The Elman cell's problem is elman_inputs' (D = 3, H = 4, K = 5, B = 2, T = 6), the gated cells'
conftest.gated_problem's.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
from conftest import assert_identical, gated_problem
from elman_inputs import DENSE, RNG, TOK, YS, B, D, H, K, P, T
from manual_bptt import bptt, decompose, gated
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.kinds import kind_of
from manual_bptt.testing import assert_close

HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant
GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


# ---------------------------------------------------------------------------------------------
# the Elman cell
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
def test_longdouble_dense_inputs_compute_in_float64():
    # a floating dtype other than float32/float64 computes in float64 (X converted too).
    # Values exactly representable in float64, so the result must be bitwise the float64 one.
    r = bptt(P, DENSE.astype(np.longdouble), YS)
    assert_identical(r, bptt(P, DENSE, YS))


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
def test_longdouble_s0_with_float32_params_computes_in_float64():
    # s0 counts in the compute dtype: float32 only when every floating input is float32.
    p32 = P.astype(np.float32)
    s0 = RNG.standard_normal((B, H))
    r = bptt(p32, TOK, YS, s0=s0.astype(np.longdouble))
    assert_identical(r, bptt(p32.astype(np.float64), TOK, YS, s0=s0))


def _terms(dec):
    n = dec.norms()
    return [dec.W.full(), dec.U.full(), dec.b.full(), n.W, n.U, n.b]


def test_float32_decomposition_default_and_integer_s0_are_float32_zeros():
    # s0=None zeros and an integer s0 give the same float32 terms as a float32 s0 (the
    # s_{k-1} rows once were built from s0 directly; now s0 is copied into the float32 states
    # and test_batch_s0_has_the_compute_dtype pins its dtype).
    p32 = P.astype(np.float32)
    Bb = 3
    tok = RNG.integers(0, D, (Bb, T))
    ys = RNG.integers(0, K, (Bb, T))
    base = _terms(decompose(p32, tok, ys, s0=np.zeros((Bb, H), np.float32)))
    for s0 in (None, np.zeros((Bb, H), dtype=np.int64)):
        got = _terms(decompose(p32, tok, ys, s0=s0))
        for a, e in zip(got, base, strict=True):
            assert a.dtype == e.dtype
            np.testing.assert_array_equal(a, e)
    s0_int = RNG.integers(-2, 3, (Bb, H))
    got = _terms(decompose(p32, tok, ys, s0=s0_int))
    for a, e in zip(got, _terms(decompose(p32, tok, ys, s0=s0_int.astype(np.float32))), strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_float32_loss_is_computed_in_float32(reduction):
    # the weights stay float32 (float64 weights make the loss w @ E_t a float64 dot
    # product): the float32 loss must be a float32 number.
    p32 = P.astype(np.float32)
    r = bptt(p32, TOK, YS, reduction=reduction)
    assert r.loss == float(np.float32(r.loss))


# ---------------------------------------------------------------------------------------------
# the gated cells
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", GATED)
def test_float32_inputs_compute_in_float32(cls):
    p, xs, ys, s0 = gated_problem(cls)
    p32 = p.astype(np.float32)
    r = mb.bptt(p32, xs.astype(np.float32), ys)
    assert all(a.dtype == np.float32 for _, a in r.grads.items()) and r.dxs.dtype == np.float32
    r64 = mb.bptt(p, xs, ys)
    assert_close(r.grads.W, r64.grads.W, name="float32 W", rtol=1e-4, atol=1e-5)
    mixed = mb.bptt(p32, xs.astype(np.float32), ys, s0=s0)  # a float64 s0 makes it float64
    assert mixed.grads.W.dtype == np.float64


@pytest.mark.parametrize("cls", GATED)
def test_an_integer_initial_state_is_rounded_once_to_the_compute_dtype(cls):
    """An integer s0 is s0.astype(compute dtype): 2**60 + 2**36 + 1 rounds to 2**60 + 2**37 in
    float32 (rounded through float64 first it would be the tie 2**60 + 2**36, then 2**60). The
    float32 call gives the results of the float32 s0 bitwise; with W = 0 and the update (GRU)
    or forget (LSTM) gate saturated open, h0 (GRU) or c0 (LSTM) is carried unchanged to T - 1."""
    G, H = cls.GATES, 2
    big = np.array([[2**60 + 2**36 + 1, -(2**60) - 2**36 - 1]], dtype=np.int64)
    assert int(big.astype(np.float32)[0, 0]) == 2**60 + 2**37
    b_ih = np.zeros(G * H)
    b_ih[H : 2 * H] = 100.0  # z_t = 1 (GRU), gate_f = 1 (LSTM)
    if cls is LSTMParams:
        b_ih[:H] = -100.0  # gate_i = 0: c_t = c_{t-1} exactly
    p = cls(
        U=np.ones((G * H, 1)), W=np.zeros((G * H, H)), b_ih=b_ih, b_hh=np.zeros(G * H), V=np.ones((2, H))
    ).astype(np.float32)
    xs = np.ones((1, 3, 1), dtype=np.float32)
    s0 = big if cls is GRUParams else LSTMState(np.zeros((1, H), dtype=np.int64), big)
    s0_32 = big.astype(np.float32) if cls is GRUParams else LSTMState(*(a.astype(np.float32) for a in s0))
    r, r32 = mb.forward(p, xs, s0=s0), mb.forward(p, xs, s0=s0_32)
    carried = r.final_state if cls is GRUParams else r.final_state.c
    assert carried.dtype == np.float32 and np.array_equal(carried, big.astype(np.float32))
    for name in ("h", "o", "y_hat"):
        assert np.array_equal(getattr(r, name), getattr(r32, name)), name


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize(
    "s0_dtype, dtype", [(None, np.float32), (np.float32, np.float32), (np.float64, np.float64)]
)
def test_prepare_gated_gives_every_array_in_the_compute_dtype(cls, s0_dtype, dtype):
    """float32 parameters and dense inputs: the inputs, the initial state, the weights and the
    parameters are all in float32, or all in float64 when s0 is float64."""
    p, xs, ys, s0 = gated_problem(cls)
    s0 = (
        None
        if s0_dtype is None
        else (s0.astype(s0_dtype) if cls is GRUParams else LSTMState(*(a.astype(s0_dtype) for a in s0)))
    )
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    g = gated.prepare_gated(kind_of(p).cell, p32, xs32, ys, s0=s0, reduction="mean")
    assert g.dtype == dtype
    arrays = {
        "X": g.X,
        "s0": g.s0,
        "weight": g.weight,
        "U": g.U,
        "W": g.W,
        "b_ih": g.b_ih,
        "b_hh": g.b_hh,
        "V": g.V,
        "c": g.c,
    }
    assert {name: a.dtype for name, a in arrays.items()} == dict.fromkeys(arrays, np.dtype(dtype))


def longdouble_s0(cls, s0):
    """s0 (float64 values) as np.longdouble, and as float64."""
    if cls is GRUParams:
        return s0.astype(np.longdouble), s0
    return LSTMState(*(a.astype(np.longdouble) for a in s0)), s0


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("cls", GATED)
def test_a_longdouble_initial_state_is_never_narrowed_to_float32(cls):
    """float32 only when every floating input is float32: a longdouble s0 with float32 parameters
    and inputs gives the float64 call's results to float64 accuracy."""
    p, xs, ys, s0 = gated_problem(cls)
    wide_s0, s0_64 = longdouble_s0(cls, s0)
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    r = mb.bptt(p32, xs32, ys, s0=wide_s0, reduction="mean")
    ref = mb.bptt(p32.astype(np.float64), xs32.astype(np.float64), ys, s0=s0_64, reduction="mean")
    assert r.grads.W.dtype != np.float32
    assert abs(r.loss - ref.loss) <= 1e-10 * abs(ref.loss)
    for name, a in ref.grads.items():
        assert_close(getattr(r.grads, name), a, name=f"grads.{name}")
    assert_close(r.dxs, ref.dxs, name="dxs")


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("truncate", [None, 1])
def test_a_longdouble_initial_state_computes_in_float64_like_the_elman_cell(cls, truncate):
    """A floating dtype other than float32 and float64 computes in float64 (as the Elman cell's
    inputs do): a longdouble s0 of float64 values gives the float64 call's results bitwise, and
    float64 gradients (never longdouble: parameters hold float32 or float64 only), also for
    forward and the layer backward."""
    p, xs, ys, s0 = gated_problem(cls)
    wide_s0, s0_64 = longdouble_s0(cls, s0)
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    kw = {"reduction": "mean", "truncate": truncate}
    r = mb.bptt(p32, xs32, ys, s0=wide_s0, **kw)
    ref = mb.bptt(p32.astype(np.float64), xs32.astype(np.float64), ys, s0=s0_64, **kw)
    assert r.grads.dtype == np.float64 and r.loss == ref.loss
    for name, a in ref.grads.items():
        assert getattr(r.grads, name).dtype == np.float64 and np.array_equal(getattr(r.grads, name), a), name
    assert np.array_equal(r.dxs, ref.dxs) and r.dxs.dtype == np.float64
    assert mb.forward(p32, xs32, s0=wide_s0).h.dtype == np.float64
    dhs = np.ones((2, 4, p.hidden_size))
    assert mb.backward(p, xs, dhs, s0=wide_s0, truncate=truncate).grads.dtype == np.float64
