"""The oracles' truncated BPTT (reference.truncation): the stacked windows against the definition.

reference.truncation.truncated_per_step is truncated BPTT as it is defined (one graph and one
backward per output step t, over the steps max(0, t - tau) .. t); the oracles compute it with
truncated_windows (the windows of t <= tau in one graph from s0, those of t > tau stacked along the
batch axis) and with their full path when tau >= T - 1. Every oracle that truncates is run both
ways on the same random problem and must agree bitwise or within
max|a - b| <= 1e-13 * max|ref| on every field:

- reference.bptt_cell for the Elman cell (every activation), the GRU and the LSTM: dense and token
  inputs, batched or not, with and without biases, masks, sum and mean, s0 absent, shared (H,) or
  one per row (B, H), tau = 0 .. T + 1;
- reference.layer_backward for the three cells, with and without d_final;
- reference.stack_backward (one direction, one or two layers, the LSTM's projection, lengths).

The per-step run is the same oracle with truncated_windows replaced by truncated_per_step and its
full path for tau >= T - 1 switched off (keeps_every_term always False); a counter proves the
per-step code ran. That the definition itself is right is proven elsewhere, independently: the
truncated gradient equals the windowed sum of the (t, k) terms of the untied-weights oracle
(tests/oracle/test_reference_gated.py, tests/core/test_decompose.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import examples
from manual_bptt.testing import assert_close
from reference import truncation

#: The windows and the definition add the same terms in another order: bitwise, or this close.
RTOL, ATOL = 1e-13, 0.0
G = {"rnn": 1, "gru": 3, "lstm": 4}
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")


@contextlib.contextmanager
def by_definition() -> Iterator[list[int]]:
    """Inside: the oracles' truncation is truncated_per_step for every tau (their full path for
    tau >= T - 1 switched off). Yields the list of its calls."""
    calls: list[int] = []

    def per_step(*args: Any, **kwargs: Any) -> float:
        calls.append(1)
        return truncation.truncated_per_step(*args, **kwargs)

    with (
        mock.patch.object(truncation, "truncated_windows", per_step),
        mock.patch.object(truncation, "keeps_every_term", lambda tau, T: False),
    ):
        yield calls


def assert_agree(actual: Any, expected: Any, name: str) -> None:
    """Two results field by field (dataclasses, dicts, tuples, arrays, floats; None alike)."""
    if expected is None:
        assert actual is None, f"{name}: expected None, got {type(actual).__name__}"
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), name
        for key in expected:
            assert_agree(actual[key], expected[key], f"{name}[{key!r}]")
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), name
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_agree(a, e, f"{name}[{i}]")
    elif hasattr(expected, "__dataclass_fields__"):
        for field in expected.__dataclass_fields__:
            assert_agree(getattr(actual, field), getattr(expected, field), f"{name}.{field}")
    else:
        assert_close(np.asarray(actual), np.asarray(expected), name=name, rtol=RTOL, atol=ATOL)


def run_both(call: Any, T: int) -> None:
    """call(truncate) through the windows and through the definition, for every tau = 0 .. T + 1;
    every field must agree."""
    for tau in range(T + 2):
        fast = call(tau)
        with by_definition() as calls:
            plain = call(tau)
        assert calls, "the per-step definition never ran: the comparison would be vacuous"
        assert_agree(fast, plain, f"tau={tau}")


# ---------------------------------------------------------------------------------------------
# Random problems
# ---------------------------------------------------------------------------------------------
@st.composite
def cell_problems(draw: st.DrawFn, cell: str) -> dict[str, Any]:
    """A random problem of the output-layer oracle (bptt_cell): sizes distinct, every option."""
    T = draw(st.integers(1, 7))
    batched = draw(st.booleans())
    B = draw(st.integers(1, 3)) if batched else 1
    D, H, K = draw(st.permutations([2, 3, 4]))
    tokens, bias, out_bias = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    use_mask, reduction = draw(st.booleans()), draw(st.sampled_from(["sum", "mean"]))
    s0_kind = draw(st.sampled_from([None, "shared", "per_row"] if batched else [None, "shared"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    GH = G[cell] * H
    p = SimpleNamespace(
        U=1.5 * rng.normal(size=(GH, D)) / np.sqrt(D),
        W=1.5 * rng.normal(size=(GH, H)) / np.sqrt(H),
        V=rng.normal(size=(K, H)),
        c=rng.normal(size=K) if out_bias else None,
    )
    if cell == "rnn":
        p.b = rng.normal(size=H) if bias else None
    else:
        p.b_ih, p.b_hh = (rng.normal(size=GH), rng.normal(size=GH)) if bias else (None, None)
    lead = (B, T) if batched else (T,)
    xs = rng.integers(0, D, size=lead) if tokens else rng.normal(size=(*lead, D))
    ys = rng.integers(0, K, size=lead)
    mask = None
    if use_mask:
        mask = rng.random(lead) < 0.6
        mask.flat[rng.integers(mask.size)] = True  # at least one counted target (the mean's count)
    s0 = None
    if s0_kind is not None:
        shape = (B, H) if s0_kind == "per_row" else (H,)
        parts = tuple(rng.normal(size=shape) for _ in range(2 if cell == "lstm" else 1))
        s0 = parts if cell == "lstm" else parts[0]
    kwargs = {"s0": s0, "mask": mask, "reduction": reduction}
    if cell == "rnn":
        kwargs["activation"] = draw(st.sampled_from(ACTIVATIONS))
    return {"p": p, "xs": xs, "ys": ys, "kwargs": kwargs, "T": T}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@settings(max_examples=examples(0.1))
@given(data=st.data())
def test_bptt_cell_windows_equal_the_per_step_definition(cell, data):
    prob = data.draw(cell_problems(cell))

    def call(truncate: int) -> Any:
        return ref.bptt_cell(cell, prob["p"], prob["xs"], prob["ys"], truncate=truncate, **prob["kwargs"])

    run_both(call, prob["T"])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@settings(max_examples=examples(0.1))
@given(data=st.data())
def test_layer_backward_windows_equal_the_per_step_definition(cell, data):
    prob = data.draw(cell_problems(cell))
    xs, s0 = prob["xs"], prob["kwargs"]["s0"]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="upstream seed"))
    H = prob["p"].W.shape[1]
    dhs = rng.normal(size=(*np.shape(prob["ys"]), H))  # (T, H) or (B, T, H), like the outputs
    d_final = None
    if data.draw(st.booleans(), label="d_final"):
        lead = np.shape(prob["ys"])[:-1]
        parts = tuple(rng.normal(size=(*lead, H)) for _ in range(2 if cell == "lstm" else 1))
        d_final = parts if cell == "lstm" else parts[0]
    activation = prob["kwargs"].get("activation", "tanh")

    def call(truncate: int) -> Any:
        return ref.layer_backward(
            cell, prob["p"], xs, dhs, s0=s0, d_final=d_final, truncate=truncate, activation=activation
        )

    run_both(call, prob["T"])


@pytest.mark.parametrize("cell,proj", [("rnn", False), ("gru", False), ("lstm", False), ("lstm", True)])
@settings(max_examples=examples(0.05))
@given(data=st.data())
def test_stack_backward_windows_equal_the_per_step_definition(cell, proj, data):
    T = data.draw(st.integers(1, 6), label="T")
    B = data.draw(st.integers(1, 3), label="B")
    L = data.draw(st.integers(1, 2), label="num_layers")
    nonlinearity = data.draw(st.sampled_from(["tanh", "relu"])) if cell == "rnn" else "tanh"
    spec = ref.StackSpec(
        cell, 3, 4, num_layers=L, proj_size=2 if proj else 0, bias=data.draw(st.booleans(), label="bias"),
        nonlinearity=nonlinearity,
    )  # fmt: skip
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    params = {name: rng.normal(size=shape) / 2 for name, shape in spec.param_shapes().items()}
    H, H_out = spec.hidden_size, spec.out_size
    kw: dict[str, Any] = {
        "x": rng.normal(size=(B, T, 3)),
        "h0": rng.normal(size=(L, B, H_out)),
        "lengths": rng.integers(1, T + 1, size=B) if data.draw(st.booleans(), label="lengths") else None,
        "d_outputs": rng.normal(size=(B, T, H_out)),
        "d_h_n": rng.normal(size=(L, B, H_out)),
    }
    if cell == "lstm":
        kw["c0"], kw["d_c_n"] = rng.normal(size=(L, B, H)), rng.normal(size=(L, B, H))

    def call(truncate: int) -> Any:
        return ref.stack_backward(spec, params, truncate=truncate, **kw)

    run_both(call, T)


# ---------------------------------------------------------------------------------------------
# The pieces of reference.truncation
# ---------------------------------------------------------------------------------------------
def test_window_rows_puts_window_j_of_sequence_b_in_row_j_times_B_plus_b():
    B, T, D = 2, 7, 3
    a = torch.arange(B * T * D).reshape(B, T, D)
    rows = truncation.window_rows(a, 2, 4)
    assert rows.shape == (4 * B, D)
    for j in range(4):
        for b in range(B):
            assert torch.equal(rows[j * B + b], a[b, 2 + j])


def test_keeps_every_term_from_a_window_of_T_minus_1():
    assert not truncation.keeps_every_term(3, 5)
    assert truncation.keeps_every_term(4, 5)
    assert truncation.keeps_every_term(9, 5)
    assert truncation.keeps_every_term(0, 1)


def test_a_short_window_drops_terms_and_a_window_of_T_minus_1_is_full_bptt():
    """The comparison above would pass if both paths ignored tau: the truncated gradient of W
    differs from full BPTT's for tau < T - 1 and equals it from T - 1 on."""
    rng = np.random.default_rng(3)
    T, B, D, H, K = 6, 2, 3, 4, 5
    p = SimpleNamespace(U=rng.normal(size=(H, D)), W=rng.normal(size=(H, H)), V=rng.normal(size=(K, H)),
                        b=rng.normal(size=H), c=rng.normal(size=K))  # fmt: skip
    xs, ys, s0 = rng.normal(size=(B, T, D)), rng.integers(0, K, (B, T)), rng.normal(size=(B, H))
    full = ref.bptt(p, xs, ys, s0=s0)
    for tau in range(T + 2):
        r = ref.bptt(p, xs, ys, s0=s0, truncate=tau)
        gap = np.max(np.abs(r.grads.W - full.grads.W))
        if tau < T - 1:
            assert gap > 1e-6 * np.max(np.abs(full.grads.W)), f"tau={tau}: no term dropped"
        else:
            assert gap == 0.0, f"tau={tau}: not the full path"
