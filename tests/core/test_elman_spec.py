"""The Elman fast path (core's blocked bptt) against the readable spec (cells/elman.py) run by the
generic drivers: the same loss and gradients on random problems, for every activation, input form,
truncation, reduction, mask and initial state.

The spec is the statement of the math; the fast path is an optimization of it. Both are also
checked against the PyTorch oracle elsewhere; this test pins them to each other.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

import manual_bptt as mb
from conftest import examples
from manual_bptt import drivers
from manual_bptt._inputs import prepare
from manual_bptt.cells import ELMAN, StepWeights
from manual_bptt.cells.base import recurrent_term
from manual_bptt.output import softmax_cross_entropy
from manual_bptt.testing import assert_close, rnn_problems


def spec_bptt(p: mb.RNNParams, xs, ys, *, activation, s0, truncate, reduction, mask) -> dict[str, np.ndarray]:
    """Loss and gradients of the Elman RNN by the generic drivers over cells/elman.py."""
    batch = prepare(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    U, W, V = (np.asarray(a, dtype=batch.dtype) for a in (p.U, p.W, p.V))
    w = StepWeights(W=W, WT=np.ascontiguousarray(W.T), b_hh=None, H=H, act=batch.act)
    gi = drivers.input_terms(U, p.b, batch.tokens, batch.X)  # U x_t + b
    r = drivers.run(ELMAN, w, gi, batch.s0)
    o = r.outputs(H).reshape(T * B, H) @ V.T  # o_t = V s_t (+ c)
    if p.c is not None:
        o += p.c
    loss = softmax_cross_entropy(o, batch.Y.reshape(-1), batch.weight.reshape(-1))  # o -> dE/do_t
    dO = o.reshape(T, B, K)
    dgi, dgh, ds0 = drivers.backprop(ELMAN, w, r, dO @ V, truncate=truncate)  # e_t = V^T dE/do_t
    dU, db, dW, _, dX = drivers.weight_grads(dgi, dgh, r.h_prev(H), U, batch.tokens, batch.X)
    out = {
        "loss": np.asarray(float(loss)),
        "U": dU,
        "W": dW,
        "V": dO.reshape(T * B, K).T @ r.outputs(H).reshape(T * B, H),
        "ds0": batch.fold_ds0(ds0),
    }
    if p.b is not None:
        out["b"] = db
    if p.c is not None:
        out["c"] = dO.reshape(T * B, K).sum(axis=0)
    if dX is not None:
        out["dxs"] = batch.to_batch_first(dX)
    return out


@settings(max_examples=examples(0.5))
@given(rnn_problems(max_T=10, max_H=6))
def test_blocked_bptt_equals_the_spec_run_by_the_generic_drivers(prob):
    kw = prob.kwargs()
    r = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    spec = spec_bptt(prob.params, prob.xs, prob.ys, **kw)
    got = {"loss": np.asarray(r.loss), "U": r.grads.U, "W": r.grads.W, "V": r.grads.V, "ds0": r.ds0}
    if r.grads.b is not None:
        got["b"] = r.grads.b
    if r.grads.c is not None:
        got["c"] = r.grads.c
    if r.dxs is not None:
        got["dxs"] = r.dxs
    assert sorted(got) == sorted(spec)
    for name in spec:
        assert_close(got[name], spec[name], name=name)


def test_the_spec_step_is_the_equation():
    """s_t = f(U x_t + b + W s_{t-1}), written out, against one spec step (a sign or a transpose fails)."""
    rng = np.random.default_rng(3)
    H, B = 4, 3
    W = rng.normal(size=(H, H))
    gi, s_prev = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    w = StepWeights(W=W, WT=np.ascontiguousarray(W.T), b_hh=None, H=H, act=mb.ACTIVATIONS["tanh"])
    s, _ = ELMAN.forward(w, gi, s_prev)
    assert_close(s, np.tanh(gi + s_prev @ W.T), name="s_t")
    assert_close(recurrent_term(w, s_prev), np.einsum("ij,bj->bi", W, s_prev), name="W s_{t-1}")
