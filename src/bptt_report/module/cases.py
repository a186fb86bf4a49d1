"""check-module's cases: random configurations of a layer of the module's Shape (L layers, dirs
directions, the projection P; D, H, T, B all different; random, nonzero and different b_ih and
b_hh; random h0 (and c0) (L*dirs, B, .); random upstream gradients on out, h_n (and c_n); with
variable lengths, random lengths of the kinds LENGTHS), every value rounded to the module's
dtype, each called in one of the ways a layer is called (CALLS), a few of them large (LARGE); the
hand-written float64 reference (manual_bptt.backward on a manual_bptt.StackParams) on the rounded
values; torch's own module of the same shape at the same dtype and device, the baseline; the
names of the arrays compared (notation).

The plan of n configurations (``plan``): #0 is called the plain way (train() mode, h0 given, x
requiring grad, a fresh instance), #1, #2, ... take CALLS in turn (#1 every other way at once, so
that two configurations see them all), and the last one or two (n >= 4, n >= 12) are large, called
the plain way. Every fourth configuration from #2 on (#2, #6, ...) has no biases. The calls' own
random values (the parameters a reused instance is first called with) and the sizes redrawn for a
factory that declines some come from a second generator, so that the configurations of a seed
stay the same. The Shape of each configuration is the module's, read for its sizes (``shape_of``:
the session asks the module's worker); a one-layer layer's configurations are drawn exactly as
before there were stacks.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import manual_bptt as mb

from . import worker as module_worker
from .contract import GRAD_WORDS, Shape, case_shape, parse_name

#: Our notation for the arrays compared that are not parameters (name -> name in the sentences).
NOTATION = {"out": "h_t", "h_n": "h_n", "c_n": "c_n", "x": "dx", "h0": "dh0", "c0": "dc0"}
FORWARD = ("out", "h_n", "c_n")
#: The kinds of lengths a batch of variable lengths is drawn with; configuration #i takes
#: LENGTHS[i % 3] (a large one, "different"): every sequence of another length, unsorted, the
#: shortest of length 1; every sequence full (length T); some of length 1 and one full.
LENGTHS = ("different", "full", "some one")


def notation(name: str) -> str:
    """How a sentence names an array: h_t, dx, dh0, ... and a parameter's gradient by its kind (dU,
    dW, db_ih, db_hh, dW_hr: weight_hh_l1_reverse is a dW)."""
    parsed = parse_name(name)
    return GRAD_WORDS[parsed[0]] if parsed else NOTATION.get(name, name)


def _round(a: np.ndarray, dtype: str) -> np.ndarray:
    """a rounded to dtype (through torch, which has bfloat16), back in float64."""
    import torch

    return torch.tensor(a, dtype=torch.float64).to(getattr(torch, dtype)).to(torch.float64).numpy().copy()


#: The ways of calling a layer besides the plain one (worker.PLAIN_CALL: train() mode, h0 given,
#: x requiring grad, a fresh instance); configuration #i >= 1 takes CALLS[(i - 1) % len(CALLS)].
CALLS: tuple[dict[str, Any], ...] = (
    {"mode": "eval", "h0": False, "x_grad": False, "reused": True},
    {"mode": "train", "h0": True, "x_grad": True, "reused": True},
    {"mode": "eval", "h0": True, "x_grad": True, "reused": False},
    {"mode": "train", "h0": False, "x_grad": True, "reused": False},
    {"mode": "train", "h0": True, "x_grad": False, "reused": False},
)
#: How the report names each way of calling a layer (worker.PLAIN_CALL's keys and values).
CALL_WORDS = {
    ("mode", "train"): "in train() mode", ("mode", "eval"): "in eval() mode",
    ("h0", True): "with h0", ("h0", False): "as m(x), without h0",
    ("x_grad", True): "with x requiring grad", ("x_grad", False): "with x not requiring grad",
    ("reused", False): "on a fresh instance", ("reused", True): "on a reused instance (parameters changed)",
}  # fmt: skip


#: The ranges (low, high: high excluded) of a large configuration's sizes.
LARGE = {"D": (3, 8), "H": (32, 40), "T": (64, 72), "B": (8, 11)}


def large_count(n: int) -> int:
    """How many of n configurations are large: none below 4, one below 12, else two."""
    return 0 if n < 4 else 1 if n < 12 else 2


def draw_sizes(rng: np.random.Generator, quick: bool, large: bool = False) -> tuple[int, int, int, int]:
    """(D, H, T, B), all different (large: from LARGE)."""
    if large:  # the ranges are disjoint
        D, H, T, B = (int(rng.integers(*LARGE[k])) for k in ("D", "H", "T", "B"))
        return D, H, T, B
    while True:
        D, H = int(rng.integers(2, 7)), int(rng.integers(3, 8))
        T = int(rng.integers(4, 8) if quick else rng.integers(5, 11))
        B = int(rng.integers(2, 5))
        if len({D, H, T, B}) == 4:
            return D, H, T, B


def draw_params(
    rng: np.random.Generator, cell: str, D: int, H: int, bias: bool, shape: Shape | None = None
) -> dict[str, np.ndarray]:
    """Random parameters of ``shape`` (one layer: None) under torch's names, in torch's order:
    U, W (and the projection W_hr) uniform in +-1/sqrt(H); biases nonzero and different from each
    other."""
    k = 1.0 / math.sqrt(H)
    params = {}
    for name, size in (shape or Shape()).param_shapes(cell, D, H, bias).items():
        if name.startswith("bias"):  # nonzero, and different from each other
            params[name] = rng.uniform(0.1, 0.5, size) * rng.choice([-1.0, 1.0], size)
        else:  # weight_ih (G*H, D_l), weight_hh (G*H, H_out), weight_hr (H_out, H)
            params[name] = rng.uniform(-k, k, size)
    return params


def draw_lengths(rng: np.random.Generator, kind: str, T: int, B: int) -> np.ndarray:
    """(B,) lengths in 1..T of ``kind`` (LENGTHS): "different" (B distinct, the shortest 1, not
    sorted longest first; B <= T), "full" (every one T), "some one" (random, one of them 1 and
    another T)."""
    if kind == "full":
        return np.full(B, T, dtype=np.int64)
    if kind == "different":
        n = np.concatenate([[1], rng.choice(np.arange(2, T + 1), B - 1, replace=False)])
        n = rng.permutation(n)
        if np.all(np.diff(n) < 0):  # sorted longest first: unsorted it (enforce_sorted=False)
            n = n[::-1].copy()
        return n.astype(np.int64)
    n = rng.integers(1, T + 1, B)
    i, j = rng.choice(B, 2, replace=False)
    n[i], n[j] = 1, T
    return n.astype(np.int64)


def one_layer(D: int, H: int, bias: bool) -> Shape:
    """The Shape of a module that does not say another (one layer, one direction, no projection)."""
    return Shape()


def draw_case(
    rng: np.random.Generator,
    cell: str,
    dtype: str,
    quick: bool,
    bias: bool,
    large: bool = False,
    shape_of: Callable[[int, int, bool], Shape] = one_layer,
    kind: str = "different",
) -> dict[str, Any]:
    """One random configuration of the Shape ``shape_of(D, H, bias)`` gives for its sizes, every
    array rounded to dtype (float64 values), called the plain way; with variable lengths (the
    Shape's feed), lengths of ``kind`` (LENGTHS)."""
    D, H, T, B = draw_sizes(rng, quick, large)
    shape = shape_of(D, H, bias)
    params = draw_params(rng, cell, D, H, bias, shape)
    rows, H_out, dirs = shape.rows, shape.out_size(H), shape.directions
    case: dict[str, Any] = {
        "D": D, "H": H, "T": T, "B": B, "bias": bias, "large": large, "shape": shape, "params": params,
        "x": rng.standard_normal((B, T, D)),  # (B, T, D)
        "h0": 0.5 * rng.standard_normal((rows, B, H_out)),  # (L*dirs, B, H_out)
        "dout": rng.standard_normal((B, T, dirs * H_out)),  # dL/dout, (B, T, dirs*H_out)
        "dh_n": rng.standard_normal((rows, B, H_out)),  # dL/dh_n, (L*dirs, B, H_out)
    }  # fmt: skip
    if cell == "lstm":
        case["c0"] = 0.5 * rng.standard_normal((rows, B, H))  # (L*dirs, B, H)
        case["dc_n"] = rng.standard_normal((rows, B, H))
    if shape.feed is not None:
        case["lengths"] = draw_lengths(rng, kind, T, B)  # (B,); x and dout past them: random
    return rounded(case, dtype)


def called(
    alt: np.random.Generator, case: dict[str, Any], how: dict[str, Any], cell: str, dtype: str
) -> dict[str, Any]:
    """``case`` called as ``how`` says (a CALLS entry, or worker.PLAIN_CALL); a reused instance's
    first parameters drawn from ``alt``."""
    out = dict(case, call=dict(how))
    out.pop("warmup", None)
    if how["reused"]:
        earlier = draw_params(alt, cell, case["D"], case["H"], case["bias"], case_shape(case))
        out["warmup"] = {n: _round(a, dtype) for n, a in earlier.items()}
    return out


def plan(
    rng: np.random.Generator,
    alt: np.random.Generator,
    cell: str,
    dtype: str,
    quick: bool,
    n: int,
    shape_of: Callable[[int, int, bool], Shape] = one_layer,
) -> list[dict[str, Any]]:
    """The n configurations of a check (see the module docstring), of the Shapes ``shape_of``
    gives for their sizes."""
    large = large_count(n)
    cases = []
    for i in range(n):
        big = i >= n - large
        kind = "different" if big else LENGTHS[i % len(LENGTHS)]
        case = draw_case(rng, cell, dtype, quick, bias=(i % 4 != 2), large=big, shape_of=shape_of, kind=kind)
        how = module_worker.PLAIN_CALL if i == 0 or big else CALLS[(i - 1) % len(CALLS)]
        cases.append(called(alt, case, how, cell, dtype))
    return cases


def redrawn(
    alt: np.random.Generator,
    case: dict[str, Any],
    cell: str,
    dtype: str,
    quick: bool,
    shape_of: Callable[[int, int, bool], Shape] = one_layer,
) -> dict[str, Any]:
    """Another configuration in place of ``case`` (whose sizes the factory declined): new sizes
    and values from ``alt``, the same biases, largeness and way of calling (and lengths of a
    random kind)."""
    kind = LENGTHS[int(alt.integers(len(LENGTHS)))]
    new = draw_case(alt, cell, dtype, quick, bias=case["bias"], large=case.get("large", False),
                    shape_of=shape_of, kind=kind)  # fmt: skip
    return called(alt, new, module_worker.call_of(case), cell, dtype)


def as_called(case: dict[str, Any], arrays: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """(the case as the module was called, the arrays not compared). Called as m(x) (no h0 in the
    module's arrays although the plan said m(x)), it started from zeros, and dh0 (dc0) is not
    compared; with x not requiring grad, dx is not compared. A forward that requires its state
    was given h0, and dh0 is compared."""
    how = module_worker.call_of(case)
    skipped: set[str] = set()
    used = case
    if not how["h0"] and "h0" not in arrays:
        used = dict(case, call=dict(how))
        for k in ("h0", "c0"):
            if k in case:
                used[k] = np.zeros_like(case[k])
                skipped.add(k)
    elif not how["h0"]:
        used = dict(case, call=dict(how, h0=True))
    if not how["x_grad"]:
        skipped.add("x")
    return used, skipped


def rounded(case: dict[str, Any], dtype: str) -> dict[str, Any]:
    """A copy of case with every array rounded to dtype."""
    out = dict(case)
    out["params"] = {n: _round(a, dtype) for n, a in case["params"].items()}
    for k in ("x", "h0", "c0", "dout", "dh_n", "dc_n"):
        if k in case:
            out[k] = _round(case[k], dtype)
    return out


def stack_params(cell: str, activation: str, case: dict[str, Any]) -> mb.StackParams:
    """The case's parameters as a manual_bptt.StackParams (torch's names and layout)."""
    return mb.StackParams.from_state_dict(
        cell, case["params"], nonlinearity=activation if cell == "rnn" else None
    )


def reference(
    cell: str, activation: str, case: dict[str, Any], params: mb.StackParams | None = None
) -> dict[str, np.ndarray]:
    """The hand-written forward and backward (manual_bptt.backward on a StackParams, float64) on
    case, under torch's names: out, h_n, (c_n), every parameter in torch's order, x, h0, (c0)
    (``params``: other parameters than the case's, for a localization's hypothesis)."""
    p = stack_params(cell, activation, case) if params is None else params
    lstm = cell == "lstm"
    s0: Any = mb.LSTMState(case["h0"], case["c0"]) if lstm else case["h0"]  # (L*dirs, B, .)
    d_final: Any = mb.LSTMState(case["dh_n"], case["dc_n"]) if lstm else case["dh_n"]
    r = mb.backward(p, case["x"], case["dout"], s0=s0, d_final=d_final, lengths=case.get("lengths"))
    ref = {"out": r.hs}
    if lstm:
        ref["h_n"], ref["c_n"] = r.final_state.h, r.final_state.c
    else:
        ref["h_n"] = r.final_state
    ref.update(r.grads.items())  # weight_ih_l0, weight_hh_l0, bias_ih_l0, ... in torch's order
    ref["x"] = r.dxs
    if lstm:
        ref["h0"], ref["c0"] = r.ds0.h, r.ds0.c
    else:
        ref["h0"] = r.ds0
    return ref


def native_factory(cell: str, activation: str, shape: Shape | None = None) -> Callable[..., Any]:
    """torch's own nn.RNN (with the module's nonlinearity), nn.GRU or nn.LSTM of ``shape``, as a factory."""
    from torch import nn

    shape = shape or Shape()
    kw: dict[str, Any] = {"num_layers": shape.num_layers, "bidirectional": shape.directions == 2}
    if cell == "rnn":
        kw["nonlinearity"] = activation
    if shape.proj_size:
        kw["proj_size"] = shape.proj_size
    cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
    return lambda **given: cls(**kw, **given)


def baseline(
    cell: str, activation: str, settings: dict[str, Any], case: dict[str, Any]
) -> dict[str, np.ndarray]:
    """torch's native module of the case's shape at the module's dtype and device on case (in this
    process); variable lengths fed to it as a PackedSequence, however the module takes them."""
    shape = case_shape(case)
    if shape.feed is not None and shape.feed != "packed":
        case = dict(case, shape=dataclasses.replace(shape, feed="packed"))
    factory = native_factory(cell, activation, shape)
    with warnings.catch_warnings():  # torch's own note on its projected LSTM's implementation
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        m = module_worker.build(factory, settings, case)
        arrays, _, _ = module_worker.call(m, settings, case)
    return arrays
