"""The caller's arrays are only read: no call writes to them, no result aliases them, the parameters
copy what they are given and are read-only; and no call keeps state for the next.

The Elman cell's problem is elman_inputs' (D = 3, H = 4, K = 5, B = 2, T = 6), the gated cells'
conftest.gated_problem's.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import manual_bptt as mb
from conftest import gated_problem
from elman_inputs import DENSE, MASK, RNG, S0, S0_ROWS, TOK, YS, D, H, K, P
from manual_bptt import RNNParams, bptt, forward
from manual_bptt.gated_params import GRUParams, LSTMParams
from manual_bptt.testing import result_fields

U, W, V, b, c = P.U, P.W, P.V, P.b, P.c
GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


# ---------------------------------------------------------------------------------------------
# inputs are never modified; results never alias inputs; the parameters are immutable
# ---------------------------------------------------------------------------------------------


def snapshot(*arrays):
    return [(a.dtype, a.shape, a.tobytes(), a.flags.writeable) for a in arrays]


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
@pytest.mark.parametrize("truncate", [None, 2])
def test_caller_arrays_are_untouched(activation, truncate):
    U0, W0, V0, b0, c0 = (RNG.standard_normal(s) for s in ((H, D), (H, H), (K, H), (H,), (K,)))
    p = RNNParams(U=U0, W=W0, V=V0, b=b0, c=c0)
    inputs = {"xs": DENSE.copy(), "ys": YS.copy(), "s0": S0_ROWS.copy(), "mask": MASK.copy()}
    tok = TOK.copy()
    everything = [U0, W0, V0, b0, c0, tok, *inputs.values()]
    before = snapshot(*everything)
    p_before = copy.deepcopy([a.copy() for a in p.arrays()])

    r = bptt(p, inputs["xs"], inputs["ys"], activation=activation, s0=inputs["s0"],
             truncate=truncate, reduction="mean", mask=inputs["mask"])
    r_tok = bptt(p, tok, inputs["ys"], activation=activation, s0=S0.copy(), truncate=truncate)
    fw = forward(p, inputs["xs"], activation=activation, s0=inputs["s0"])

    assert snapshot(*everything) == before
    assert all(np.array_equal(a, b) for a, b in zip(p.arrays(), p_before, strict=True))
    # results share no memory with any input, so writing to them cannot reach the caller
    outputs = [a for _, a in result_fields(r) + result_fields(r_tok) if a is not None]
    outputs += [fw.a, fw.s, fw.o, fw.y_hat, fw.final_state]
    for out in outputs:
        for inp in [*everything, *p.arrays()]:
            assert not np.shares_memory(out, inp)


def test_params_copy_their_inputs_and_are_read_only():
    U0 = RNG.standard_normal((H, D))
    b0 = RNG.standard_normal(H)
    p = RNNParams(U=U0, W=W, V=V, b=b0, c=c)
    U_saved, b_saved = U0.copy(), b0.copy()
    U0[0, 0] += 1.0  # mutate what was passed in
    b0[:] = 0.0
    assert np.array_equal(p.U, U_saved) and np.array_equal(p.b, b_saved)
    for name, a in p.items():
        assert not a.flags.writeable, f"p.{name} is writeable"
        with pytest.raises(ValueError, match="read-only"):
            a[(0,) * a.ndim] = 1.0
    with pytest.raises(AttributeError):
        p.U = U0  # frozen dataclass
    # a list input works and is copied too
    q = RNNParams(U=U_saved.tolist(), W=W, V=V)
    assert np.array_equal(q.U, U_saved) and not q.U.flags.writeable
    # replace / astype give new objects and leave p alone
    p2 = p.replace(W=np.zeros((H, H)))
    assert np.array_equal(p.W, W) and not np.any(p2.W)
    assert p.astype(np.float32).U.dtype == np.float32 and p.U.dtype == np.float64
    # gradients are RNNParams too, read-only as well
    g = bptt(p, TOK, YS).grads
    assert all(not a.flags.writeable for a in g.arrays())


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("truncate", [None, 1])
def test_gated_caller_arrays_are_untouched(cls, truncate):
    p, xs, ys, s0 = gated_problem(cls)
    mask = np.ones(ys.shape, bool)
    mask[0, 1] = False
    before = [a.copy() for a in (xs, ys, mask, *((s0,) if cls is GRUParams else s0))]
    params_before = [a.copy() for _, a in p.items()]
    r = mb.bptt(p, xs, ys, s0=s0, mask=mask, truncate=truncate, reduction="mean")
    mb.forward(p, xs, s0=s0)
    after = [xs, ys, mask, *((s0,) if cls is GRUParams else s0)]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    for b, (_, a) in zip(params_before, p.items(), strict=True):
        np.testing.assert_array_equal(a, b)
    parts = (r.final_state,) if cls is GRUParams else tuple(r.final_state)
    for part in parts:  # the final state is the caller's to keep, sharing nothing
        assert not any(np.shares_memory(part, a) for a in after)


# ---------------------------------------------------------------------------------------------
# no hidden state
# ---------------------------------------------------------------------------------------------


def all_bytes(r):
    return [
        (n, None if a is None else (a.dtype, a.shape, np.asarray(a).tobytes())) for n, a in result_fields(r)
    ]


@pytest.mark.parametrize("truncate", [None, 1])
def test_identical_calls_give_identical_results(truncate):
    kw = {"activation": "tanh", "s0": S0_ROWS, "mask": MASK, "truncate": truncate, "reduction": "mean"}
    first = all_bytes(bptt(P, DENSE, YS, **kw))
    second = all_bytes(bptt(P, DENSE, YS, **kw))
    assert first == second


def test_a_call_does_not_depend_on_a_previous_call():
    """Run A, then unrelated calls B (other sizes, dtype, activation, float32), then A
    again: bitwise the same. A layer that kept its state would continue from B."""
    kw = {"activation": "sigmoid", "s0": S0, "truncate": None}
    a1 = all_bytes(bptt(P, TOK, YS, **kw))
    fa1 = forward(P, TOK, activation="sigmoid", s0=S0).final_state.copy()
    other = RNNParams.init(7, 2, 3, seed=9)
    bptt(other, RNG.standard_normal((3, 11, 7)), RNG.integers(0, 3, (3, 11)), activation="relu", truncate=3)
    bptt(P.astype(np.float32), DENSE.astype(np.float32), YS, s0=S0_ROWS.astype(np.float32))
    forward(P, DENSE, activation="identity", s0=S0_ROWS)
    assert all_bytes(bptt(P, TOK, YS, **kw)) == a1
    assert np.array_equal(forward(P, TOK, activation="sigmoid", s0=S0).final_state, fa1)
    # and the result does not depend on whether the call comes first in the process
    assert all_bytes(bptt(P, TOK, YS, **kw)) == a1
