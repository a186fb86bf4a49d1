"""The GRU and LSTM by hand (manual_bptt.gated) against torch.nn.GRU / torch.nn.LSTM natively.

Our parameters are copied into nn.GRU / nn.LSTM + nn.Linear (float64), and the loss is torch's
cross_entropy; every field of bptt (loss, grads U, W, b_ih, b_hh, V, c, ds0, dxs,
final_state) must satisfy max|a - b| <= 1e-10 max|ref| + 1e-12, NaN failing.

The problems are drawn to catch the classic mistakes: b_ih and b_hh random, nonzero and
different (so b_hn's gradient differs from b_in's and the place of the reset gate matters);
random nonzero h0 and c0; weight scales 0.3..4 (gates in and out of saturation); D, H, K, T, B
drawn independently; never an all-ones upstream gradient (random labels and masks).
Truncation is checked against torch autograd of the windowed objective: for each t, a fresh
graph from the detached state after step t - tau - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bptt as mb
from conftest import examples, gated_arrays, oracle_close
from manual_bptt import gated
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.kinds import kind_of
from manual_bptt.testing import assert_close

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# Problems and the torch side
# ---------------------------------------------------------------------------------------------
@dataclass
class Problem:
    p: GRUParams | LSTMParams
    xs: np.ndarray
    ys: np.ndarray
    s0: object
    mask: np.ndarray | None
    reduction: str

    @property
    def batched(self) -> bool:
        return self.ys.ndim == 2

    def kwargs(self) -> dict:
        return {"s0": self.s0, "mask": self.mask, "reduction": self.reduction}


def make(cls, *, reduction="sum", **sizes) -> Problem:
    """A random problem (conftest.gated_arrays); s0_kind: None (zeros), "shared" ((H,) for every row)
    or "rows" ((B, H))."""
    p, xs, ys, s0, mask = gated_arrays(cls, **sizes)
    return Problem(p, xs, ys, s0, mask, reduction)


class TorchModel:
    """nn.GRU / nn.LSTM (one layer, batch-first) + nn.Linear, holding a copy of our parameters."""

    def __init__(self, p) -> None:
        self.lstm = isinstance(p, LSTMParams)
        D, H, K = p.input_size, p.hidden_size, p.output_size
        kind = torch.nn.LSTM if self.lstm else torch.nn.GRU
        self.rnn = kind(D, H, bias=p.b_ih is not None, batch_first=True, dtype=F64)
        self.out = torch.nn.Linear(H, K, bias=p.c is not None, dtype=F64)
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(torch.tensor(p.U))
            self.rnn.weight_hh_l0.copy_(torch.tensor(p.W))
            if p.b_ih is not None:
                self.rnn.bias_ih_l0.copy_(torch.tensor(p.b_ih))
                self.rnn.bias_hh_l0.copy_(torch.tensor(p.b_hh))
            self.out.weight.copy_(torch.tensor(p.V))
            if p.c is not None:
                self.out.bias.copy_(torch.tensor(p.c))

    def grads(self) -> dict:
        r, o = self.rnn, self.out
        pairs = {"U": r.weight_ih_l0, "W": r.weight_hh_l0, "V": o.weight}
        if r.bias:
            pairs |= {"b_ih": r.bias_ih_l0, "b_hh": r.bias_hh_l0}
        if o.bias is not None:
            pairs["c"] = o.bias
        return {k: (torch.zeros_like(v) if v.grad is None else v.grad).numpy() for k, v in pairs.items()}

    def step(self, X, state):
        """Run the cell over X (B, n, D) from state ((1, B, H) or a pair): (outputs, final state)."""
        return self.rnn(X, state)


def torch_reference(prob: Problem, truncate: int | None = None) -> dict:
    """Loss, gradients, ds0, dxs and final state by torch autograd through nn.GRU / nn.LSTM.

    truncate=tau: the windowed objective, E_t through the steps max(0, t - tau)..t only, from
    the detached state before that window (s0 itself when the window starts at step 0).
    """
    p = prob.p
    m = TorchModel(p)
    D, H, K = p.input_size, p.hidden_size, p.output_size
    xs = prob.xs if prob.batched else prob.xs[None]
    ys = torch.from_numpy(prob.ys if prob.batched else prob.ys[None])
    B, T = ys.shape
    tokens = np.issubdtype(prob.xs.dtype, np.integer)
    if tokens:
        X = F.one_hot(torch.from_numpy(xs), D).to(F64)
        x_leaf = None
    else:
        x_leaf = torch.tensor(prob.xs, dtype=F64, requires_grad=True)
        X = x_leaf if prob.batched else x_leaf[None]
    # initial state leaves, in the shape ds0 is returned in
    n_parts = 2 if m.lstm else 1
    if prob.s0 is None:
        shape = (B, H) if prob.batched else (H,)
        given_parts = [np.zeros(shape) for _ in range(n_parts)]
    else:
        given_parts = list(prob.s0) if m.lstm else [prob.s0]
    leaves = [torch.tensor(a, dtype=F64, requires_grad=True) for a in given_parts]
    hx = [leaf.expand(B, H)[None] for leaf in leaves]
    state0 = tuple(hx) if m.lstm else hx[0]
    # the weight of each E_t
    counted = np.ones((B, T), bool) if prob.mask is None else (prob.mask if prob.batched else prob.mask[None])
    w = counted.astype(np.float64)
    if prob.reduction == "mean":
        w /= counted.sum()
    w = torch.from_numpy(w)

    def ce(out, y):  # cross entropy of each (b, t) of out (B, n, H) against y (B, n)
        o = m.out(out)
        return F.cross_entropy(o.reshape(-1, K), y.reshape(-1), reduction="none").reshape(y.shape)

    out, final = m.step(X, state0)
    if truncate is None:
        E = (w * ce(out, ys)).sum()
    else:
        E = 0
        for t in range(T):
            start = max(0, t - truncate)
            if start == 0:
                init = state0
            else:
                with torch.no_grad():
                    _, init = m.step(X[:, :start], state0)
            win_out, _ = m.step(X[:, start : t + 1], init)
            E = E + (w[:, t] * ce(win_out[:, -1:], ys[:, t : t + 1])[:, 0]).sum()
    E.backward()
    ref = {"loss": float(E.detach()), **m.grads()}
    zero = [torch.zeros_like(leaf) if leaf.grad is None else leaf.grad for leaf in leaves]
    ds0 = [z.numpy() for z in zero]
    ref["ds0"] = LSTMState(*ds0) if m.lstm else ds0[0]
    ref["dxs"] = None if tokens else x_leaf.grad.numpy()
    finals = [f[0].detach().numpy() for f in (final if m.lstm else (final,))]
    finals = finals if prob.batched else [f[0] for f in finals]
    ref["final_state"] = LSTMState(*finals) if m.lstm else finals[0]
    return ref


def result_items(r) -> dict:
    """The fields of a GatedBPTTResult as a flat dict of arrays (LSTMState parts split)."""
    out = {"loss": np.float64(r.loss)}
    for name, a in r.grads.items():
        out[f"grads.{name}"] = a
    for field in ("ds0", "final_state"):
        v = getattr(r, field)
        if isinstance(v, LSTMState):
            out[f"{field}.h"], out[f"{field}.c"] = v.h, v.c
        else:
            out[field] = v
    if r.dxs is not None:
        out["dxs"] = r.dxs
    return out


def ref_items(ref: dict) -> dict:
    out = {"loss": np.float64(ref["loss"])}
    for name in ("U", "W", "b_ih", "b_hh", "V", "c"):
        if name in ref:
            out[f"grads.{name}"] = ref[name]
    for field in ("ds0", "final_state"):
        v = ref[field]
        if isinstance(v, LSTMState):
            out[f"{field}.h"], out[f"{field}.c"] = v.h, v.c
        else:
            out[field] = v
    if ref["dxs"] is not None:
        out["dxs"] = ref["dxs"]
    return out


def assert_matches_torch(r, ref: dict, cell: str) -> None:
    got, want = result_items(r), ref_items(ref)
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for name in want:
        oracle_close(got[name], want[name], name=name, key=f"{cell}.{name}")


CELLS = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


# ---------------------------------------------------------------------------------------------
# Agreement with nn.GRU / nn.LSTM
# ---------------------------------------------------------------------------------------------
@st.composite
def problems(draw, cls):
    return make(
        cls,
        D=draw(st.integers(1, 5)),
        H=draw(st.integers(1, 5)),
        K=draw(st.integers(2, 5)),
        T=draw(st.integers(1, 6)),
        B=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**31 - 1)),
        tokens=draw(st.booleans()),
        batched=draw(st.booleans()),
        bias=draw(st.booleans()),
        out_bias=draw(st.booleans()),
        s0_kind=draw(st.sampled_from([None, "shared", "rows"])),
        use_mask=draw(st.booleans()),
        reduction=draw(st.sampled_from(["sum", "mean"])),
        weight_scale=draw(st.floats(0.3, 4.0)),
    )


@settings(max_examples=examples(0.5))
@given(prob=problems(GRUParams))
def test_gru_bptt_equals_torch_gru(prob):
    assert_matches_torch(mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs()), torch_reference(prob), "gru")


@settings(max_examples=examples(0.5))
@given(prob=problems(LSTMParams))
def test_lstm_bptt_equals_torch_lstm(prob):
    assert_matches_torch(
        mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs()), torch_reference(prob), "lstm"
    )


@settings(max_examples=examples(0.25))
@given(data=st.data(), lstm=st.booleans())
def test_truncated_bptt_equals_torch_windowed_objective_for_every_tau(data, lstm):
    cls = LSTMParams if lstm else GRUParams
    prob = data.draw(problems(cls))
    T = prob.ys.shape[-1]
    for tau in range(T + 1):
        r = mb.bptt(prob.p, prob.xs, prob.ys, truncate=tau, **prob.kwargs())
        assert_matches_torch(r, torch_reference(prob, truncate=tau), f"{cls.__name__[:-6].lower()}.tbptt")


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_bptt_equals_torch_on_unequal_sizes(cls, tokens, batched):
    prob = make(cls, D=3, H=5, K=4, T=7, B=2, seed=11, tokens=tokens, batched=batched, use_mask=True)
    r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs())
    assert_matches_torch(r, torch_reference(prob), "x")
    if cls is GRUParams:  # the problem can tell b_in from b_hn (the reset gate sits between them)
        H = prob.p.hidden_size
        assert np.max(np.abs(r.grads.b_ih[2 * H :] - r.grads.b_hh[2 * H :])) > 1e-3


def gate_derivatives(p, xs, s0) -> np.ndarray:
    """σ'(a) and tanh'(a) of every gate at every step of a run, from torch's own equations."""
    m = TorchModel(p)
    X = torch.from_numpy(xs)[None]
    H = p.hidden_size
    h = torch.from_numpy(np.asarray(s0[0] if m.lstm else s0))[None]
    c = torch.from_numpy(np.asarray(s0[1]))[None] if m.lstm else None
    Wi, Wh = m.rnn.weight_ih_l0.detach(), m.rnn.weight_hh_l0.detach()
    bi, bh = m.rnn.bias_ih_l0.detach(), m.rnn.bias_hh_l0.detach()
    derivs = []
    for t in range(X.shape[1]):
        gi, gh = X[:, t] @ Wi.T + bi, h @ Wh.T + bh
        if m.lstm:
            a = gi + gh
            gates = torch.cat(
                [torch.sigmoid(a[:, : 2 * H]), torch.tanh(a[:, 2 * H : 3 * H]), torch.sigmoid(a[:, 3 * H :])],
                dim=1,
            )
            sig = torch.cat([gates[:, : 2 * H], gates[:, 3 * H :]], dim=1)
            derivs.append(torch.cat([sig * (1 - sig), 1 - gates[:, 2 * H : 3 * H] ** 2], dim=1))
            c = gates[:, H : 2 * H] * c + gates[:, :H] * gates[:, 2 * H : 3 * H]
            h = gates[:, 3 * H :] * torch.tanh(c)
        else:
            rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
            n = torch.tanh(gi[:, 2 * H :] + rz[:, :H] * gh[:, 2 * H :])
            derivs.append(torch.cat([rz * (1 - rz), 1 - n**2], dim=1))
            h = (1 - rz[:, H:]) * n + rz[:, H:] * h
    return torch.cat(derivs).numpy()


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0, 12.0])
def test_bptt_equals_torch_in_and_out_of_saturation(cls, scale):
    prob = make(cls, D=4, H=6, K=3, T=8, B=1, seed=5, batched=False, weight_scale=scale, s0_kind="shared")
    derivs = gate_derivatives(prob.p, prob.xs, prob.s0)
    saturated = float(np.mean(derivs < 1e-3))
    # the scales really span the regimes: no gate saturated at 0.3, a large share at 12
    if scale == 0.3:
        assert saturated == 0.0
    if scale == 12.0:
        assert saturated > 0.3, saturated
    assert_matches_torch(mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs()), torch_reference(prob), "sat")


