"""The gated cells' contenders: torch.nn.GRU / nn.LSTM, JAX, our own gated bptt and its floor.

Every contender of a gated group holds the same weights (GatedWeights, torch's layer-0 layout:
U = weight_ih (G*H, D) with gate blocks r, z, n (GRU) or i, f, g, o (LSTM), W = weight_hh
(G*H, H), b_ih, b_hh (G*H,), and the output layer V (K, H), c (K,)) and the same dense batch
(B, T, D), and returns the same outputs: the loss, every weight and bias gradient, the initial
state's (h0; for the LSTM h0 and c0) and the inputs'.

Our own contender is made only when manual_bptt has GRUParams / LSTMParams and a bptt that
accepts them (ours_missing says why not, otherwise): it calls mb.bptt(p, xs, ys) with p built
from the same weights, so the rows appear as soon as that lands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import manual_bptt as mb

from . import jaxpeer
from .config import Size
from .floor import gated_products_alone
from .harness import FLOOR, OURS_ROLE, Contender
from .names import JAX, OURS, PRODUCTS, TORCH_GATED

#: cell -> (G, the name of manual_bptt's parameter class, torch module).
GATED = {"gru": (3, "GRUParams", torch.nn.GRU), "lstm": (4, "LSTMParams", torch.nn.LSTM)}
_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class GatedWeights:
    """U (G*H, D), W (G*H, H), b_ih (G*H,), b_hh (G*H,), V (K, H), c (K,), in torch's layout."""

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    V: np.ndarray
    c: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        """U, W, b_ih, b_hh, V, c."""
        return (self.U, self.W, self.b_ih, self.b_hh, self.V, self.c)


def gated_inputs(
    cell: str, s: Size, dtype: str, seed: int = 0
) -> tuple[GatedWeights, np.ndarray, np.ndarray]:
    """Weights ~ N(0, 1/fan_in) (biases N(0, 0.1^2)), dense xs (B, T, D) ~ N(0, 1), ys (B, T)."""
    G = GATED[cell][0]
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], scale: float) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(dtype)

    w = GatedWeights(
        U=normal((G * s.H, s.D), s.D**-0.5),
        W=normal((G * s.H, s.H), s.H**-0.5),
        b_ih=normal((G * s.H,), 0.1),
        b_hh=normal((G * s.H,), 0.1),
        V=normal((s.K, s.H), s.H**-0.5),
        c=normal((s.K,), 0.1),
    )
    xs = rng.standard_normal((s.B, s.T, s.D)).astype(dtype)
    ys = rng.integers(0, s.K, size=(s.B, s.T))
    return w, xs, ys


def torch_gated(cell: str, w: GatedWeights, xs: np.ndarray, ys: np.ndarray):
    """A call of nn.GRU / nn.LSTM + nn.Linear + F.cross_entropy(sum) and torch.autograd.grad of
    every output (weights, biases, the initial state(s), the inputs), on tensors built here.
    Returns a function of no argument returning (E, grads in the order U, W, b_ih, b_hh, V, c,
    h0[, c0], xs) as tensors."""
    module = GATED[cell][2]
    tdtype = _TORCH_DTYPES[str(xs.dtype)]
    B, _, D = xs.shape
    H, K = w.W.shape[1], w.V.shape[0]
    rnn = module(D, H, batch_first=True, dtype=tdtype)
    linear = torch.nn.Linear(H, K, dtype=tdtype)
    with torch.no_grad():
        for dst, src in (
            (rnn.weight_ih_l0, w.U),
            (rnn.weight_hh_l0, w.W),
            (rnn.bias_ih_l0, w.b_ih),
            (rnn.bias_hh_l0, w.b_hh),
            (linear.weight, w.V),
            (linear.bias, w.c),
        ):
            dst.copy_(torch.tensor(src))
    x = torch.tensor(xs, requires_grad=True)  # (B, T, D)
    y = torch.tensor(ys.reshape(-1))
    n_states = 2 if cell == "lstm" else 1  # h0 (and c0), (1, B, H)
    states = [torch.zeros((1, B, H), dtype=tdtype, requires_grad=True) for _ in range(n_states)]
    leaves = [*rnn.parameters(), *linear.parameters(), *states, x]

    def call():
        out, _ = rnn(x, tuple(states) if cell == "lstm" else states[0])  # h_t, (B, T, H)
        E = F.cross_entropy(linear(out).reshape(-1, K), y, reduction="sum")
        return E, torch.autograd.grad(E, leaves)

    return call


def jax_gated(cell: str, w: GatedWeights, xs: np.ndarray, ys: np.ndarray):
    """(call, compile seconds) of JAX's jit(value_and_grad) for the cell; call() returns
    (E, grads in the order U, W, b_ih, b_hh, V, c, h0[, c0], xs)."""
    B, H = xs.shape[0], w.W.shape[1]
    h0 = np.zeros((B, H), dtype=xs.dtype)
    if cell == "gru":
        args = jaxpeer.device_args(*w.arrays(), h0, xs, ys)
        return jaxpeer.compiled_value_and_grad(jaxpeer.gru_loss, args, tuple(range(8)))
    args = jaxpeer.device_args(*w.arrays(), h0, h0.copy(), xs, ys)
    return jaxpeer.compiled_value_and_grad(jaxpeer.lstm_loss, args, tuple(range(9)))


def ours_missing(cell: str) -> str | None:
    """Why our own gated contender is not in the lineup (None: it is)."""
    cls = GATED[cell][1]
    if not hasattr(mb, cls):
        return f"manual_bptt has no {cls} yet: no row for our own {cell.upper()} bptt"
    s = Size("probe", B=2, T=3, D=2, H=2, K=2, tokens=False, rounds=1, gemm_every=1)
    w, xs, ys = gated_inputs(cell, s, "float64")
    try:
        mb.bptt(ours_params(cell, w), xs, ys)
    except (TypeError, ValueError, AttributeError) as e:
        return f"manual_bptt.bptt does not accept {cls} yet ({type(e).__name__}: {e})"
    return None


def ours_params(cell: str, w: GatedWeights):
    """manual_bptt's GRUParams / LSTMParams holding w."""
    cls = getattr(mb, GATED[cell][1])
    return cls(U=w.U, W=w.W, b_ih=w.b_ih, b_hh=w.b_hh, V=w.V, c=w.c)


def gated_contenders(cell: str, s: Size, dtype: str, flops: float) -> list[Contender]:
    """Ours (when it exists), nn.GRU / nn.LSTM and JAX (when it is loaded), for one group."""
    w, xs, ys = gated_inputs(cell, s, dtype)
    out = []
    ours = ours_missing(cell) is None
    if ours:
        p = ours_params(cell, w)
        out.append(Contender(OURS, lambda: mb.bptt(p, xs, ys).loss, flops, role=OURS_ROLE))
    torch_call = torch_gated(cell, w, xs, ys)
    call_torch = lambda: torch_call()[0].item()  # noqa: E731
    out.append(Contender(TORCH_GATED[cell], call_torch, flops, peer=True, floor_reference=ours))
    if ours:  # the floor: the products of our fast path alone, on time-major inputs made here
        X_tm = np.ascontiguousarray(xs.swapaxes(0, 1))
        out.append(Contender(PRODUCTS, lambda: gated_products_alone(w, s.T, s.B, X_tm), flops, role=FLOOR))
    if jaxpeer.current() is not None:
        call, compile_s = jax_gated(cell, w, xs, ys)
        out.append(Contender(JAX[cell], lambda: float(call()[0]), flops, peer=True, compile_s=compile_s))
    return out
