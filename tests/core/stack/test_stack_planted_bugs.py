"""The stack tests catch the classic bugs of stacked, bidirectional, projected and packed layers.

A copy of the stack loop (manual_bptt.stack_loop, on the generic drivers: the layers bottom up,
the reverse direction over the flipped axis with the step mask, the backward top down) is written
out here with one switch per planted bug:

    reverse-not-masked          the reverse direction runs without the step mask: it starts in the
                                padding instead of at each sequence's own last step
    forward-weights-in-reverse  the reverse direction runs with the forward direction's weights
    dW_hr-dropped               the projection's gradient (weight_hr) is lost
    gradient-through-skipped    the backward ignores the mask: steps past a length pass gradient
                                through a step that never ran (and receive some)
    h0-direction-major          h0 / c0 rows read as d * L + l instead of torch's l * dirs + d

Without a bug the copy agrees with the oracle (reference.stack_backward); with each, the same
comparison fails, in the fields named here.
"""

from __future__ import annotations

import numpy as np
import pytest
from stack_cases import ATOL, FIELDS, RTOL, stack_params, stack_problem

import reference as ref
from manual_bptt import drivers
from manual_bptt.activations import get_activation
from manual_bptt.cells import ELMAN, GRU, LSTM, StepWeights
from manual_bptt.checking import assert_close
from manual_bptt.stack_params import torch_name

CELLS = {"rnn": ELMAN, "gru": GRU, "lstm": LSTM}
BUGS = {  # the bug -> a field the oracle comparison must find wrong
    "reverse-not-masked": "outputs",
    "forward-weights-in-reverse": "outputs",
    "dW_hr-dropped": "weight_hr_l0",
    "gradient-through-skipped": "dx",
    "h0-direction-major": "outputs",
}


def loop_copy(spec, params, kw, bug=None) -> ref.StackResult:
    """The stack's forward and backward, written out, with the planted ``bug`` (or none)."""
    p = stack_params(spec, params)
    cell, L, dirs, H, H_out = CELLS[p.cell], p.num_layers, p.directions, p.hidden_size, p.out_size
    lstm = p.cell == "lstm"
    x = kw["x"]
    B, T = x.shape[:2]
    n = kw["lengths"]
    mask = np.arange(T)[:, None] < n[None, :]  # (T, B), t < n_b
    S = H_out + (H if lstm else 0)
    s0 = np.zeros((L * dirs, B, S))
    s0[:, :, :H_out], s0[:, :, H_out:] = kw["h0"], kw["c0"] if lstm else 0.0
    d_fin = np.zeros((L * dirs, B, S))
    d_fin[:, :, :H_out], d_fin[:, :, H_out:] = kw["d_h_n"], kw["d_c_n"] if lstm else 0.0

    def row(layer, d):  # the row of h0, c0, h_n, c_n
        return d * L + layer if bug == "h0-direction-major" else layer * dirs + d

    def flip(a, d):
        return a if d == 0 else a[::-1]

    X = np.where(mask[:, :, None], x.swapaxes(0, 1), 0.0)  # (T, B, D), 0 past each length
    runs, h_n = [], np.zeros((L * dirs, B, S))
    for layer in range(L):
        out = np.zeros((T, B, dirs * H_out))
        runs.append([])
        for d in range(dirs):
            lw = p.layers[layer][0 if (bug == "forward-weights-in-reverse" and d == 1) else d]
            w = StepWeights(
                W=lw.W, WT=lw.W.T.copy(), b_hh=lw.b_hh, H=H, act=get_activation(p.nonlinearity or "tanh"),
                W_hr=lw.W_hr, W_hrT=None if lw.W_hr is None else lw.W_hr.T.copy(),
            )  # fmt: skip
            m = None if (bug == "reverse-not-masked" and d == 1) else flip(mask, d)
            Xd = flip(X, d)
            r = drivers.run(cell, w, drivers.input_terms(lw.U, lw.b_ih, None, Xd), s0[row(layer, d)], mask=m)
            out[:, :, d * H_out : (d + 1) * H_out] = flip(r.outputs(H_out), d)
            h_n[row(layer, d)] = r.s[-1]
            runs[-1].append((lw, w, r, m, Xd))
        out[~mask] = 0.0
        X = out
    outputs = X

    grads, dh0 = {}, np.zeros_like(s0)
    up = kw["d_outputs"].swapaxes(0, 1) * mask[:, :, None]  # (T, B, dirs * H_out)
    for layer in reversed(range(L)):
        below = 0.0
        for d in range(dirs):
            lw, w, r, m, Xd = runs[layer][d]
            ds = np.zeros((T, B, S))
            ds[:, :, :H_out] = flip(up[:, :, d * H_out : (d + 1) * H_out], d)
            last = n - 1 if d == 0 else np.full(B, T - 1)  # the sequence's own last step
            ds[last, np.arange(B)] += d_fin[row(layer, d)]
            dh = np.zeros((T, B, H_out)) if lw.W_hr is not None else None
            m_back = None if bug == "gradient-through-skipped" else m
            dgi, dgh, dh0[row(layer, d)] = drivers.backprop(cell, w, r, ds, mask=m_back, dh_out=dh)
            dU, db_ih, dW, db_hh, dX = drivers.weight_grads(dgi, dgh, r.h_prev(H_out), lw.U, None, Xd)
            g = {"weight_ih": dU, "weight_hh": dW}
            if lw.b_ih is not None:
                g.update(bias_ih=db_ih, bias_hh=db_hh)
            if dh is not None:
                m_t = np.stack([cell.output_input(c) for c in r.caches])
                dW_hr = drivers.projection_grad(dh, m_t)
                g["weight_hr"] = np.zeros_like(dW_hr) if bug == "dW_hr-dropped" else dW_hr
            grads.update({torch_name(kind, layer, d): a for kind, a in g.items()})
            below = below + flip(dX, d)
        up = below
    order = list(spec.param_shapes())
    return ref.StackResult(
        outputs=outputs.swapaxes(0, 1),
        h_n=h_n[:, :, :H_out],
        c_n=h_n[:, :, H_out:] if lstm else None,
        grads={name: grads[name] for name in order},
        dx=up.swapaxes(0, 1),
        dh0=dh0[:, :, :H_out],
        dc0=dh0[:, :, H_out:] if lstm else None,
    )


def failing(actual: ref.StackResult, expected: ref.StackResult) -> list[str]:
    """The fields (and parameters, by torch name) where actual disagrees with expected."""
    wrong = []
    pairs = [
        (f, getattr(actual, f), getattr(expected, f)) for f in FIELDS if getattr(expected, f) is not None
    ]
    pairs += [(name, actual.grads[name], e) for name, e in expected.grads.items()]
    for name, a, e in pairs:
        try:
            assert_close(a, e, name=name, rtol=RTOL, atol=ATOL)
        except AssertionError:
            wrong.append(name)
    return wrong


CASES = [(bug, variant) for bug in BUGS for variant in ("rnn-tanh", "gru", "lstm-proj")
         if bug != "dW_hr-dropped" or variant == "lstm-proj"]  # fmt: skip


@pytest.mark.parametrize(("bug", "variant"), CASES)
def test_each_planted_bug_is_caught_by_the_oracle(bug, variant):
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths="ones", seed=11)
    expected = ref.stack_backward(spec, params, **kw)
    assert failing(loop_copy(spec, params, kw), expected) == [], "the copy of the loop is not faithful"
    wrong = failing(loop_copy(spec, params, kw, bug), expected)
    assert BUGS[bug] in wrong, f"{bug}: not caught where expected (wrong: {wrong})"
