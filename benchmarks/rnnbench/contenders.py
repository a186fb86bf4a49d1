"""Who is timed: the contenders of one (cell, size, dtype), their inputs and the FLOPs they are credited.

LINEUP[cell] is the list of factories whose contenders a group of that cell times, in this
order. Each factory is called as factory(size, dtype, gemm_n) and returns Contender objects
with a role (see harness); a factory whose library is missing returns none, and missing()
says why in the results. Another library or another cell is another factory here; nothing
else changes. CELL_SIZES: the sizes each cell runs at (the gated cells: the dense sizes).

FLOPs are those of the matrix products of the model, forward and backward (elementwise work
is not counted), the same count for every contender that returns the same gradients:
    forward   U x (dense) 2TBHD, W s 2TBH^2, V s 2TBHK
    backward  V^T dE/do 2TBHK, dV 2TBHK, W^T delta 2TBH^2, dW 2TBH^2, dU 2TBHD, dxs 2TBHD
Token inputs (small) have no input products: U x_t is a column of U. A cell with G stacked
gate blocks (U: (G·H, D), W: (G·H, H)) has G times the U and W products.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

import manual_bptt as mb
import reference as ref

from . import gated, jaxpeer
from .config import Size
from .floor import products_alone
from .harness import FLOOR, GEMM, OURS_ROLE, Contender
from .names import GEMM_NP, GEMM_TORCH, JAX, NN_RNN, NN_RNN_WEIGHTS, ORACLE, OURS, PRODUCTS

__all__ = ["GEMM_NP", "GEMM_TORCH", "JAX", "NN_RNN", "NN_RNN_WEIGHTS", "ORACLE", "OURS", "PRODUCTS"]

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: factory(size, dtype, gemm_n) -> contenders.
Factory = Callable[[Size, str, int], list[Contender]]


def model_flops(s: Size, input_grads: bool = True, gates: int = 1) -> float:
    """Matrix-product FLOPs of forward + backward (see the module docstring).

    input_grads: whether dE/dxs is computed; gates: G, the gate blocks stacked in U and W.
    """
    TB = s.T * s.B
    hh = 3 * 2 * TB * gates * s.H * s.H  # W s, W^T delta, dW
    hk = 3 * 2 * TB * s.H * s.K  # V s, V^T dE/do, dV
    hd = 0 if s.tokens else 2 * 2 * TB * gates * s.H * s.D  # U x, dU
    dx = 2 * TB * gates * s.H * s.D if (input_grads and not s.tokens) else 0  # dxs
    return float(hh + hk + hd + dx)


def make_inputs(s: Size, dtype: str, seed: int = 0) -> tuple[mb.RNNParams, np.ndarray, np.ndarray]:
    """Parameters and one batch: tokens (T,) for B = 1, else (B, T); dense (B, T, D)."""
    rng = np.random.default_rng(seed)
    p = mb.RNNParams.init(s.D, s.H, s.K, seed=seed, dtype=dtype)
    shape = (s.T,) if s.B == 1 else (s.B, s.T)
    xs = rng.integers(0, s.D, size=shape) if s.tokens else rng.standard_normal((*shape, s.D)).astype(dtype)
    ys = rng.integers(0, s.K, size=shape)
    return p, xs, ys


def time_major(s: Size, xs: np.ndarray) -> np.ndarray | None:
    """Dense inputs from make_inputs as a C-contiguous time-major (T, B, D) array (what
    products_alone reads); None for token inputs."""
    return None if s.tokens else np.ascontiguousarray(xs.reshape(s.B, s.T, s.D).swapaxes(0, 1))


def torch_modules(p: mb.RNNParams, tdtype: torch.dtype) -> tuple[torch.nn.RNN, torch.nn.Linear]:
    """nn.RNN + nn.Linear holding the same parameters as p (bias_hh = 0, bias_ih = b)."""
    rnn, linear = ref.make_torch_rnn(
        p.input_size, p.hidden_size, p.output_size, nonlinearity="tanh", bias=True, seed=0, dtype=tdtype
    )
    with torch.no_grad():
        for dst, src in (
            (rnn.weight_ih_l0, p.U),
            (rnn.weight_hh_l0, p.W),
            (rnn.bias_ih_l0, p.b),
            (linear.weight, p.V),
            (linear.bias, p.c),
        ):
            dst.copy_(torch.tensor(np.asarray(src)))
        rnn.bias_hh_l0.zero_()
    return rnn, linear


def nn_rnn_contenders(
    s: Size, dtype: str, p: mb.RNNParams, xs: np.ndarray, ys: np.ndarray
) -> list[Contender]:
    """nn.RNN + nn.Linear + F.cross_entropy(sum), forward and torch.autograd.grad, on tensors
    built here: for every output bptt returns (weights, biases, s0 and dense inputs), and for
    the weights and biases only."""
    tdtype = TORCH_DTYPES[dtype]
    rnn, linear = torch_modules(p, tdtype)
    if s.tokens:
        x = F.one_hot(torch.tensor(xs.reshape(s.B, s.T)), s.D).to(tdtype)  # (B, T, D), no gradient
    else:
        x = torch.tensor(xs, dtype=tdtype, requires_grad=True)  # (B, T, D)
    y = torch.tensor(ys.reshape(-1))
    h0 = torch.zeros((1, s.B, s.H), dtype=tdtype, requires_grad=True)
    weights = [*rnn.parameters(), *linear.parameters()]
    every_output = [*weights, h0] + ([] if s.tokens else [x])

    def nn_rnn(leaves: list[torch.Tensor]) -> float:
        out, _ = rnn(x, h0)  # s_t, (B, T, H)
        logits = linear(out)  # o_t, (B, T, K)
        E = F.cross_entropy(logits.reshape(-1, s.K), y, reduction="sum")
        torch.autograd.grad(E, leaves)
        return E.item()

    return [
        Contender(NN_RNN, lambda: nn_rnn(every_output), model_flops(s), floor_reference=True, peer=True),
        Contender(NN_RNN_WEIGHTS, lambda: nn_rnn(weights), model_flops(s, input_grads=False)),
    ]


def elman_contenders(s: Size, dtype: str, gemm_n: int) -> list[Contender]:
    """The Elman RNN: manual_bptt.bptt, the autograd oracle, nn.RNN (two ways), the floor."""
    tdtype = TORCH_DTYPES[dtype]
    p, xs, ys = make_inputs(s, dtype)
    X_tm = time_major(s, xs)
    return [
        Contender(OURS, lambda: mb.bptt(p, xs, ys).loss, model_flops(s), role=OURS_ROLE),
        Contender(ORACLE, lambda: ref.bptt(p, xs, ys, dtype=tdtype).loss, model_flops(s)),
        *nn_rnn_contenders(s, dtype, p, xs, ys),
        Contender(PRODUCTS, lambda: products_alone(p, s.T, s.B, X_tm), model_flops(s), role=FLOOR),
    ]


def jax_elman(s: Size, p: mb.RNNParams, xs: np.ndarray, ys: np.ndarray) -> tuple[Callable[[], tuple], float]:
    """(call, compile seconds) of JAX's jit(value_and_grad) for the Elman RNN (tanh) on p's weights
    (b and c as given, zeros where None), s0 = 0 (B, H). call() returns (E, (dU, dW, db, dV, dc,
    ds0[, dxs])): every output bptt returns, dxs for dense inputs."""
    H, K, dt = p.hidden_size, p.output_size, p.U.dtype
    b = np.zeros(H, dt) if p.b is None else p.b
    c = np.zeros(K, dt) if p.c is None else p.c
    x = xs.reshape(s.B, s.T) if s.tokens else xs.reshape(s.B, s.T, s.D)
    args = jaxpeer.device_args(p.U, p.W, b, p.V, c, np.zeros((s.B, H), dt), x, ys.reshape(s.B, s.T))
    argnums = tuple(range(6 if s.tokens else 7))
    return jaxpeer.compiled_value_and_grad(jaxpeer.elman_loss, args, argnums, tokens=s.tokens)


def jax_elman_contenders(s: Size, dtype: str, gemm_n: int) -> list[Contender]:
    """JAX's Elman RNN, when jax is set up in this process (jaxpeer.load); else none."""
    if jaxpeer.current() is None:
        return []
    p, xs, ys = make_inputs(s, dtype)
    call, compile_s = jax_elman(s, p, xs, ys)
    return [Contender(JAX["rnn"], lambda: float(call()[0]), model_flops(s), peer=True, compile_s=compile_s)]