@pytest.mark.parametrize("cls", CELLS)
def test_forward_equals_torch_states_logits_and_probabilities(cls):
    prob = make(cls, D=3, H=4, K=5, T=6, B=3, seed=2)
    f = mb.forward(prob.p, prob.xs, s0=prob.s0)
    m = TorchModel(prob.p)
    hx = [torch.from_numpy(a)[None] for a in (prob.s0 if m.lstm else [prob.s0])]
    with torch.no_grad():
        out, final = m.step(torch.from_numpy(prob.xs), tuple(hx) if m.lstm else hx[0])
        o = m.out(out)
    assert_close(f.h, out.numpy(), name="h")
    assert_close(f.o, o.numpy(), name="o")
    assert_close(f.y_hat, torch.softmax(o, -1).numpy(), name="y_hat")
    if m.lstm:
        assert_close(f.final_state.h, final[0][0].numpy(), name="final h")
        assert_close(f.final_state.c, final[1][0].numpy(), name="final c")
        # c_t at every step: the final state of runs over the first t + 1 steps
        with torch.no_grad():
            c_all = [m.step(torch.from_numpy(prob.xs[:, : t + 1]), tuple(hx))[1][1][0] for t in range(6)]
        assert_close(f.cell_state, torch.stack(c_all, 1).numpy(), name="cell_state")
    else:
        assert f.cell_state is None
        assert_close(f.final_state, final[0].numpy(), name="final h")


