"""Exact identities of the stacks (bitwise unless said otherwise):

- a StackParams of one layer, one direction, no projection and no lengths is today's one-layer
  type: StackParams.from_params(p) gives mb.backward's, mb.bptt's and mb.forward's results of p;
- drivers.run / drivers.backprop with mask=None and with an all-True mask are the same;
- lengths all T are no lengths; truncate=tau with tau >= T - 1 is full BPTT;
- the state dict round trips (a module's state_dict -> StackParams -> a module), float64 and
  float32; from_params and to_params round trip;
- what lies past a sequence's length (inputs, upstream gradients, labels) is never read;
- each sequence of a batch with lengths is the unbatched run over its own steps (at 1e-12);
- the projected LSTM spec's partials are the Jacobians of its backward step (at 1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from stack_cases import VARIANTS, stack_params, stack_problem, state

import manual_bptt as mb
import reference as ref
from manual_bptt import drivers
from manual_bptt.cells import ELMAN, GRU, LSTM, StepWeights
from manual_bptt.checking import assert_close

ONE_LAYER = {"rnn-tanh": mb.RNNParams, "rnn-relu": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
D, H, K, T, B = 3, 4, 5, 7, 2


def same(a, b, name):
    """Bitwise equal arrays (or LSTMStates, or None) of the same dtype."""
    if a is None or b is None:
        assert a is None and b is None, name
        return
    if isinstance(a, tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{name}[{i}]")
        return
    assert np.asarray(a).dtype == np.asarray(b).dtype, name
    np.testing.assert_array_equal(a, b, err_msg=name)


def stacked(s):
    """Today's state (B, H) / (H,) or LSTMState in the stack layout (1, B, H) / (1, H)."""
    if s is None:
        return None
    return mb.LSTMState(s.h[None], s.c[None]) if isinstance(s, mb.LSTMState) else s[None]


def same_grads(stack_grads: mb.StackParams, grads, cell: str, name: str):
    """A one-layer StackParams's gradients against today's (the Elman cell's db is both biases')."""
    lw = stack_grads.layers[0][0]
    same(lw.U, grads.U, f"{name} U")
    same(lw.W, grads.W, f"{name} W")
    if cell == "rnn":
        same(lw.b_ih, grads.b, f"{name} b_ih")
        same(lw.b_hh, grads.b, f"{name} b_hh")
    else:
        same(lw.b_ih, grads.b_ih, f"{name} b_ih")
        same(lw.b_hh, grads.b_hh, f"{name} b_hh")
    same(stack_grads.V, grads.V, f"{name} V")
    same(stack_grads.c, grads.c, f"{name} c")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("variant", list(ONE_LAYER))
def test_one_layer_stack_is_todays_one_layer_type_bitwise(variant, bias):
    cell, nonlinearity, _ = VARIANTS[variant]
    act = nonlinearity if cell == "rnn" else None
    for tokens, batched, tau, dtype in [
        (False, True, None, np.float64),
        (True, True, 2, np.float64),
        (False, False, None, np.float64),
        (False, True, 3, np.float32),
        (True, False, None, np.float32),
    ]:
        label = f"{variant} tokens={tokens} batched={batched} tau={tau} {np.dtype(dtype).name}"
        rng = np.random.default_rng(7)
        p = ONE_LAYER[variant].init(D, H, K, seed=1, bias=bias).astype(dtype)
        q = mb.StackParams.from_params(p, nonlinearity=act)
        lead = (B,) if batched else ()
        xs = rng.integers(0, D, (*lead, T)) if tokens else rng.standard_normal((*lead, T, D)).astype(dtype)
        ys = rng.integers(0, K, (*lead, T))
        parts = [rng.standard_normal((*lead, H)).astype(dtype) for _ in range(2 if cell == "lstm" else 1)]
        s0 = mb.LSTMState(*parts) if cell == "lstm" else parts[0]
        dhs = rng.standard_normal((*lead, T, H)).astype(dtype)
        fin = [rng.standard_normal((*lead, H)).astype(dtype) for _ in range(2 if cell == "lstm" else 1)]
        d_final = mb.LSTMState(*fin) if cell == "lstm" else fin[0]

        today = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=tau, activation=act)
        r = mb.backward(q, xs, dhs, s0=stacked(s0), d_final=stacked(d_final), truncate=tau)
        same_grads(r.grads, today.grads, cell, f"{label} backward")
        for field in ("dxs", "hs"):
            same(getattr(r, field), getattr(today, field), f"{label} backward {field}")
        same(r.ds0, stacked(today.ds0), f"{label} backward ds0")
        same(r.final_state, stacked(today.final_state), f"{label} backward final_state")

        mask = rng.random(ys.shape) < 0.7
        today = mb.bptt(p, xs, ys, s0=s0, truncate=tau, mask=mask, reduction="mean", activation=act)
        r = mb.bptt(q, xs, ys, s0=stacked(s0), truncate=tau, mask=mask, reduction="mean")
        assert r.loss == today.loss, label
        same_grads(r.grads, today.grads, cell, f"{label} bptt")
        same(r.dxs, today.dxs, f"{label} bptt dxs")
        same(r.ds0, stacked(today.ds0), f"{label} bptt ds0")
        same(r.final_state, stacked(today.final_state), f"{label} bptt final_state")

        today = mb.forward(p, xs, s0=s0, activation=act)
        f = mb.forward(q, xs, s0=stacked(s0))
        same(f.outputs, today.s if cell == "rnn" else today.h, f"{label} forward outputs")
        same(f.final_state, stacked(today.final_state), f"{label} forward final_state")
        same(f.o, today.o, f"{label} forward o")
        same(f.y_hat, today.y_hat, f"{label} forward y_hat")