def gated_cell_contenders(cell: str, s: Size, dtype: str, gemm_n: int) -> list[Contender]:
    """A gated cell's contenders (rnnbench.gated), credited with G = 3 (GRU) or 4 (LSTM) gate blocks."""
    return gated.gated_contenders(cell, s, dtype, model_flops(s, gates=gated.GATED[cell][0]))


def gemm_contenders(s: Size, dtype: str, gemm_n: int) -> list[Contender]:
    """An N x N by N x N matrix product in numpy and in torch, every s.gemm_every-th round."""
    A_np = np.random.default_rng(1).standard_normal((gemm_n, gemm_n)).astype(dtype)
    B_np = np.random.default_rng(2).standard_normal((gemm_n, gemm_n)).astype(dtype)
    A_t, B_t = torch.tensor(A_np), torch.tensor(B_np)
    flops = 2.0 * gemm_n**3
    return [
        Contender(GEMM_NP, lambda: A_np @ B_np, flops, role=GEMM, every=s.gemm_every),
        Contender(GEMM_TORCH, lambda: A_t @ B_t, flops, role=GEMM, every=s.gemm_every),
    ]


LINEUP: dict[str, list[Factory]] = {
    "rnn": [elman_contenders, jax_elman_contenders, gemm_contenders],
    "gru": [functools.partial(gated_cell_contenders, "gru"), gemm_contenders],
    "lstm": [functools.partial(gated_cell_contenders, "lstm"), gemm_contenders],
}
CELL_SIZES = {"rnn": ("small", "medium", "large"), "gru": ("medium", "large"), "lstm": ("medium", "large")}


def lineup(cell: str, s: Size, dtype: str, gemm_n: int) -> list[Contender]:
    """Every factory's contenders for one (cell, size, dtype), in LINEUP[cell] order."""
    return [c for factory in LINEUP[cell] for c in factory(s, dtype, gemm_n)]


def missing(cell: str, threads: int) -> list[str]:
    """Why contenders of the issue's lineup for this cell are not in it here (empty: none missing)."""
    notes = [] if cell == "rnn" else [m for m in [gated.ours_missing(cell)] if m]
    jax_note = jaxpeer.missing(threads)
    if jax_note is None and jaxpeer.current() is None:
        jax_note = "jax was not set up in this process (jaxpeer.load)"
    if cell != "rnn":
        notes.append("no autograd oracle for gated cells (the oracle is timed for the Elman cell only)")
    return notes + ([jax_note] if jax_note else [])
