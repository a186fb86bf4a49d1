"""check-module's cases: random configurations of a layer (D, H, T, B all different; random,
nonzero and different b_ih and b_hh; random h0 (and c0); random upstream gradients on out, h_n
(and c_n)), every value rounded to the module's dtype, each called in one of the ways a layer is
called (CALLS), a few of them large (LARGE); the hand-written float64 reference
(manual_bptt.backward) on the rounded values; torch's own module at the same dtype and device,
the baseline; the names of the arrays compared.

The plan of n configurations (``plan``): #0 is called the plain way (train() mode, h0 given, x
requiring grad, a fresh instance), #1, #2, ... take CALLS in turn (#1 every other way at once, so
that two configurations see them all), and the last one or two (n >= 4, n >= 12) are large, called
the plain way. Every fourth configuration from #2 on (#2, #6, ...) has no biases. The calls' own
random values (the parameters a reused instance is first called with) and the sizes redrawn for a
factory that declines some come from a second generator, so that the configurations of a seed
stay the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import manual_bptt as mb

from ..cells import GATES
from . import worker as module_worker

#: Our notation for the arrays compared (torch name -> name in the report's sentences).
NOTATION = {
    "out": "h_t", "h_n": "h_n", "c_n": "c_n",
    "weight_ih_l0": "dU", "weight_hh_l0": "dW", "bias_ih_l0": "db_ih", "bias_hh_l0": "db_hh",
    "x": "dx", "h0": "dh0", "c0": "dc0",
}  # fmt: skip
FORWARD = ("out", "h_n", "c_n")


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


def draw_params(rng: np.random.Generator, cell: str, D: int, H: int, bias: bool) -> dict[str, np.ndarray]:
    """Random parameters under torch's names: U, W uniform in +-1/sqrt(H); biases nonzero and
    different from each other."""
    G = GATES[cell]
    k = 1.0 / math.sqrt(H)
    params = {
        "weight_ih_l0": rng.uniform(-k, k, (G * H, D)),  # U (G*H, D)
        "weight_hh_l0": rng.uniform(-k, k, (G * H, H)),  # W (G*H, H)
    }
    if bias:
        for n in ("bias_ih_l0", "bias_hh_l0"):  # nonzero, and different from each other
            v = rng.uniform(0.1, 0.5, G * H) * rng.choice([-1.0, 1.0], G * H)
            params[n] = v
    return params


def draw_case(
    rng: np.random.Generator, cell: str, dtype: str, quick: bool, bias: bool, large: bool = False
) -> dict[str, Any]:
    """One random configuration, every array rounded to dtype (float64 values), called the plain way."""
    D, H, T, B = draw_sizes(rng, quick, large)
    params = draw_params(rng, cell, D, H, bias)
    case: dict[str, Any] = {
        "D": D, "H": H, "T": T, "B": B, "bias": bias, "large": large, "params": params,
        "x": rng.standard_normal((B, T, D)),  # (B, T, D)
        "h0": 0.5 * rng.standard_normal((1, B, H)),  # (1, B, H)
        "dout": rng.standard_normal((B, T, H)),  # dL/dout, (B, T, H)
        "dh_n": rng.standard_normal((1, B, H)),  # dL/dh_n, (1, B, H)
    }  # fmt: skip
    if cell == "lstm":
        case["c0"] = 0.5 * rng.standard_normal((1, B, H))
        case["dc_n"] = rng.standard_normal((1, B, H))
    return rounded(case, dtype)


def called(
    alt: np.random.Generator, case: dict[str, Any], how: dict[str, Any], cell: str, dtype: str
) -> dict[str, Any]:
    """``case`` called as ``how`` says (a CALLS entry, or worker.PLAIN_CALL); a reused instance's
    first parameters drawn from ``alt``."""
    out = dict(case, call=dict(how))
    out.pop("warmup", None)
    if how["reused"]:
        earlier = draw_params(alt, cell, case["D"], case["H"], case["bias"])
        out["warmup"] = {n: _round(a, dtype) for n, a in earlier.items()}
    return out


def plan(
    rng: np.random.Generator, alt: np.random.Generator, cell: str, dtype: str, quick: bool, n: int
) -> list[dict[str, Any]]:
    """The n configurations of a check (see the module docstring)."""
    large = large_count(n)
    cases = []
    for i in range(n):
        big = i >= n - large
        case = draw_case(rng, cell, dtype, quick, bias=(i % 4 != 2), large=big)
        how = module_worker.PLAIN_CALL if i == 0 or big else CALLS[(i - 1) % len(CALLS)]
        cases.append(called(alt, case, how, cell, dtype))
    return cases


def redrawn(
    alt: np.random.Generator, case: dict[str, Any], cell: str, dtype: str, quick: bool
) -> dict[str, Any]:
    """Another configuration in place of ``case`` (whose sizes the factory declined): new sizes
    and values from ``alt``, the same biases, largeness and way of calling."""
    new = draw_case(alt, cell, dtype, quick, bias=case["bias"], large=case.get("large", False))
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


def reference(cell: str, activation: str, case: dict[str, Any]) -> dict[str, np.ndarray]:
    """The hand-written forward and backward (manual_bptt, float64) on case, under the torch names."""
    P = case["params"]
    H = case["H"]
    U, W = P["weight_ih_l0"], P["weight_hh_l0"]
    V = np.zeros((1, H))  # the layer alone: no output layer
    b_ih, b_hh = P.get("bias_ih_l0"), P.get("bias_hh_l0")
    h0 = case["h0"][0]  # (B, H)
    if cell == "rnn":
        p: Any = mb.RNNParams(U=U, W=W, V=V, b=None if b_ih is None else b_ih + b_hh)
        s0, d_final, act = h0, case["dh_n"][0], activation
    else:
        cls = mb.GRUParams if cell == "gru" else mb.LSTMParams
        p = cls(U=U, W=W, b_ih=b_ih, b_hh=b_hh, V=V)
        act = None
        if cell == "gru":
            s0, d_final = h0, case["dh_n"][0]
        else:
            s0, d_final = mb.LSTMState(h0, case["c0"][0]), mb.LSTMState(case["dh_n"][0], case["dc_n"][0])
    r = mb.backward(p, case["x"], case["dout"], s0=s0, d_final=d_final, activation=act)
    ref = {"out": r.hs}
    if cell == "lstm":
        ref["h_n"], ref["c_n"] = r.final_state.h[None], r.final_state.c[None]
    else:
        ref["h_n"] = r.final_state[None]
    ref["weight_ih_l0"], ref["weight_hh_l0"] = r.grads.U, r.grads.W
    if b_ih is not None:
        if cell == "rnn":
            ref["bias_ih_l0"] = ref["bias_hh_l0"] = r.grads.b  # b = b_ih + b_hh
        else:
            ref["bias_ih_l0"], ref["bias_hh_l0"] = r.grads.b_ih, r.grads.b_hh
    ref["x"] = r.dxs
    if cell == "lstm":
        ref["h0"], ref["c0"] = r.ds0.h[None], r.ds0.c[None]
    else:
        ref["h0"] = r.ds0[None]
    return ref


def native_factory(cell: str, activation: str) -> Callable[..., Any]:
    """torch's own nn.RNN (with the module's nonlinearity), nn.GRU or nn.LSTM, as a factory."""
    from torch import nn

    if cell == "rnn":
        return lambda **kw: nn.RNN(nonlinearity=activation, **kw)
    return nn.GRU if cell == "gru" else nn.LSTM


def baseline(
    cell: str, activation: str, settings: dict[str, Any], case: dict[str, Any]
) -> dict[str, np.ndarray]:
    """torch's native module at the module's dtype and device on case (in this process)."""
    factory = native_factory(cell, activation)
    m = module_worker.build(factory, settings, case)
    arrays, _, _ = module_worker.call(m, settings, case)
    return arrays
