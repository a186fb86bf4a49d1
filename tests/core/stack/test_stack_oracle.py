"""A stack's hand-written gradients (manual_bptt with a StackParams) against the autograd oracle
(reference.stack_backward) and the native module (reference.torch_stack_backward: nn.RNN, nn.GRU,
nn.LSTM, fed pack_padded_sequence(..., enforce_sorted=False) when there are lengths).

float64 at max|a - b| <= 1e-10 max|ref| + 1e-12 (NaN fails), every field: the outputs, h_n, c_n,
every parameter's gradient by its torch name, dxs, dh0, dc0. Every cell (the Elman cell with
tanh and relu, the GRU, the LSTM with and without a projection), L = 1..3, both directions, with
and without biases, every kind of lengths (none, all T, all different, some of length 1,
unsorted), random h0 / c0 and upstream gradients, unequal sizes; truncation (one direction),
the output layer (bptt), the forward pass, token ids, unbatched input, float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from stack_cases import (
    ATOL32,
    LENGTH_KINDS,
    RTOL32,
    VARIANTS,
    assert_agree,
    mine,
    stack_params,
    stack_problem,
    state,
)

import manual_bptt as mb
import reference as ref
from conftest import examples
from manual_bptt.checking import assert_close


def oracle(spec, params, kw, **extra) -> ref.StackResult:
    return ref.stack_backward(spec, params, **kw, **extra)


def native(spec, params, kw) -> ref.StackResult:
    return ref.torch_stack_backward(ref.make_torch_stack(spec, params), **kw)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-direction", "bidirectional"])
@pytest.mark.parametrize("L", [1, 2, 3], ids=lambda L: f"L{L}")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_backward_equals_the_oracle_and_the_native_module(variant, L, bidirectional):
    """Every kind of lengths; biases on and off alternate with the kind and with L, so each
    variant sees every kind with and without biases."""
    for i, kind in enumerate(LENGTH_KINDS):
        bias = (i + L) % 2 == 0
        spec, params, kw = stack_problem(
            variant, L=L, bidirectional=bidirectional, bias=bias, lengths=kind, seed=10 * L + i
        )
        label = f"{variant} L={L} {'bi' if bidirectional else 'one'} {kind} bias={bias}"
        r = mine(spec, params, kw)
        assert_agree(r, oracle(spec, params, kw), label=f"{label} vs oracle")
        assert_agree(r, native(spec, params, kw), label=f"{label} vs native")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_truncated_backward_equals_the_truncated_oracle(variant):
    """One direction: every layer's recurrence truncated at tau, the path between layers not
    (reference.stack_backward(truncate=tau)), for tau = 0, 1, 3 and L = 1..3, with lengths and
    without."""
    for L in (1, 2, 3):
        for tau, kind in ((0, "ones"), (1, "different"), (3, "none"), (1, "unsorted")):
            spec, params, kw = stack_problem(variant, L=L, bidirectional=False, lengths=kind, seed=L + tau)
            label = f"{variant} L={L} tau={tau} {kind}"
            assert_agree(
                mine(spec, params, kw, truncate=tau), oracle(spec, params, kw, truncate=tau), label=label
            )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_equals_the_oracle(variant):
    """mb.forward's outputs, h_n and c_n, bidirectional, two layers, lengths; the logits and
    y_hat of an output layer are V outputs_t + c and its softmax, 0 past each length."""
    spec, params, kw = stack_problem(
        variant, L=2, bidirectional=True, lengths="ones", upstream=(False, False)
    )
    expected = oracle(spec, params, kw)
    assert_agree(mine(spec, params, kw), expected, label=f"{variant} forward")
    rng = np.random.default_rng(1)
    K, width = 7, spec.directions * spec.out_size
    V, c = rng.normal(size=(K, width)), rng.normal(size=K)
    f = mb.forward(stack_params(spec, params, V=V, c=c), kw["x"], s0=state(spec, kw["h0"], kw.get("c0")),
                   lengths=kw["lengths"])  # fmt: skip
    o = expected.outputs @ V.T + c
    y_hat = np.exp(o - o.max(axis=-1, keepdims=True))
    y_hat /= y_hat.sum(axis=-1, keepdims=True)
    valid = (np.arange(kw["x"].shape[1])[None, :] < kw["lengths"][:, None])[:, :, None]
    assert_close(f.o, np.where(valid, o, 0), name="o")
    assert_close(f.y_hat, np.where(valid, y_hat, 0), name="y_hat")


def output_layer_reference(outputs, V, c, ys, counted, reduction):
    """E, dE/dV, dE/dc and dE/d outputs of the softmax cross-entropy over the counted steps, by
    torch autograd from the oracle's outputs (the test writes the output layer out itself)."""
    out = torch.tensor(outputs, requires_grad=True)
    V_t, c_t = torch.tensor(V, requires_grad=True), torch.tensor(c, requires_grad=True)
    logp = torch.log_softmax(out @ V_t.T + c_t, dim=-1)  # (B, T, K)
    E_t = -logp.gather(-1, torch.tensor(np.where(counted, ys, 0))[..., None])[..., 0]
    w = torch.tensor(counted, dtype=torch.float64)
    E = (w * E_t).sum() / (w.sum() if reduction == "mean" else 1.0)
    E.backward()
    return E.item(), V_t.grad.numpy(), c_t.grad.numpy(), out.grad.numpy()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bptt_equals_the_oracle_with_the_output_layer_written_out(variant, reduction):
    """mb.bptt over two bidirectional layers with lengths and a mask: the loss and dV, dc from
    torch's log_softmax over the oracle's outputs; every other gradient from the oracle fed the
    output layer's dE/d outputs. Labels past a length (and where the mask is False) are -100:
    never read. Also without lengths (the fast paths), and one direction truncated at 1."""
    for bidirectional, tau, kind in (
        (True, None, "different"),
        (True, None, "none"),
        (False, 1, "different"),
    ):
        spec, params, kw = stack_problem(variant, L=2, bidirectional=bidirectional, lengths=kind,
                                         upstream=(False, False), seed=3)  # fmt: skip
        rng = np.random.default_rng(2)
        K, width = 7, spec.directions * spec.out_size
        B, T = kw["x"].shape[:2]
        V, c = rng.normal(size=(K, width)), rng.normal(size=K)
        ys = rng.integers(0, K, size=(B, T))
        mask = rng.random((B, T)) < 0.8
        n = np.full(B, T) if kw["lengths"] is None else kw["lengths"]
        counted = mask & (np.arange(T)[None, :] < n[:, None])
        ys = np.where(counted, ys, -100)
        outputs = oracle(spec, params, kw).outputs
        E, dV, dc, d_outputs = output_layer_reference(outputs, V, c, ys, counted, reduction)
        expected = oracle(spec, params, {**kw, "d_outputs": d_outputs}, truncate=tau)
        p = stack_params(spec, params, V=V, c=c)
        s0 = state(spec, kw["h0"], kw.get("c0"))
        r = mb.bptt(
            p, kw["x"], ys, s0=s0, lengths=kw["lengths"], mask=mask, reduction=reduction, truncate=tau
        )
        label = f"{variant} {reduction} {'bi' if bidirectional else f'tau={tau}'}"
        assert abs(r.loss - E) <= 1e-10 * abs(E) + 1e-12, (label, r.loss, E)
        assert_close(r.grads.V, dV, name=f"{label}: dV")
        assert_close(r.grads.c, dc, name=f"{label}: dc")
        grads = r.grads.to_state_dict()
        assert list(grads) == list(expected.grads)
        for name, e in expected.grads.items():
            assert_close(grads[name], e, name=f"{label}: {name}")
        assert_close(r.dxs, expected.dx, name=f"{label}: dxs")
        dh0 = r.ds0.h if spec.cell == "lstm" else r.ds0
        assert_close(dh0, expected.dh0, name=f"{label}: dh0")
        if spec.cell == "lstm":
            assert_close(r.ds0.c, expected.dc0, name=f"{label}: dc0")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_token_ids_are_one_hot_dense_inputs(variant):
    """Token ids (B, T) for layer 0 are the one-hot dense inputs: the oracle on one-hot x, with
    lengths (the ids past each length are -1: never read) and without (the fast paths); dxs is
    None for token ids."""
    for kind in ("ones", "none"):
        spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths=kind, D=4, seed=4)
        rng = np.random.default_rng(3)
        B, T = kw["x"].shape[:2]
        ids = rng.integers(0, 4, size=(B, T))
        kw["x"] = np.eye(4)[ids]
        expected = oracle(spec, params, kw)
        if kw["lengths"] is not None:
            ids = np.where(np.arange(T)[None, :] < kw["lengths"][:, None], ids, -1)
        lstm = spec.cell == "lstm"
        r = mb.backward(
            stack_params(spec, params), ids, kw["d_outputs"], s0=state(spec, kw["h0"], kw.get("c0")),
            d_final=state(spec, kw["d_h_n"], kw.get("d_c_n")), lengths=kw["lengths"],
        )  # fmt: skip
        assert r.dxs is None
        assert_close(r.hs, expected.outputs, name=f"{kind} outputs")
        assert_close(r.ds0.h if lstm else r.ds0, expected.dh0, name=f"{kind} dh0")
        grads = r.grads.to_state_dict()
        for name, e in expected.grads.items():
            assert_close(grads[name], e, name=f"{kind} {name}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unbatched_input_equals_the_oracle(variant):
    """xs (T, D), states (L*dirs, H_out), dhs (T, dirs*H_out): three bidirectional layers."""
    spec, params, kw = stack_problem(variant, L=3, bidirectional=True, B=None, seed=5)
    expected = oracle(spec, params, kw)
    assert expected.outputs.ndim == 2
    assert_agree(mine(spec, params, kw), expected, label=f"{variant} unbatched")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_is_computed_in_float32_at_float32_accuracy(variant):
    """float32 parameters and inputs: every result float32, within 1e-4 max|ref| + 1e-6 of the
    float64 oracle on the same float32 numbers; with lengths (the drivers) and without (the fast
    paths, but for the projection)."""
    for kind in ("none", "different"):
        spec, params, kw = stack_problem(variant, L=2, bidirectional=True, lengths=kind, seed=6)
        rounded = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
        kw64 = {k: (v if k == "lengths" or v is None else v.astype(np.float32).astype(np.float64))
                for k, v in kw.items()}  # fmt: skip
        r = mine(spec, rounded, kw64, dtype=np.float32)
        for field in ("outputs", "h_n", "dx", "dh0"):
            assert getattr(r, field).dtype == np.float32, field
        assert all(g.dtype == np.float32 for g in r.grads.values())
        assert_agree(
            r, oracle(spec, rounded, kw64), label=f"{variant} float32 {kind}", rtol=RTOL32, atol=ATOL32
        )


@st.composite
def problems(draw):
    """Every option drawn: the variant, L, directions, bias, lengths, sizes (B < T; D, H, P
    distinct), weight scale, states or zeros, which upstream gradients, unbatched, truncation."""
    variant = draw(st.sampled_from(list(VARIANTS)))
    B, T, D, H = draw(st.lists(st.integers(1, 7), min_size=4, max_size=4, unique=True))
    B, T = min(B, T), max(B, T)
    H = max(H, 2)
    unbatched = draw(st.sampled_from([False, False, False, True]))
    bidirectional = draw(st.booleans())
    upstream = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    spec, params, kw = stack_problem(
        variant,
        L=draw(st.integers(1, 3)),
        bidirectional=bidirectional,
        bias=draw(st.booleans()),
        lengths="none" if unbatched else draw(st.sampled_from(LENGTH_KINDS)),
        B=None if unbatched else B,
        T=T,
        D=D,
        H=H,
        P=draw(st.integers(1, H - 1)),
        scale=draw(st.sampled_from([0.5, 1.0, 2.5])),
        states=draw(st.booleans()),
        upstream=upstream,
        seed=draw(st.integers(0, 2**31 - 1)),
    )
    tau = None if bidirectional else draw(st.sampled_from([None, None, 0, 1, 2]))
    return spec, params, kw, tau


@settings(max_examples=examples(0.25), deadline=None)
@given(problem=problems())
def test_random_problems_equal_the_oracle(problem):
    spec, params, kw, tau = problem
    event(f"{spec.cell} L={spec.num_layers} dirs={spec.directions} tau={tau}")
    event("unbatched" if kw["x"].ndim == 2 else "no lengths" if kw["lengths"] is None else "lengths")
    assert_agree(
        mine(spec, params, kw, truncate=tau), oracle(spec, params, kw, truncate=tau), label=str(spec)
    )