@pytest.mark.parametrize("cls", CELLS)
def test_chunks_chained_by_final_state_equal_one_run(cls):
    prob = make(cls, T=8, B=2, seed=3)
    whole = mb.forward(prob.p, prob.xs, s0=prob.s0)
    first = mb.bptt(prob.p, prob.xs[:, :5], prob.ys[:, :5], s0=prob.s0)
    second = mb.forward(prob.p, prob.xs[:, 5:], s0=first.final_state)
    np.testing.assert_array_equal(second.h, whole.h[:, 5:])
    assert type(first.final_state) is type(whole.final_state)


def test_ten_thousand_step_lstm_agrees_with_torch():
    prob = make(LSTMParams, D=2, H=3, K=2, T=10_000, B=1, seed=7, batched=False, s0_kind="shared")
    r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs())
    assert_matches_torch(r, torch_reference(prob), "lstm.T10000")


# ---------------------------------------------------------------------------------------------
# The step functions: partials are the Jacobians that backward multiplies by
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
def test_partials_are_the_jacobians_of_the_backward_step(cls):
    from manual_bptt.cells import GRU, LSTM

    cell = LSTM if cls is LSTMParams else GRU
    rng = np.random.default_rng(4)
    B, H, G = 3, 4, cell.gates
    p = cls.init(2, H, 2, seed=1, weight_scale=2.0)
    g = gated.prepare_gated(kind_of(p).cell, p, rng.standard_normal((B, 1, 2)), None, labels_required=False)
    w = g.step_weights()
    z_prev = rng.standard_normal((B, cell.parts * H))
    _, cache = cell.forward(w, g.input_terms()[0], z_prev)
    dz = rng.standard_normal((B, cell.parts * H))
    dz_prev, dgi, dgh = cell.backward(w, dz, cache)
    Ji, Jh, Jz = cell.partials(w, cache)
    S = cell.parts * H
    assert Ji.shape == Jh.shape == (B, S, G * H)
    assert Jz.shape == (B, S, S)
    assert_close(np.einsum("bs,bsg->bg", dz, Ji), dgi, name="dz Ji")
    assert_close(np.einsum("bs,bsg->bg", dz, Jh), dgh, name="dz Jh")
    embed = np.zeros((H, S))
    embed[:, :H] = np.eye(H)  # [I_H 0]
    step = Jz + Jh @ p.W @ embed  # dz_t/dz_{t-1} = Jz + Jh W [I_H 0]
    assert_close(np.einsum("bs,bsr->br", dz, step), dz_prev, name="dz dz_t/dz_{t-1}")
