"""Problems for the stack tests (tests/core/stack): random torch-named parameters, inputs, initial
states, lengths and upstream gradients, and manual_bptt's result in the oracle's format.

Sizes are unequal by default (B = 3 < P = 4 < H = 5 < T = 6, D = 2, K = 7), b_ih and b_hh are
drawn independently, h0 / c0 and the upstream gradients d_outputs, d_h_n, d_c_n are random, and
the inputs and upstream gradients at padded steps are random too (a leak would show).
"""

from __future__ import annotations

import numpy as np

import manual_bptt as mb
import reference as ref
from manual_bptt.checking import assert_close

RTOL, ATOL = 1e-10, 1e-12
#: float32 against the float64 oracle on the same float32-rounded inputs, as tests/core/test_float32*.
RTOL32, ATOL32 = 1e-4, 1e-6
#: The variants of the cells: id -> (cell, nonlinearity, projected).
VARIANTS = {
    "rnn-tanh": ("rnn", "tanh", False),
    "rnn-relu": ("rnn", "relu", False),
    "gru": ("gru", "tanh", False),
    "lstm": ("lstm", "tanh", False),
    "lstm-proj": ("lstm", "tanh", True),
}
#: The kinds of lengths: none given, all T, all different, some of length 1, ascending (unsorted
#: in torch's sense: pack_padded_sequence wants them descending).
LENGTH_KINDS = ("none", "full", "different", "ones", "unsorted")
FIELDS = ("outputs", "h_n", "c_n", "dx", "dh0", "dc0")


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


def stack_problem(
    variant: str,
    *,
    L: int,
    bidirectional: bool,
    bias: bool = True,
    lengths: str = "none",
    B: int | None = 3,
    T: int = 6,
    D: int = 2,
    H: int = 5,
    P: int = 4,
    scale: float = 1.0,
    states: bool = True,
    upstream: tuple[bool, bool] = (True, True),
    seed: int = 0,
) -> tuple[ref.StackSpec, dict, dict]:
    """(spec, params by torch name, the oracle's keyword arguments: x, h0, c0, lengths, d_outputs,
    d_h_n, d_c_n). B None: unbatched (lengths must be "none"). states: random h0 (and c0), else
    None. upstream: whether d_outputs, and the final states' gradients, are given."""
    cell, nonlinearity, projected = VARIANTS[variant]
    spec = ref.StackSpec(
        cell, D, H, num_layers=L, bidirectional=bidirectional, proj_size=P if projected else 0, bias=bias,
        nonlinearity=nonlinearity,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in spec.param_shapes().items():
        if name.startswith("bias"):
            params[name] = 0.5 * scale * rng.normal(size=shape)
        else:
            params[name] = scale * rng.normal(size=shape) / np.sqrt(shape[1])
    lead = () if B is None else (B,)
    LD, H_out = L * spec.directions, spec.out_size
    assert B is not None or lengths == "none"
    kw: dict = {"x": rng.normal(size=(*lead, T, D))}
    kw["lengths"] = None if B is None else make_lengths(lengths, B, T, rng)
    lstm = cell == "lstm"
    if states:
        kw["h0"] = rng.normal(size=(LD, *lead, H_out))
        if lstm:
            kw["c0"] = rng.normal(size=(LD, *lead, H))
    if upstream[0]:
        kw["d_outputs"] = rng.normal(size=(*lead, T, spec.directions * H_out))
    if upstream[1]:
        kw["d_h_n"] = rng.normal(size=(LD, *lead, H_out))
        if lstm:
            kw["d_c_n"] = rng.normal(size=(LD, *lead, H))
    return spec, params, kw


def stack_params(spec: ref.StackSpec, params: dict, **output) -> mb.StackParams:
    """The StackParams of torch-named parameters."""
    nonlinearity = spec.nonlinearity if spec.cell == "rnn" else None
    return mb.StackParams.from_state_dict(spec.cell, params, nonlinearity=nonlinearity, **output)


def state(spec: ref.StackSpec, h: np.ndarray | None, c: np.ndarray | None):
    """h (and c for the LSTM) as manual_bptt takes a state: an array, or LSTMState."""
    if h is None and c is None:
        return None
    if spec.cell == "lstm":
        H = spec.hidden_size
        h = np.zeros((*c.shape[:-1], spec.out_size)) if h is None else h
        c = np.zeros((*h.shape[:-1], H)) if c is None else c
        return mb.LSTMState(h, c)
    return h


def mine(spec: ref.StackSpec, params: dict, kw: dict, *, truncate=None, dtype=np.float64) -> ref.StackResult:
    """manual_bptt.backward (or forward, without upstream gradients) as a reference.StackResult,
    every array converted to ``dtype`` first."""

    def cast(a):
        return None if a is None else np.asarray(a, dtype=dtype)

    p = stack_params(spec, {k: cast(v) for k, v in params.items()})
    s0 = state(spec, cast(kw.get("h0")), cast(kw.get("c0")))
    lengths, x = kw.get("lengths"), cast(kw["x"])
    lstm = spec.cell == "lstm"
    if "d_outputs" not in kw and "d_h_n" not in kw:
        f = mb.forward(p, x, s0=s0, lengths=lengths)
        return ref.StackResult(f.outputs, f.h_n, f.c_n, None, None, None, None)
    dhs = cast(kw.get("d_outputs"))
    if dhs is None:
        width = spec.directions * spec.out_size
        dhs = np.zeros((*x.shape[:-1], width), dtype=dtype)
    d_final = state(spec, cast(kw.get("d_h_n")), cast(kw.get("d_c_n")))
    r = mb.backward(p, x, dhs, s0=s0, d_final=d_final, lengths=lengths, truncate=truncate)
    h_n, c_n = (r.final_state.h, r.final_state.c) if lstm else (r.final_state, None)
    dh0, dc0 = (r.ds0.h, r.ds0.c) if lstm else (r.ds0, None)
    return ref.StackResult(r.hs, h_n, c_n, r.grads.to_state_dict(), r.dxs, dh0, dc0)


def assert_agree(actual: ref.StackResult, expected: ref.StackResult, *, label: str, rtol=RTOL, atol=ATOL):
    """Every field within max|a - b| <= rtol max|expected| + atol (NaN fails), None exactly where
    None; the gradients by the same torch names in the same order."""
    for field in FIELDS:
        a, e = getattr(actual, field), getattr(expected, field)
        if e is None:
            continue  # the oracle gives no gradients without upstream ones; its c_n is None for non-LSTMs
        assert a is not None, f"{label}: {field} is None"
        assert_close(a, e, name=f"{label}: {field}", rtol=rtol, atol=atol)
    if expected.grads is not None:
        assert list(actual.grads) == list(expected.grads), f"{label}: the gradients' names differ"
        for name, e in expected.grads.items():
            assert_close(actual.grads[name], e, name=f"{label}: grads[{name!r}]", rtol=rtol, atol=atol)
