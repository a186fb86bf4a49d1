"""The oracle for every shape of torch's recurrent layers (reference.stack) against the native
nn.RNN / nn.GRU / nn.LSTM (reference.torch_stack), and against exact identities.

Every float64 comparison is max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values (NaN fails).
Problems are random: sizes B < T, D, H (and the projection P < H) differ, b_ih and b_hh are drawn
independently, h0 and c0 are random, the upstream gradients d_outputs, d_h_n, d_c_n are random, and
the inputs at padded steps are random too (a leak into them would show).

What is proven here:
- the oracle equals the native module (fed pack_padded_sequence(..., enforce_sorted=False) when
  there are lengths) in outputs, h_n, c_n and every gradient (each parameter by its torch name, x,
  h0, c0), for the Elman cell (tanh, relu), the GRU, the LSTM with and without a projection,
  L = 1..3, one and two directions, with and without biases, and lengths all full, all different,
  some of length 1, unsorted, or none;
- identities: one layer and one direction is the one-layer oracle (reference.layer_backward);
  lengths all T is no lengths; a bidirectional layer's reverse half is the forward oracle run on
  each sequence reversed within its length; a stack of two layers is the composition of two
  one-layer stacks (values and every gradient); each sequence of a batch is the unbatched oracle on
  its own steps; nothing at a padded step changes anything; finite differences of the objective;
- truncation (one direction): one layer is reference.layer_backward(truncate=tau) for every tau;
  tau >= T - 1 is full BPTT; with lengths each row is the unbatched truncated run on its own steps;
  two truncated layers are the composition of two truncated one-layer stacks;
- the adapters round-trip losslessly (dict -> module -> dict, module -> dict -> module, float64 and
  float32); bad input is a ValueError naming the argument; caller arrays are left untouched.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import examples, oracle_close
from manual_bptt.testing import assert_close, central_differences

RTOL, ATOL = 1e-10, 1e-12
#: The variants of the cells: id -> (cell, nonlinearity, projected).
VARIANTS = {
    "rnn-tanh": ("rnn", "tanh", False),
    "rnn-relu": ("rnn", "relu", False),
    "gru": ("gru", "tanh", False),
    "lstm": ("lstm", "tanh", False),
    "lstm-proj": ("lstm", "tanh", True),
}
#: The kinds of lengths: none given, all T, all different, some of length 1, ascending (unsorted
#: for pack_padded_sequence, which wants them descending unless enforce_sorted=False).
LENGTH_KINDS = ("none", "full", "different", "ones", "unsorted")
STATE_FIELDS = ("outputs", "h_n", "c_n", "dx", "dh0", "dc0")


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------
def make_lengths(kind: str, B: int, T: int, rng: np.random.Generator) -> np.ndarray | None:
    """lengths (B,) of the given kind, for B < T."""
    if kind == "none":
        return None
    if kind == "full":
        return np.full(B, T)
    if kind == "different":  # B distinct lengths in 1..T, in random order
        return rng.choice(np.arange(1, T + 1), size=B, replace=False)
    if kind == "ones":  # about half the sequences one step long, the others 2..T
        n = rng.integers(2, T + 1, size=B)
        n[rng.choice(B, size=max(1, B // 2), replace=False)] = 1
        return n
    if kind == "unsorted":  # ascending, first shorter than last
        n = np.sort(rng.integers(1, T + 1, size=B))
        if n[0] == n[-1]:
            n[0], n[-1] = 1, T
        return n
    raise AssertionError(kind)


def random_params(spec: ref.StackSpec, rng: np.random.Generator, scale: float = 1.0) -> dict:
    """Random parameters in torch's names: weights ~ N(0, 1) * scale / sqrt(columns), biases
    ~ N(0, 0.5²) * scale, bias_ih and bias_hh independent."""
    params = {}
    for name, shape in spec.param_shapes().items():
        if name.startswith("bias"):
            params[name] = 0.5 * scale * rng.normal(size=shape)
        else:
            params[name] = scale * rng.normal(size=shape) / np.sqrt(shape[1])
    return params


def stack_problem(
    variant: str,
    *,
    L: int,
    bidirectional: bool,
    bias: bool,
    lengths: str,
    B: int = 3,
    T: int = 5,
    D: int = 2,
    H: int = 4,
    P: int = 3,
    scale: float = 1.0,
    states: bool = True,
    upstream: tuple[bool, bool, bool] = (True, True, True),
    seed: int = 0,
) -> tuple[ref.StackSpec, dict, dict]:
    """(spec, params, kwargs of stack_backward: x, h0, c0, lengths, d_outputs, d_h_n, d_c_n).

    B None means unbatched (lengths must be "none"). states: random h0 (and c0), else None.
    upstream: which of d_outputs, d_h_n, d_c_n are given (d_c_n for the LSTM only).
    """
    cell, nonlinearity, projected = VARIANTS[variant]
    spec = ref.StackSpec(
        cell, D, H, num_layers=L, bidirectional=bidirectional, proj_size=P if projected else 0,
        bias=bias, nonlinearity=nonlinearity,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    params = random_params(spec, rng, scale)
    lead = () if B is None else (B,)
    LD, dirs, H_out = L * spec.directions, spec.directions, spec.out_size
    kw: dict = {"x": rng.normal(size=(*lead, T, D))}
    kw["lengths"] = None if B is None else make_lengths(lengths, B, T, rng)
    assert B is not None or lengths == "none"
    lstm = cell == "lstm"
    if states:
        kw["h0"] = rng.normal(size=(LD, *lead, H_out))
        if lstm:
            kw["c0"] = rng.normal(size=(LD, *lead, H))
    if upstream[0]:
        kw["d_outputs"] = rng.normal(size=(*lead, T, dirs * H_out))
    if upstream[1]:
        kw["d_h_n"] = rng.normal(size=(LD, *lead, H_out))
    if upstream[2] and lstm:
        kw["d_c_n"] = rng.normal(size=(LD, *lead, H))
    return spec, params, kw


def oracle(spec, params, kw) -> ref.StackResult:
    return ref.stack_backward(spec, params, **kw)


def native(spec, params, kw, *, batch_first: bool = True) -> ref.StackResult:
    return ref.torch_stack_backward(ref.make_torch_stack(spec, params, batch_first=batch_first), **kw)


def assert_stack_agree(
    actual: ref.StackResult, expected: ref.StackResult, *, label: str, rtol=RTOL, atol=ATOL, record=True
) -> None:
    """Every field agrees to the tolerance (None exactly where None); the gradients have the same
    names in the same order. With `record`, the errors go into the end-of-run table."""

    def close(a, e, name, key):
        if record:
            oracle_close(a, e, name=f"{label}: {name}", key=f"stack {key}", rtol=rtol, atol=atol)
        else:
            assert_close(a, e, name=f"{label}: {name}", rtol=rtol, atol=atol)

    for field in STATE_FIELDS:
        a, e = getattr(actual, field), getattr(expected, field)
        assert (a is None) == (e is None), f"{label}: {field} is None in only one result"
        if a is not None:
            close(a, e, field, field)
    assert (actual.grads is None) == (expected.grads is None), f"{label}: grads in only one result"
    if actual.grads is not None:
        assert list(actual.grads) == list(expected.grads), f"{label}: the gradients' names differ"
        for name in expected.grads:
            close(actual.grads[name], expected.grads[name], f"grads[{name!r}]", "grads")


def assert_identical(a: ref.StackResult, b: ref.StackResult, label: str) -> None:
    """Every field bitwise equal."""
    for field in STATE_FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), f"{label}: {field}"
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=f"{label}: {field}")
    assert list(a.grads) == list(b.grads)
    for name in a.grads:
        np.testing.assert_array_equal(a.grads[name], b.grads[name], err_msg=f"{label}: grads[{name!r}]")


# ---------------------------------------------------------------------------------------------
# The oracle against the native modules
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-direction", "bidirectional"])
@pytest.mark.parametrize("L", [1, 2, 3], ids=lambda L: f"L{L}")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_oracle_equals_native_module(variant, L, bidirectional):
    """Every kind of lengths; biases on and off alternate with the kind and with L, so that each
    variant sees every kind with and without biases."""
    for i, kind in enumerate(LENGTH_KINDS):
        bias = (i + L) % 2 == 0
        spec, params, kw = stack_problem(
            variant, L=L, bidirectional=bidirectional, bias=bias, lengths=kind, seed=100 * L + i
        )
        expected = native(spec, params, kw)
        assert_stack_agree(oracle(spec, params, kw), expected, label=f"{variant} L={L} {kind} bias={bias}")


@st.composite
def stack_problems(draw, variant: str):
    """Every option drawn: L, directions, bias, lengths, sizes (B < T; D, H distinct from them),
    scale, states or zeros, which upstream gradients, unbatched, the native module's batch_first."""
    B, T, D, H = draw(st.lists(st.integers(1, 7), min_size=4, max_size=4, unique=True))
    B, T = min(B, T), max(B, T)
    projected = VARIANTS[variant][2]
    if projected and H == 1:
        H = 8
    upstream = draw(st.sampled_from([(o, h, c) for o in (True, False) for h in (True, False)
                                     for c in (True, False) if o or h]))  # fmt: skip
    unbatched = draw(st.sampled_from([False, False, False, True]))
    spec, params, kw = stack_problem(
        variant,
        L=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        lengths="none" if unbatched else draw(st.sampled_from(LENGTH_KINDS)),
        B=None if unbatched else B,
        T=T,
        D=D,
        H=H,
        P=draw(st.integers(1, H - 1)) if projected else 0,
        scale=draw(st.sampled_from([0.5, 1.0, 2.5])),
        states=draw(st.booleans()),
        upstream=upstream,
        seed=draw(st.integers(0, 2**31 - 1)),
    )
    return spec, params, kw, draw(st.booleans())


