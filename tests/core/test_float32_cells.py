"""float32 inputs are computed in float32 by every method of every cell (Elman, GRU, LSTM).

For each of bptt (full and truncated), the layer backward, forward, the explicit sum over k
(terms one at a time, per step, the full tensor, and every named factor), state_jacobian and
RTRL: every array returned is float32 when every floating input is float32, and it agrees with
the same call in float64 on the same float32-rounded inputs at float32 accuracy,

    max|a - b| <= 1e-4 max|ref| + 1e-6      (as in test_float32.py),

NaN failing. A single float64 scratch array inside a cell's step (its gradient buffers, the
Jacobians of its partials) would make a returned array float64, or double the memory that
float32 RTRL holds.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import manual_bptt as mb
from manual_bptt.testing import assert_close

F32_RTOL, F32_ATOL = 1e-4, 1e-6
F32 = np.dtype(np.float32)
CELLS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}


def problem(cell, *, tokens, batched, T=4, B=2, D=3, H=5, K=4, seed=3):
    """float32 parameters (random nonzero biases), inputs and initial state, and integer labels."""
    rng = np.random.default_rng(seed)
    p = CELLS[cell].init(D, H, K, seed=seed).astype(np.float32)
    lead = (B, T) if batched else (T,)
    xs = rng.integers(0, D, lead) if tokens else rng.standard_normal((*lead, D)).astype(np.float32)
    ys = rng.integers(0, K, lead)
    shape = (B, H) if batched else (H,)
    h0 = rng.standard_normal(shape).astype(np.float32)
    s0 = mb.LSTMState(h0, rng.standard_normal(shape).astype(np.float32)) if cell == "lstm" else h0
    dhs = rng.standard_normal((*lead, H)).astype(np.float32)
    return p, xs, ys, s0, dhs


def widen(value):
    """A float32 array (or LSTMState, or params) as float64; anything else unchanged."""
    if isinstance(value, mb.LSTMState):
        return mb.LSTMState(widen(value.h), widen(value.c))
    if isinstance(value, (mb.RNNParams, mb.GRUParams, mb.LSTMParams)):
        return value.astype(np.float64)
    if isinstance(value, np.ndarray) and value.dtype == F32:
        return value.astype(np.float64)
    return value


def leaves(name, value):
    """(name, array) of every array inside a result field: params, LSTMState, tuple or array."""
    if value is None:
        return []
    if isinstance(value, (mb.RNNParams, mb.GRUParams, mb.LSTMParams)):
        return [(f"{name}.{n}", a) for n, a in value.items()]
    if isinstance(value, tuple):
        return [leaf for i, v in enumerate(value) for leaf in leaves(f"{name}[{i}]", v)]
    return [(name, value)]


def assert_float32_close(name, a32, a64):
    """a32 is float32 and within float32 accuracy of the float64 computation a64 (None where
    the other is None: dxs of token inputs, the GRU's cell_state)."""
    if a32 is None or a64 is None:
        assert a32 is None and a64 is None, f"{name}: {a32!r} against {a64!r}"
        return
    pairs = list(zip(leaves(name, a32), leaves(name, a64), strict=True))
    assert pairs, f"{name}: nothing to compare"
    for (n, a), (_, b) in pairs:
        assert np.asarray(a).dtype == F32, f"{n}: dtype {np.asarray(a).dtype}, expected float32"
        assert np.asarray(b).dtype == np.float64, f"{n}: the float64 run gave {np.asarray(b).dtype}"
        assert_close(a, b, name=n, rtol=F32_RTOL, atol=F32_ATOL)


def both(fn, *args, **kwargs):
    """fn on the float32 arguments, and on the same arguments widened to float64."""
    wide = {k: widen(v) for k, v in kwargs.items()}
    return fn(*args, **kwargs), fn(*(widen(a) for a in args), **wide)


def result_fields(r):
    fields = ("grads", "ds0", "dxs", "final_state", "hs", "h", "cell_state", "a", "s", "o", "y_hat")
    names = [n for n in fields if hasattr(r, n)]
    return [(n, getattr(r, n)) for n in names]


CASES = [(cell, tokens, batched) for cell in CELLS for tokens in (False, True) for batched in (True, False)]


@pytest.mark.parametrize(("cell", "tokens", "batched"), CASES)
@pytest.mark.parametrize("truncate", [None, 1])
def test_bptt_and_backward_compute_in_float32(cell, tokens, batched, truncate):
    p, xs, ys, s0, dhs = problem(cell, tokens=tokens, batched=batched)
    r32, r64 = both(mb.bptt, p, xs, ys, s0=s0, truncate=truncate)
    assert isinstance(r32.loss, float) and abs(r32.loss - r64.loss) <= F32_RTOL * abs(r64.loss)
    for name, value in result_fields(r32):
        assert_float32_close(name, value, getattr(r64, name))
    final = s0  # any array of the final state's shape serves as its upstream gradient
    l32, l64 = both(mb.backward, p, xs, dhs, s0=s0, d_final=final, truncate=truncate)
    for name, value in result_fields(l32):
        assert_float32_close(f"backward {name}", value, getattr(l64, name))
    # without s0 and d_final: the zero initial state is made in float32 too
    l32, l64 = both(mb.backward, p, xs, dhs, truncate=truncate)
    for name, value in result_fields(l32):
        assert_float32_close(f"backward, no s0, {name}", value, getattr(l64, name))


@pytest.mark.parametrize(("cell", "tokens", "batched"), CASES)
def test_forward_and_rtrl_compute_in_float32(cell, tokens, batched):
    p, xs, ys, s0, _ = problem(cell, tokens=tokens, batched=batched)
    f32, f64 = both(mb.forward, p, xs, s0=s0)
    for name, value in result_fields(f32):
        assert_float32_close(f"forward {name}", value, getattr(f64, name))
    r32, r64 = both(mb.rtrl, p, xs, ys, s0=s0)
    for name, value in result_fields(r32):
        assert_float32_close(f"rtrl {name}", value, getattr(r64, name))
    j32, j64 = both(mb.state_jacobian, p, xs, 3, 0, s0=s0)
    assert_float32_close("state_jacobian", j32, j64)
    j32, j64 = both(mb.state_jacobian, p, xs, 2, -1)
    assert_float32_close("state_jacobian to s0", j32, j64)


@pytest.mark.parametrize(("cell", "tokens", "batched"), CASES)
def test_decomposition_terms_and_factors_are_float32(cell, tokens, batched):
    p, xs, ys, s0, _ = problem(cell, tokens=tokens, batched=batched)
    d32, d64 = both(mb.decompose, p, xs, ys, s0=s0)
    assert d32.dtype == F32
    names = ["W", "U", *(["b"] if cell == "rnn" else ["b_ih", "b_hh"])]
    for n in names:
        v32, v64 = getattr(d32, n), getattr(d64, n)
        assert_float32_close(f"terms.{n}[2, 1]", v32[2, 1], v64[2, 1])
        assert_float32_close(f"terms.{n}[1, 2] (k > t)", v32[1, 2], v64[1, 2])
        assert_float32_close(f"terms.{n}.full()", v32.full(), v64.full())
        assert np.asarray(v32, dtype=np.float32).dtype == F32
    for s32, s64 in zip(d32.iter_t(), d64.iter_t(), strict=True):
        for n in names:
            assert_float32_close(f"iter_t {s32.t} {n}", getattr(s32, n), getattr(s64, n))
    factors = [("dE_dyhat", (2,)), ("dyhat_ds", (2,)), ("dE_ds", (2,)), ("ds_ds", (3, 1)), ("ds_ds", (2, -1)),
               ("ds_dW", (1,)), ("ds_dU", (1,))]
    factors += [("ds_db", (1,))] if cell == "rnn" else [("ds_db_ih", (1,)), ("ds_db_hh", (2,))]
    for name, args in factors:
        assert_float32_close(f"{name}{args}", getattr(d32, name)(*args), getattr(d64, name)(*args))


def traced_peak(fn, *args, **kwargs):
    tracemalloc.start()
    try:
        r = fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1], r
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_float32_rtrl_of_a_gated_cell_takes_about_half_the_memory(cell):
    # RTRL's sensitivities dz_t/dW (B, S, G*H, H) dominate its memory here; each step's full
    # Jacobian A_t and partials Ji, Jh multiply them. Computed in float32 they take half the
    # bytes of the float64 run; a float64 Jacobian would turn every product into float64.
    rng = np.random.default_rng(0)
    B, T, D, H, K = 2, 3, 2, 12, 3
    p = CELLS[cell].init(D, H, K, seed=0).astype(np.float32)
    xs = rng.integers(0, D, (B, T))
    ys = rng.integers(0, K, (B, T))
    peak32, r32 = traced_peak(mb.rtrl, p, xs, ys)
    peak64, r64 = traced_peak(mb.rtrl, p.astype(np.float64), xs, ys)
    assert_float32_close("rtrl grads", r32.grads, r64.grads)
    assert peak32 < 0.6 * peak64, (peak32, peak64)
