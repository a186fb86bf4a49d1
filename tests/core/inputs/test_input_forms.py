"""The forms an input may take and what they become: the time-major Batch that prepare returns
(documented in _inputs.Batch), and results in the caller's layout for every form (unbatched or
batched, token ids or dense, one s0 shared by every row or one per row).

The Elman cell's problem is elman_inputs' (D = 3, H = 4, K = 5, B = 2, T = 6), the gated cells'
conftest.gated_problem's.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
import reference as ref
from conftest import gated_problem
from elman_inputs import TOK, YS, P, T
from manual_bptt import bptt
from manual_bptt._inputs import prepare
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.testing import assert_close

GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


# ---------------------------------------------------------------------------------------------
# the Batch contract (documented in _inputs.Batch). These properties change what prepare
# returns but no public result: gradients use labels only as indices, and an unbatched weight
# is only read as T * B = T values. They are checked on prepare's documented output instead.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_batch_labels_and_token_ids_are_int64(dtype):
    batch = prepare(P, TOK.astype(dtype), YS.astype(dtype), activation="tanh", s0=None)
    assert batch.Y.dtype == np.int64 and batch.tokens.dtype == np.int64
    np.testing.assert_array_equal(batch.Y, YS.T)
    np.testing.assert_array_equal(batch.tokens, TOK.T)


def test_batch_without_labels_has_no_labels_and_no_weight():
    batch = prepare(P, TOK, None, activation="tanh", s0=None, labels_required=False)
    assert batch.Y is None and batch.weight is None


def test_batch_weight_of_unbatched_mask_is_time_by_one():
    # an unbatched (T,) mask is given its batch axis
    mask = np.array([True, False, True, True, False, True])
    batch = prepare(P, TOK[0], YS[0], activation="tanh", s0=None, mask=mask, reduction="mean")
    assert batch.weight.shape == (T, 1)
    np.testing.assert_array_equal(batch.weight[:, 0], mask / mask.sum())


@pytest.mark.parametrize("s0", [None, "int"])
def test_batch_s0_has_the_compute_dtype(s0):
    # s0=None zeros and an integer s0 are in the compute dtype: bptt copies s0 into its
    # float32 states, so no gradient shows it, but Batch documents s0 in the compute dtype
    p32 = P.astype(np.float32)
    s0_arr = None if s0 is None else np.ones((TOK.shape[0], P.hidden_size), dtype=np.int64)
    batch = prepare(p32, TOK, YS, activation="tanh", s0=s0_arr)
    assert batch.dtype == np.float32 and batch.s0.dtype == np.float32
    np.testing.assert_array_equal(batch.s0, 0.0 if s0 is None else 1.0)


# ---------------------------------------------------------------------------------------------
# results in the caller's layout
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_unbatched_mask_matches_oracle(reduction, check):
    # an unbatched (T,) mask is given its batch axis
    mask = np.array([True, False, True, True, False, True])
    r = bptt(P, TOK[0], YS[0], mask=mask, reduction=reduction)
    check(r, ref.bptt(P, TOK[0], YS[0], mask=mask, reduction=reduction))


@pytest.mark.parametrize("cls", GATED)
def test_result_types_and_shapes(cls):
    p, xs, ys, s0 = gated_problem(cls)
    H = p.hidden_size
    r = mb.bptt(p, xs, ys, s0=s0)
    assert type(r.grads) is cls and isinstance(r.loss, float)
    for name, a in r.grads.items():
        assert a.shape == getattr(p, name).shape, name
    assert r.dxs.shape == xs.shape
    shared = mb.bptt(p, xs, ys, s0=tuple(a[0] for a in s0) if cls is LSTMParams else s0[0])
    unbatched = mb.bptt(p, xs[0], ys[0])
    tokens = mb.bptt(p, np.zeros((2, 4), int), ys)
    assert tokens.dxs is None
    if cls is LSTMParams:
        assert isinstance(r.ds0, LSTMState) and isinstance(r.final_state, LSTMState)
        assert r.ds0.h.shape == r.ds0.c.shape == (2, H) and r.final_state.c.shape == (2, H)
        assert shared.ds0.h.shape == (H,) and unbatched.ds0.c.shape == (H,)
    else:
        assert r.ds0.shape == (2, H) and shared.ds0.shape == (H,) and unbatched.final_state.shape == (H,)


@pytest.mark.parametrize("cls", GATED)
def test_a_shared_initial_state_gets_the_sum_over_rows(cls):
    p, xs, ys, s0 = gated_problem(cls)
    lstm = cls is LSTMParams
    shared = LSTMState(s0.h[0], s0.c[0]) if lstm else s0[0]
    rows = LSTMState(np.stack([s0.h[0]] * 2), np.stack([s0.c[0]] * 2)) if lstm else np.stack([s0[0]] * 2)
    a, b = mb.bptt(p, xs, ys, s0=shared), mb.bptt(p, xs, ys, s0=rows)
    for x, y in zip(a.ds0 if lstm else [a.ds0], b.ds0 if lstm else [b.ds0], strict=True):
        assert_close(x, y.sum(axis=0), name="ds0")


@pytest.mark.parametrize("cls", GATED)
def test_an_unbatched_call_is_the_one_row_batched_call_bitwise(cls):
    """Every result of an unbatched call is row 0 of the same call batched with B = 1, to the
    last bit, signed zeros included. The LSTM's forget gate is closed (f_t = 0 exactly), so
    dE/dc0 = dE/dc_0 ⊙ f_0 is a zero that keeps the sign of dE/dc_0."""
    p, xs, ys, _ = gated_problem(cls, B=1, H=4, seed=3)
    if cls is LSTMParams:
        b_ih = p.b_ih.copy()
        b_ih[4:8] = -1000.0  # gate_f = σ(-1000 + ...) = 0
        p = p.replace(b_ih=b_ih)
    one, row = mb.bptt(p, xs[0], ys[0]), mb.bptt(p, xs, ys)

    def same(a, b, what):
        assert a.shape == b.shape and np.array_equal(a, b), what
        assert np.array_equal(np.signbit(a), np.signbit(b)), f"{what}: the signs of zero differ"

    assert one.loss == row.loss
    for name, a in one.grads.items():
        same(a, getattr(row.grads, name), name)
    same(one.dxs, row.dxs[0], "dxs")
    if cls is LSTMParams:
        assert np.all(one.ds0.c == 0) and np.signbit(one.ds0.c).any()  # -0.0 among them
        for name in ("h", "c"):
            same(getattr(one.ds0, name), getattr(row.ds0, name)[0], f"ds0.{name}")
            same(getattr(one.final_state, name), getattr(row.final_state, name)[0], f"final_state.{name}")
    else:
        same(one.ds0, row.ds0[0], "ds0")
        same(one.final_state, row.final_state[0], "final_state")