@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(max_examples=examples(0.25), deadline=None)
@given(data=st.data())
def test_oracle_equals_native_module_on_random_problems(variant, data):
    spec, params, kw, batch_first = data.draw(stack_problems(variant), label="problem")
    event(f"L={spec.num_layers}, directions={spec.directions}, bias={spec.bias}")
    event("unbatched" if kw["x"].ndim == 2 else "no lengths" if kw["lengths"] is None else "lengths")
    event(f"upstream {sorted(k for k in kw if k.startswith('d_'))}")
    expected = native(spec, params, kw, batch_first=batch_first)
    assert_stack_agree(oracle(spec, params, kw), expected, label=f"{spec}")


# ---------------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("variant", ["rnn-tanh", "rnn-relu", "gru", "lstm"])
def test_one_layer_one_direction_is_the_one_layer_oracle(variant, bias):
    """L = 1, one direction, no lengths: reference.layer_backward on the same parameters (the Elman
    cell's b = bias_ih + bias_hh, whose gradient is both biases'), at 1e-13."""
    spec, params, kw = stack_problem(variant, L=1, bidirectional=False, bias=bias, lengths="none", B=3, T=6)
    r = oracle(spec, params, kw)
    cell, nonlinearity, _ = VARIANTS[variant]
    # V and c (the output layer) are not used by the layer backward; the gated check reads V's shape
    V = np.zeros((1, spec.hidden_size))
    p = SimpleNamespace(U=params["weight_ih_l0"], W=params["weight_hh_l0"], V=V, c=None)
    if cell == "rnn":
        p.b = params["bias_ih_l0"] + params["bias_hh_l0"] if bias else None
    else:
        p.b_ih, p.b_hh = params.get("bias_ih_l0"), params.get("bias_hh_l0")
    lstm = cell == "lstm"
    s0 = (kw["h0"][0], kw["c0"][0]) if lstm else kw["h0"][0]
    d_final = (kw["d_h_n"][0], kw["d_c_n"][0]) if lstm else kw["d_h_n"][0]
    one = ref.layer_backward(
        cell, p, kw["x"], kw["d_outputs"], s0=s0, d_final=d_final, activation=nonlinearity
    )  # fmt: skip

    def close(a, e, name):
        assert_close(a, e, name=f"{variant}: {name}", rtol=1e-13, atol=1e-15)

    close(r.outputs, one.hs, "outputs")
    close(r.dx, one.dxs, "dx")
    close(r.grads["weight_ih_l0"], one.grads["U"], "weight_ih_l0")
    close(r.grads["weight_hh_l0"], one.grads["W"], "weight_hh_l0")
    if bias:
        for name in ("bias_ih", "bias_hh"):
            close(r.grads[f"{name}_l0"], one.grads["b" if cell == "rnn" else name.replace("ias", "")], name)
    else:
        assert list(r.grads) == ["weight_ih_l0", "weight_hh_l0"]
    states = [("h", r.h_n, r.dh0, 0)] + ([("c", r.c_n, r.dc0, 1)] if lstm else [])
    for part, final, d0, i in states:
        close(final[0], one.final_state[i] if lstm else one.final_state, f"{part}_n")
        close(d0[0], one.ds0[i] if lstm else one.ds0, f"d{part}0")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lengths_all_T_are_no_lengths(variant):
    """The oracle bitwise; the native module packed (lengths all T) against unpacked (none)."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, bias=True, lengths="full", seed=3)
    no_lengths = {**kw, "lengths": None}
    assert_identical(oracle(spec, params, kw), oracle(spec, params, no_lengths), label=f"{variant} oracle")
    assert_stack_agree(native(spec, params, kw), native(spec, params, no_lengths), label=f"{variant} native")


def reverse_within_lengths(a: np.ndarray, lengths: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """a (B, T, ...) with each row's first lengths[b] steps reversed; the steps past the length
    taken from `fill` (B, T, ...)."""
    out = fill.copy()
    for b, n in enumerate(lengths):
        out[b, :n] = a[b, :n][::-1]
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reverse_half_is_the_forward_oracle_on_each_sequence_reversed(variant):
    """One bidirectional layer, upstream gradients on its reverse half only: the reverse half's
    outputs, h_n[1], c_n[1], dh0[1], dc0[1], dx and the *_reverse gradients are those of the forward
    oracle (the *_reverse parameters as layer 0's) run on each sequence reversed within its length;
    the forward parameters and h0[0] receive nothing."""
    spec, params, kw = stack_problem(variant, L=1, bidirectional=True, bias=True, lengths="different", seed=5)
    H_out, n = spec.out_size, kw["lengths"]
    lstm = spec.cell == "lstm"
    kw["d_outputs"][:, :, :H_out] = 0.0  # nothing from the forward half
    kw["d_h_n"][0] = 0.0
    if lstm:
        kw["d_c_n"][0] = 0.0
    r = oracle(spec, params, kw)

    fwd_spec = ref.StackSpec(
        spec.cell, spec.input_size, spec.hidden_size, proj_size=spec.proj_size, nonlinearity=spec.nonlinearity
    )  # fmt: skip
    fwd_params = {name: params[name + "_reverse"] for name in fwd_spec.param_shapes()}
    rng = np.random.default_rng(1)
    garbage = rng.normal(size=kw["x"].shape)  # the padded steps of the reversed x: anything
    fwd_kw = {
        "x": reverse_within_lengths(kw["x"], n, garbage),
        "lengths": n,
        "h0": kw["h0"][1:],
        "d_outputs": reverse_within_lengths(kw["d_outputs"][:, :, H_out:], n, rng.normal(size=(3, 5, H_out))),
        "d_h_n": kw["d_h_n"][1:],
    }
    if lstm:
        fwd_kw.update(c0=kw["c0"][1:], d_c_n=kw["d_c_n"][1:])
    f = oracle(fwd_spec, fwd_params, fwd_kw)

    zeros = np.zeros_like(f.outputs)
    assert_close(r.outputs[:, :, H_out:], reverse_within_lengths(f.outputs, n, zeros), name="reverse outputs")
    assert_close(r.h_n[1], f.h_n[0], name="h_n[1]")
    assert_close(r.dh0[1], f.dh0[0], name="dh0[1]")
    assert_close(r.dx, reverse_within_lengths(f.dx, n, np.zeros_like(f.dx)), name="dx")
    if lstm:
        assert_close(r.c_n[1], f.c_n[0], name="c_n[1]")
        assert_close(r.dc0[1], f.dc0[0], name="dc0[1]")
        assert np.all(r.dc0[0] == 0.0)
    for name in fwd_spec.param_shapes():
        assert_close(r.grads[name + "_reverse"], f.grads[name], name=f"grads[{name}_reverse]")
        assert np.all(r.grads[name] == 0.0), f"{name}: the forward direction received gradient"
    assert np.all(r.dh0[0] == 0.0)
    assert np.abs(r.outputs[:, :, H_out:]).max() > 0.1 and np.abs(f.dx).max() > 0.1  # not vacuous


def layer_params(spec: ref.StackSpec, params: dict, layer: int) -> tuple[ref.StackSpec, dict]:
    """One layer of a stack as a one-layer stack of its own (its parameters renamed to l0)."""
    one = ref.StackSpec(
        spec.cell, spec.layer_input_size(layer), spec.hidden_size, bidirectional=spec.bidirectional,
        proj_size=spec.proj_size, bias=spec.bias, nonlinearity=spec.nonlinearity,
    )  # fmt: skip
    renamed = {name: params[name.replace("_l0", f"_l{layer}", 1)] for name in one.param_shapes()}
    return one, renamed


@pytest.mark.parametrize(
    "bidirectional,truncate", [(False, None), (True, None), (False, 1)],
    ids=["one-direction", "bidirectional", "truncated"],
)  # fmt: skip
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_layers_are_the_composition_of_two_one_layer_stacks(variant, bidirectional, truncate):
    """Layer 1 run on layer 0's outputs; then layer 0 run with layer 1's dx as its d_outputs: the
    same outputs, states and gradients (every parameter, x, h0, c0) as the two-layer stack; under
    truncation too (every layer's recurrence truncated, the path between layers not)."""
    spec, params, kw = stack_problem(
        variant, L=2, bidirectional=bidirectional, bias=True, lengths="ones", T=6, seed=8
    )
    kw["truncate"] = truncate
    dirs, lstm = spec.directions, spec.cell == "lstm"
    r = oracle(spec, params, kw)

    def rows(layer: int, name: str) -> dict:
        return {name: kw[name][layer * dirs : (layer + 1) * dirs]} if name in kw else {}

    spec0, params0 = layer_params(spec, params, 0)
    spec1, params1 = layer_params(spec, params, 1)
    states = ["h0", "c0"] if lstm else ["h0"]
    finals = ["d_h_n", "d_c_n"] if lstm else ["d_h_n"]
    forward0 = oracle(spec0, params0, {"x": kw["x"], "lengths": kw["lengths"], **{
        k: v for s in states for k, v in rows(0, s).items()}})  # fmt: skip
    kw1 = {"x": forward0.outputs, "lengths": kw["lengths"], "d_outputs": kw["d_outputs"]}
    kw1["truncate"] = truncate
    for name in states + finals:
        kw1.update(rows(1, name))
    top = oracle(spec1, params1, kw1)
    kw0 = {"x": kw["x"], "lengths": kw["lengths"], "d_outputs": top.dx, "truncate": truncate}
    for name in states + finals:
        kw0.update(rows(0, name))
    bottom = oracle(spec0, params0, kw0)

    label = f"{variant} composed"
    assert_close(r.outputs, top.outputs, name=f"{label}: outputs")
    assert_close(r.dx, bottom.dx, name=f"{label}: dx")
    for field in ("h_n", "dh0") + (("c_n", "dc0") if lstm else ()):
        both = np.concatenate([getattr(bottom, field), getattr(top, field)])
        assert_close(getattr(r, field), both, name=f"{label}: {field}")
    for layer, part, part_params in ((0, bottom, params0), (1, top, params1)):
        for name in part_params:
            stacked = name.replace("_l0", f"_l{layer}", 1)
            assert_close(r.grads[stacked], part.grads[name], name=f"{label}: grads[{stacked}]")


@pytest.mark.parametrize("variant", ["rnn-tanh", "rnn-relu", "gru", "lstm"])
def test_truncated_one_layer_is_the_truncated_one_layer_oracle(variant):
    """L = 1, one direction, no lengths: reference.layer_backward(truncate=tau) for every tau, at
    1e-13; a window that drops terms changes the gradient (the test sees the window)."""
    T = 6
    spec, params, kw = stack_problem(
        variant, L=1, bidirectional=False, bias=True, lengths="none", T=T, seed=4
    )
    cell, nonlinearity, _ = VARIANTS[variant]
    p = SimpleNamespace(U=params["weight_ih_l0"], W=params["weight_hh_l0"], V=np.zeros((1, 4)), c=None)
    if cell == "rnn":
        p.b = params["bias_ih_l0"] + params["bias_hh_l0"]
    else:
        p.b_ih, p.b_hh = params["bias_ih_l0"], params["bias_hh_l0"]
    lstm = cell == "lstm"
    s0 = (kw["h0"][0], kw["c0"][0]) if lstm else kw["h0"][0]
    d_final = (kw["d_h_n"][0], kw["d_c_n"][0]) if lstm else kw["d_h_n"][0]
    full = oracle(spec, params, kw)
    for tau in range(T + 1):
        r = oracle(spec, params, {**kw, "truncate": tau})
        one = ref.layer_backward(cell, p, kw["x"], kw["d_outputs"], s0=s0, d_final=d_final, truncate=tau,
                                 activation=nonlinearity)  # fmt: skip

        def close(a, e, name, tau=tau):
            assert_close(a, e, name=f"{variant} tau={tau}: {name}", rtol=1e-13, atol=1e-15)

        close(r.grads["weight_hh_l0"], one.grads["W"], "weight_hh_l0")
        close(r.grads["weight_ih_l0"], one.grads["U"], "weight_ih_l0")
        close(r.grads["bias_hh_l0"], one.grads["b" if cell == "rnn" else "b_hh"], "bias_hh_l0")
        close(r.dx, one.dxs, "dx")
        close(r.dh0[0], one.ds0[0] if lstm else one.ds0, "dh0")
        if lstm:
            close(r.dc0[0], one.ds0[1], "dc0")
        np.testing.assert_array_equal(r.outputs, full.outputs)
        if tau == 0:  # the recurrence cut at every step: not the full gradient
            assert np.max(np.abs(r.grads["weight_hh_l0"] - full.grads["weight_hh_l0"])) > 1e-6
        if tau >= T - 1:
            assert_stack_agree(r, full, label=f"tau={tau} is full BPTT", rtol=1e-13, atol=1e-15, record=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_truncated_stack_rows_are_the_unbatched_truncated_oracle_on_their_own_steps(variant):
    """With lengths, truncation counts each sequence's own steps and d_h_n / d_c_n belong to its own
    last step: row b is the unbatched truncated run of x[b, :n_b]; tau >= T - 1 is full BPTT."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=False, bias=True, lengths="different",
                                     T=6, seed=13)  # fmt: skip
    r = oracle(spec, params, {**kw, "truncate": 1})
    lstm = spec.cell == "lstm"
    total = {name: 0.0 for name in params}
    for b, n in enumerate(kw["lengths"]):
        one = {"x": kw["x"][b, :n], "h0": kw["h0"][:, b], "d_outputs": kw["d_outputs"][b, :n],
               "d_h_n": kw["d_h_n"][:, b], "truncate": 1}  # fmt: skip
        if lstm:
            one.update(c0=kw["c0"][:, b], d_c_n=kw["d_c_n"][:, b])
        s = oracle(spec, params, one)
        assert_close(r.dx[b, :n], s.dx, name=f"row {b}: dx")
        assert np.all(r.dx[b, n:] == 0.0)
        for field in ("dh0",) + (("dc0",) if lstm else ()):
            assert_close(getattr(r, field)[:, b], getattr(s, field), name=f"row {b}: {field}")
        for name in params:
            total[name] = total[name] + s.grads[name]
    for name in params:
        assert_close(r.grads[name], total[name], name=f"grads[{name}] summed over the rows")
    assert_stack_agree(oracle(spec, params, {**kw, "truncate": 5}), oracle(spec, params, kw),
                       label="tau = T - 1", record=False)  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_sequence_is_the_unbatched_oracle_on_its_own_steps(variant):
    """Row b of a batch with lengths is the unbatched run of x[b, :n_b] (T = n_b): its outputs
    (zeros after n_b), states, dx (zeros after n_b), dh0, dc0; the batch's gradients are the sum."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, bias=True, lengths="different", seed=9)
    r = oracle(spec, params, kw)
    lstm = spec.cell == "lstm"
    total = {name: 0.0 for name in params}
    for b, n in enumerate(kw["lengths"]):
        one = {"x": kw["x"][b, :n], "h0": kw["h0"][:, b], "d_outputs": kw["d_outputs"][b, :n],
               "d_h_n": kw["d_h_n"][:, b]}  # fmt: skip
        if lstm:
            one.update(c0=kw["c0"][:, b], d_c_n=kw["d_c_n"][:, b])
        s = oracle(spec, params, one)
        assert_close(r.outputs[b, :n], s.outputs, name=f"row {b}: outputs")
        assert np.all(r.outputs[b, n:] == 0.0) and np.all(r.dx[b, n:] == 0.0), f"row {b}: past its length"
        assert_close(r.dx[b, :n], s.dx, name=f"row {b}: dx")
        for field in ("h_n", "dh0") + (("c_n", "dc0") if lstm else ()):
            assert_close(getattr(r, field)[:, b], getattr(s, field), name=f"row {b}: {field}")
        for name in params:
            total[name] = total[name] + s.grads[name]
    for name in params:
        assert_close(r.grads[name], total[name], name=f"grads[{name}] summed over the rows")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_steps_neither_change_nor_receive_anything(variant):
    """Other inputs and other upstream gradients at the padded steps: every result bitwise the same,
    in the oracle and in the native module; the outputs and dx there are zero."""
    spec, params, kw = stack_problem(variant, L=2, bidirectional=True, bias=True, lengths="ones", seed=10)
    rng = np.random.default_rng(4)
    past = np.arange(kw["x"].shape[1])[None, :] >= kw["lengths"][:, None]  # (B, T) True past the length
    assert past.any()
    other = dict(kw)
    other["x"] = np.where(past[:, :, None], 1e3 * rng.normal(size=kw["x"].shape), kw["x"])
    other["d_outputs"] = np.where(past[:, :, None], rng.normal(size=kw["d_outputs"].shape), kw["d_outputs"])
    for run in (oracle, native):
        r = run(spec, params, kw)
        assert_identical(r, run(spec, params, other), label=f"{variant} {run.__name__}")
        assert np.all(r.outputs[past] == 0.0) and np.all(r.dx[past] == 0.0)
        assert np.all(r.dx[~past].any(axis=-1))


@pytest.mark.parametrize("variant", ["gru", "lstm-proj"])
def test_oracle_gradients_equal_finite_differences(variant):
    """Central differences of the objective, a two-layer bidirectional stack with lengths (the
    tolerance of differences)."""
    spec, params, kw = stack_problem(
        variant, L=2, bidirectional=True, bias=True, lengths="unsorted", B=2, T=3, D=2, H=3, P=2, seed=12
    )
    r = oracle(spec, params, kw)

    def objective(res: ref.StackResult) -> float:
        total = float(np.sum(kw["d_outputs"] * res.outputs) + np.sum(kw["d_h_n"] * res.h_n))
        return total + (float(np.sum(kw["d_c_n"] * res.c_n)) if res.c_n is not None else 0.0)

    forward = {k: v for k, v in kw.items() if not k.startswith("d_")}
    checked = ["weight_hh_l0", "bias_hh_l1_reverse", "weight_ih_l1_reverse"]
    checked += ["weight_hr_l0_reverse", "weight_hr_l1"] if spec.proj_size else []
    for name in checked:
        numeric = central_differences(
            lambda a, name=name: objective(oracle(spec, {**params, name: a}, forward)), params[name]
        )
        assert_close(r.grads[name], numeric, name=name, rtol=1e-7, atol=1e-9)
    numeric = central_differences(lambda a: objective(oracle(spec, params, {**forward, "h0": a})), kw["h0"])
    assert_close(r.dh0, numeric, name="dh0", rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The adapters
# ---------------------------------------------------------------------------------------------
SPECS = [
    ref.StackSpec("rnn", 3, 4),
    ref.StackSpec("rnn", 3, 4, num_layers=2, bidirectional=True, bias=False, nonlinearity="relu"),
    ref.StackSpec("gru", 2, 5, num_layers=3, bidirectional=True),
    ref.StackSpec("lstm", 4, 3, num_layers=2),
    ref.StackSpec("lstm", 2, 5, num_layers=3, bidirectional=True, proj_size=2, bias=False),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_params_round_trip_losslessly(spec, dtype):
    module = ref.make_torch_stack(spec, seed=3, dtype=dtype)  # torch's own initialisation
    params = ref.stack_params_from_torch(module)
    assert list(params) == list(spec.param_shapes()) == list(module.state_dict())
    assert all(a.dtype == np.float64 and a.shape == spec.param_shapes()[n] for n, a in params.items())
    assert ref.spec_of_module(module) == spec
    assert ref.spec_from_params(spec.cell, params, nonlinearity=spec.nonlinearity) == spec
    # module -> dict -> module: the state_dict bitwise
    again = ref.make_torch_stack(spec, params, dtype=dtype, batch_first=False)
    for (name, a), (name2, b) in zip(module.state_dict().items(), again.state_dict().items(), strict=True):
        assert name == name2 and a.dtype == b.dtype == dtype and torch.equal(a, b), name
    # dict -> module -> dict: the arrays bitwise (float64 values from random draws)
    if dtype == torch.float64:
        drawn = random_params(spec, np.random.default_rng(0))
        back = ref.stack_params_from_torch(ref.make_torch_stack(spec, drawn))
        assert list(back) == list(drawn)
        for n in drawn:
            assert np.array_equal(back[n], drawn[n]) and not np.shares_memory(back[n], drawn[n]), n


def test_batch_first_false_and_float32_modules_give_the_same_result():
    spec, params, kw = stack_problem(
        "lstm-proj", L=2, bidirectional=True, bias=True, lengths="unsorted", seed=2
    )
    first = native(spec, params, kw)
    assert_stack_agree(native(spec, params, kw, batch_first=False), first, label="batch_first=False")
    module32 = ref.make_torch_stack(spec, params, dtype=torch.float32)
    r32 = ref.torch_stack_backward(module32, **kw)
    assert r32.outputs.dtype == np.float32 and all(g.dtype == np.float32 for g in r32.grads.values())
    assert_stack_agree(r32, first, label="float32", rtol=1e-4, atol=1e-5, record=False)


def test_module_from_make_torch_stack_with_seed_is_reproducible_and_leaves_the_rng():
    state = torch.random.get_rng_state()
    a = ref.stack_params_from_torch(ref.make_torch_stack(SPECS[2], seed=5))
    b = ref.stack_params_from_torch(ref.make_torch_stack(SPECS[2], seed=5))
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(np.array_equal(a[n], b[n]) for n in a)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def bad_input_cases():
    spec, params, kw = stack_problem("lstm", L=2, bidirectional=True, bias=True, lengths="different", seed=1)
    B, T = kw["x"].shape[:2]

    def call(**changes):
        return lambda: ref.stack_backward(spec, params, **{**kw, **changes})

    def native_call(**changes):
        return lambda: ref.torch_stack_backward(ref.make_torch_stack(spec, params), **{**kw, **changes})

    gru = ref.StackSpec("gru", 2, 4, num_layers=2, bidirectional=True)
    gru_params = random_params(gru, np.random.default_rng(0))
    return [
        ("lengths > T", call(lengths=np.array([T + 1, 1, 2])), r"lengths: every length must be in 1\.\.T"),
        ("lengths < 1", call(lengths=np.array([0, 1, 2])), r"lengths\[0\] = 0"),
        ("lengths floats", call(lengths=np.array([1.0, 2.0, 3.0])), "lengths: expected integers"),
        ("lengths bool", call(lengths=np.array([True, True, True])), "lengths: expected integers"),
        ("lengths size", call(lengths=np.array([1, 2])), r"lengths: expected shape \(B,\) = \(3,\)"),
        ("lengths unbatched", call(x=kw["x"][0], h0=None, c0=None, d_outputs=None, d_h_n=None, d_c_n=None),
         "lengths: only for batched x"),
        ("lengths native", native_call(lengths=np.array([T + 1, 1, 2])), r"lengths: every length"),
        ("h0 layers", call(h0=kw["h0"][:2]), r"h0: expected shape \(L \* dirs, B, H_out\) = \(4, 3, 4\)"),
        ("c0 layers", call(c0=kw["c0"][:1]), r"c0: expected shape \(L \* dirs, B, H\) = \(4, 3, 4\)"),
        ("h0 native", native_call(h0=kw["h0"][:2]), r"h0: expected shape"),
        ("c0 for a GRU", lambda: ref.stack_backward(gru, gru_params, kw["x"], c0=np.zeros((4, B, 4))),
         "c0: only the LSTM"),
        ("d_outputs", call(d_outputs=kw["d_outputs"][:, :, :4]), "d_outputs: expected the outputs' shape"),
        ("d_h_n", call(d_h_n=kw["d_h_n"][:, :2]), "d_h_n: expected shape"),
        ("x size", call(x=kw["x"][:, :, :1]), "x: expected shape"),
        ("x ints", call(x=np.ones((B, T, 2), dtype=int)), "x: expected a floating-point array"),
        ("missing name", lambda: ref.stack_backward(spec, {k: v for k, v in params.items()
                                                           if k != "weight_hh_l1_reverse"}, kw["x"]),
         r"missing \['weight_hh_l1_reverse'\]"),
        ("unexpected name", lambda: ref.make_torch_stack(spec, {**params, "weight_hr_l0": np.zeros((4, 4))}),
         r"unexpected \['weight_hr_l0'\]"),
        ("param shape", lambda: ref.make_torch_stack(spec, {**params, "weight_ih_l1": np.zeros((16, 4))}),
         r"params\['weight_ih_l1'\]: expected shape \(16, 8\), got \(16, 4\)"),
        ("truncate bidirectional", call(truncate=1), "truncate: only for one-direction stacks"),
        ("truncate < 0", call(truncate=-1), "truncate: expected None or an integer >= 0"),
        ("truncate bool", call(truncate=True), "truncate: expected None or an integer >= 0"),
        ("proj >= H", lambda: ref.StackSpec("lstm", 2, 4, proj_size=4), "proj_size: expected 0"),
        ("proj < 0", lambda: ref.StackSpec("lstm", 2, 4, proj_size=-1), "proj_size: expected an integer"),
        ("proj for a GRU", lambda: ref.StackSpec("gru", 2, 4, proj_size=2), "proj_size: only the LSTM"),
        ("num_layers 0", lambda: ref.StackSpec("gru", 2, 4, num_layers=0), "num_layers"),
        ("nonlinearity", lambda: ref.StackSpec("rnn", 2, 4, nonlinearity="sigmoid"), "nonlinearity"),
        ("nonlinearity gated", lambda: ref.StackSpec("gru", 2, 4, nonlinearity="relu"), "nonlinearity"),
        ("cell", lambda: ref.StackSpec("elman", 2, 4), "cell"),
        ("module", lambda: ref.spec_of_module(torch.nn.Linear(2, 3)), r"nn\.RNN, nn\.GRU or nn\.LSTM"),
    ]


@pytest.mark.parametrize("case", bad_input_cases(), ids=lambda c: c[0])
def test_bad_input_is_a_value_error_naming_the_argument(case):
    _, call, match = case
    with pytest.raises(ValueError, match=match):
        call()


def test_caller_arrays_are_left_untouched():
    spec, params, kw = stack_problem("lstm-proj", L=2, bidirectional=True, bias=True, lengths="ones", seed=7)
    arrays = [*params.values(), *(v for v in kw.values() if v is not None)]
    copies = [a.copy() for a in arrays]
    r = oracle(spec, params, kw)
    native(spec, params, kw)
    for a, before in zip(arrays, copies, strict=True):
        assert np.array_equal(a, before)
    assert not any(np.shares_memory(r.grads[n], params[n]) for n in params)