def driver_case(cell, projected: bool, seed: int = 0):
    """(cell, StepWeights, gi (T, B, G*H), s0 (B, S), ds_direct (T, B, S)) of a random step."""
    rng = np.random.default_rng(seed)
    G, H_out = cell.gates, 3 if projected else H
    W = rng.standard_normal((G * H, H_out)) / 2
    W_hr = rng.standard_normal((H_out, H)) / 2 if projected else None
    w = StepWeights(
        W=W, WT=np.ascontiguousarray(W.T), b_hh=rng.standard_normal(G * H), H=H,
        act=mb.ACTIVATIONS["tanh"] if cell is ELMAN else None, W_hr=W_hr,
        W_hrT=None if W_hr is None else np.ascontiguousarray(W_hr.T),
    )  # fmt: skip
    S = H_out + (H if cell is LSTM else 0)
    return w, rng.standard_normal((T, B, G * H)), rng.standard_normal((B, S)), rng.standard_normal((T, B, S))


@pytest.mark.parametrize("case", ["rnn", "gru", "lstm", "lstm-proj"])
def test_the_drivers_with_an_all_true_mask_are_the_drivers_without_one(case):
    cell = {"rnn": ELMAN, "gru": GRU, "lstm": LSTM, "lstm-proj": LSTM}[case]
    w, gi, s0, ds_direct = driver_case(cell, case == "lstm-proj")
    everywhere = np.ones((T, B), dtype=bool)
    plain, masked = drivers.run(cell, w, gi, s0), drivers.run(cell, w, gi, s0, mask=everywhere)
    same(masked.s, plain.s, f"{case} run")
    for tau, ds_final in ((None, s0 * 0.5), (2, None), (0, None)):
        dh = [np.zeros((T, B, w.H_out)) for _ in range(2)]
        a = drivers.backprop(cell, w, plain, ds_direct, truncate=tau, ds_final=ds_final, dh_out=dh[0])
        b = drivers.backprop(cell, w, masked, ds_direct, truncate=tau, ds_final=ds_final, mask=everywhere,
                             dh_out=dh[1])  # fmt: skip
        for name, x, y in zip(("dgi", "dgh", "ds0"), a, b, strict=True):
            same(y, x, f"{case} tau={tau} {name}")
        same(dh[1], dh[0], f"{case} tau={tau} dh_out")
        assert np.abs(dh[0]).max() > 0.1  # not vacuous


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lengths_all_T_are_no_lengths_and_tau_at_least_T_minus_1_is_full(variant):
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths="full", seed=1)
    p = stack_params(spec, params)
    s0, d_final = state(spec, kw["h0"], kw.get("c0")), state(spec, kw["d_h_n"], kw.get("d_c_n"))

    def call(**extra):
        return mb.backward(p, kw["x"], kw["d_outputs"], s0=s0, d_final=d_final, **extra)

    full, none = call(lengths=kw["lengths"]), call()
    for field in ("dxs", "ds0", "hs", "final_state"):
        same(getattr(full, field), getattr(none, field), f"{variant} lengths all T: {field}")
    for (name, a), (_, b) in zip(full.grads.items(), none.grads.items(), strict=True):
        same(a, b, f"{variant} lengths all T: {name}")

    T_ = kw["x"].shape[1]
    spec, params, kw = stack_problem(variant, L=2, bidirectional=False, lengths="different", seed=2)
    p = stack_params(spec, params)
    s0, d_final = state(spec, kw["h0"], kw.get("c0")), state(spec, kw["d_h_n"], kw.get("d_c_n"))
    for lengths in (kw["lengths"], None):
        exact = call(lengths=lengths)
        for tau in (T_ - 1, T_ + 3):
            r = call(lengths=lengths, truncate=tau)
            label = f"{variant} tau={tau} lengths={lengths is not None}"
            for field in ("dxs", "ds0"):
                same(getattr(r, field), getattr(exact, field), f"{label}: {field}")
            for (name, a), (_, b) in zip(r.grads.items(), exact.grads.items(), strict=True):
                same(a, b, f"{label}: {name}")
        truncated = call(lengths=lengths, truncate=1)  # not vacuous: truncation changes something
        assert not np.array_equal(truncated.grads.layers[0][0].W, exact.grads.layers[0][0].W)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_state_dict_round_trips_bitwise(variant, dtype):
    """module.state_dict() -> StackParams -> to_state_dict(): the same names in the same order,
    the same numbers and dtype; loaded into a fresh module, the module's parameters are the
    first module's (reference.stack_params_from_torch); the oracle's dict round trips too."""
    import torch

    spec, params, _ = stack_problem(variant, L=2, bidirectional=True, bias=variant != "gru", seed=3)
    tdt = getattr(torch, dtype)
    module = ref.make_torch_stack(spec, params, dtype=tdt)
    sd = module.state_dict()
    p = mb.StackParams.from_state_dict(
        spec.cell, sd, nonlinearity=spec.nonlinearity if spec.cell == "rnn" else None
    )
    assert p.dtype == np.dtype(dtype)
    out = p.to_state_dict()
    assert list(out) == list(sd)
    for name, t in sd.items():
        same(out[name], t.numpy(), f"{variant} {name}")
        assert out[name].flags.writeable and not np.shares_memory(out[name], t.numpy())
    fresh = ref.make_torch_stack(spec, dtype=tdt, seed=99)
    fresh.load_state_dict({k: torch.as_tensor(v) for k, v in out.items()})
    a, b = ref.stack_params_from_torch(fresh), ref.stack_params_from_torch(module)
    for name in a:
        same(a[name], b[name], f"{variant} module round trip {name}")
    back = stack_params(spec, params).to_state_dict()
    for name in params:
        same(back[name], params[name], f"{variant} dict round trip {name}")
    assert (p.num_layers, p.bidirectional, p.proj_size, p.bias) == (2, True, spec.proj_size, spec.bias)
    assert (p.input_size, p.hidden_size, p.out_size) == (spec.input_size, spec.hidden_size, spec.out_size)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cls", [mb.RNNParams, mb.GRUParams, mb.LSTMParams])
def test_from_params_and_to_params_round_trip(cls, bias):
    p = cls.init(D, H, K, seed=4, bias=bias)
    q = mb.StackParams.from_params(p)
    assert (q.num_layers, q.directions, q.proj_size, q.bias, q.output_size) == (1, 1, 0, bias, K)
    back = q.to_params()
    assert type(back) is cls
    for (name, a), (name_b, b) in zip(p.items(), back.items(), strict=True):
        assert name == name_b
        same(b, a, f"{cls.__name__} {name}")
    if cls is mb.RNNParams and bias:
        assert np.all(q.layers[0][0].b_hh == 0.0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_what_lies_past_a_length_is_never_read(variant):
    """NaN inputs and upstream gradients past each length, and labels of -1 there, give the same
    numbers as zeros there (bitwise): nothing past a length is read."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths="ones", seed=5)
    K_ = 4
    rng = np.random.default_rng(6)
    p = stack_params(
        spec, params, V=rng.normal(size=(K_, spec.directions * spec.out_size)), c=rng.normal(size=K_)
    )
    Bn, Tn = kw["x"].shape[:2]
    past = (np.arange(Tn)[None, :] >= kw["lengths"][:, None])[:, :, None]
    s0 = state(spec, kw["h0"], kw.get("c0"))
    ys = rng.integers(0, K_, size=(Bn, Tn))
    runs = []
    for fill in (0.0, np.nan):
        x = np.where(past, fill, kw["x"])
        dhs = np.where(past, fill, kw["d_outputs"])
        labels = np.where(past[:, :, 0], 0 if fill == 0.0 else -1, ys)
        runs.append((mb.backward(p, x, dhs, s0=s0, lengths=kw["lengths"]),
                     mb.bptt(p, x, labels, s0=s0, lengths=kw["lengths"])))  # fmt: skip
    (b0, t0), (b1, t1) = runs
    assert t0.loss == t1.loss
    for r0, r1 in ((b0, b1), (t0, t1)):
        same(r1.dxs, r0.dxs, f"{variant} dxs")
        same(r1.ds0, r0.ds0, f"{variant} ds0")
        for (name, a), (_, b) in zip(r0.grads.items(), r1.grads.items(), strict=True):
            same(b, a, f"{variant} {name}")
    assert np.all(b0.dxs[past[:, :, 0]] == 0.0) and np.all(b0.hs[past[:, :, 0]] == 0.0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_sequence_is_its_own_unbatched_run(variant):
    """Row b of a batch with lengths is the unbatched call on its own n_b steps: its outputs,
    final states, dxs and ds0 (at 1e-12: the products' row order may differ)."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths="different", seed=7)
    p = stack_params(spec, params)
    lstm = spec.cell == "lstm"
    s0, d_final = state(spec, kw["h0"], kw.get("c0")), state(spec, kw["d_h_n"], kw.get("d_c_n"))
    r = mb.backward(p, kw["x"], kw["d_outputs"], s0=s0, d_final=d_final, lengths=kw["lengths"])

    def row(s, b):
        return None if s is None else (mb.LSTMState(s.h[:, b], s.c[:, b]) if lstm else s[:, b])

    for b, n in enumerate(kw["lengths"]):
        one = mb.backward(p, kw["x"][b, :n], kw["d_outputs"][b, :n], s0=row(s0, b), d_final=row(d_final, b))
        tol = {"rtol": 1e-12, "atol": 1e-14}
        assert_close(r.hs[b, :n], one.hs, name=f"{variant} row {b} outputs", **tol)
        assert_close(r.dxs[b, :n], one.dxs, name=f"{variant} row {b} dxs", **tol)
        for i in range(2 if lstm else 1):
            pick = (lambda s, i=i: s[i]) if lstm else (lambda s: s)
            assert_close(pick(row(r.final_state, b)), pick(one.final_state), name=f"row {b} final", **tol)
            assert_close(pick(row(r.ds0, b)), pick(one.ds0), name=f"row {b} ds0", **tol)


def test_the_projected_lstm_partials_are_the_jacobians_of_its_backward_step():
    w, gi, s0, _ = driver_case(LSTM, projected=True, seed=8)
    H_out, S = w.H_out, w.H_out + H
    rng = np.random.default_rng(9)
    _, cache = LSTM.forward(w, gi[0], s0)
    ds = rng.standard_normal((B, S))
    ds_prev, dgi, dgh = LSTM.backward(w, ds, cache)
    Ji, Jh, Js = LSTM.partials(w, cache)
    assert Ji.shape == Jh.shape == (B, S, 4 * H) and Js.shape == (B, S, S)
    assert_close(np.einsum("bs,bsg->bg", ds, Ji), dgi, name="ds Ji")
    assert_close(np.einsum("bs,bsg->bg", ds, Jh), dgh, name="ds Jh")
    A, _, _ = drivers.step_jacobian(LSTM, w, cache)  # ds_t/ds_{t-1} = Js + Jh W [I_H_out 0]
    assert_close(np.einsum("bs,bsr->br", ds, A), ds_prev, name="ds ds_t/ds_{t-1}")
    m = LSTM.output_input(cache)
    step, _ = LSTM.forward(w, gi[0], s0)
    assert_close(step[:, :H_out], m @ w.W_hr.T, name="h_t = W_hr m_t")
