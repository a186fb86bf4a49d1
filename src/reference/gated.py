"""Plain, unrolled PyTorch-autograd oracle for BPTT in the gated cells: GRU and LSTM.

The layout is PyTorch's layer 0 (gate blocks stacked along the rows, G blocks of H rows each):

    U    (G*H, D) = weight_ih_l0        W    (G*H, H) = weight_hh_l0
    b_ih (G*H,)   = bias_ih_l0          b_hh (G*H,)   = bias_hh_l0     (both None, or both arrays)
    V    (K, H)   = output layer        c    (K,)     = output bias, or None

GRU, gate blocks r, z, n (G = 3), state h:

    r_t = σ(U_r x_t + b_ir + W_r h_{t-1} + b_hr)
    z_t = σ(U_z x_t + b_iz + W_z h_{t-1} + b_hz)
    n_t = tanh(U_n x_t + b_in + r_t ⊙ (W_n h_{t-1} + b_hn))      (the reset gate AFTER W_n)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

LSTM, gate blocks i, f, g, o (G = 4), state the pair (h_t, cell_t):

    [i; f; g; out_gate] = blocks of U x_t + b_ih + W h_{t-1} + b_hh
    i_t, f_t, out_gate_t = σ(.)     g_t = tanh(.)
    cell_t = f_t ⊙ cell_{t-1} + i_t ⊙ g_t        h_t = out_gate_t ⊙ tanh(cell_t)

Names: in this module the LSTM's cell state is `cell` and its output gate `out_gate`; `o_t`
is always the logits V h_t + c and `c` always the output bias, exactly as for the Elman cell.
(The pair types `LSTMState(h, c)` keep PyTorch's field name `c` for the cell state.)

Then, as in `reference.autograd`:

    o_t = V h_t + c      y_hat_t = softmax(o_t)      E_t = -log y_hat_t[y_t]
    E = sum_t E_t ("sum") or sum_t E_t / (number of counted targets) ("mean"), masked targets
    contributing nothing.

Every time step is one iteration of an explicit Python loop (truncated BPTT stacks the windows
that end at different t along the batch axis: reference.truncation); autograd computes every
derivative; nn.GRU / nn.LSTM are never called here. Internally the batch axis is always present
(B = 1 for unbatched inputs) and is removed again from the returned arrays.

    import reference as ref
    r = ref.gru_bptt(p, xs, ys, s0=None, truncate=None, reduction="sum", mask=None)
    r = ref.lstm_bptt(p, xs, ys, s0=(h0, c0), ...)
    r.loss, r.grads.U, .W, .b_ih, .b_hh, .V, .c, r.ds0, r.dxs, r.final_state
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from . import truncation
from .autograd import bptt as rnn_bptt
from .autograd import initial_state, prepare_targets, prepare_xs, step_loss, to_tensor

#: Number of stacked gate blocks per cell.
GATES: dict[str, int] = {"gru": 3, "lstm": 4}


class GatedParamsLike(Protocol):
    """Any object with numpy attributes U (G*H, D), W (G*H, H), b_ih (G*H,) or None,
    b_hh (G*H,) or None, V (K, H), c (K,) or None."""

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    V: np.ndarray
    c: np.ndarray | None


class LSTMState(NamedTuple):
    """The LSTM state pair: h (hidden state) and c (cell state), each (H,) or (B, H)."""

    h: Any
    c: Any


@dataclass(frozen=True)
class GatedGrads:
    """dE/dθ as numpy arrays: U (G*H, D), W (G*H, H), b_ih (G*H,) or None, b_hh (G*H,) or None,
    V (K, H), c (K,) or None."""

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    V: np.ndarray
    c: np.ndarray | None


@dataclass(frozen=True)
class GatedResult:
    """Result of one gated-cell oracle run.

    loss:        E as a python float.
    grads:       GatedGrads, same shapes as the parameters (None where the parameter is None).
    ds0:         GRU: dE/dh0, the shape of s0 as given ((H,) unbatched or (B, H) batched when s0 is None).
                 LSTM: LSTMState(dh0, dc0), each shaped likewise.
    dxs:         dE/dxs, same shape as dense xs ((T, D) or (B, T, D)); None for token ids.
    final_state: GRU: h_{T-1}, (H,) or (B, H). LSTM: LSTMState(h_{T-1}, cell_{T-1}), each (H,) or (B, H).
    """

    loss: float
    grads: GatedGrads
    ds0: Any
    dxs: np.ndarray | None
    final_state: Any


# ---------------------------------------------------------------------------------------------
# Reading the parameters and the initial state
# ---------------------------------------------------------------------------------------------
def check_gated_params(cell: str, p: GatedParamsLike) -> tuple[int, int, int]:
    """Check the stacked shapes of p for `cell` ("gru" or "lstm"); return (D, H, K).

    Raises ValueError naming the argument: U not (G*H, D), W not (G*H, H), b_ih or b_hh not
    (G*H,), only one of b_ih / b_hh given, V not (K, H), c not (K,).
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
    G = GATES[cell]
    W = np.asarray(p.W)
    if W.ndim != 2 or W.shape[1] == 0 or W.shape[0] != G * W.shape[1]:
        raise ValueError(f"p.W must have shape ({G}*H, H) for the {cell} cell, got {W.shape}")
    H = W.shape[1]
    U = np.asarray(p.U)
    if U.ndim != 2 or U.shape[0] != G * H:
        raise ValueError(f"p.U must have shape ({G}*H, D) = ({G * H}, D) for the {cell} cell, got {U.shape}")
    if (p.b_ih is None) != (p.b_hh is None):
        raise ValueError("p.b_ih and p.b_hh must both be arrays or both be None")
    for name in ("b_ih", "b_hh"):
        bias = getattr(p, name)
        if bias is not None and np.shape(bias) != (G * H,):
            raise ValueError(f"p.{name} must have shape ({G * H},), got {np.shape(bias)}")
    V = np.asarray(p.V)
    if V.ndim != 2 or V.shape[1] != H:
        raise ValueError(f"p.V must have shape (K, {H}), got {V.shape}")
    if p.c is not None and np.shape(p.c) != (V.shape[0],):
        raise ValueError(f"p.c must have shape ({V.shape[0]},), got {np.shape(p.c)}")
    return U.shape[1], H, V.shape[0]


def split_lstm_state(s0: Any, name: str = "s0") -> tuple[Any, Any]:
    """An LSTM initial state: None -> (None, None); a pair (h0, c0) of equal shapes -> (h0, c0).

    Raises ValueError when s0 is not a pair, when one part is None and the other is not, or
    when the parts differ in shape.
    """
    if s0 is None:
        return None, None
    if not isinstance(s0, tuple) or len(s0) != 2:
        raise ValueError(f"{name} for the LSTM must be None or a pair (h0, c0), got {type(s0).__name__}")
    h0, c0 = s0
    if (h0 is None) != (c0 is None):
        raise ValueError(f"{name}: h0 and c0 must both be arrays or both be None")
    if h0 is not None and np.shape(h0) != np.shape(c0):
        raise ValueError(f"{name}: h0 {np.shape(h0)} and c0 {np.shape(c0)} must have the same shape")
    return h0, c0


# ---------------------------------------------------------------------------------------------
# One step of each cell
# ---------------------------------------------------------------------------------------------
def input_part(U: Tensor, b_ih: Tensor | None, x_t: Tensor, tokens: bool) -> Tensor:
    """U x_t + b_ih, (B, G*H). U (G*H, D); x_t (B,) int64 token ids or (B, D) dense."""
    if tokens:
        Ux_t = U[:, x_t].T  # U x_t for one-hot x_t = column x_t of U, (B, G*H)
    else:
        Ux_t = x_t @ U.T  # U x_t, (B, G*H)
    return Ux_t if b_ih is None else Ux_t + b_ih


def hidden_part(W: Tensor, b_hh: Tensor | None, h_prev: Tensor) -> Tensor:
    """W h_{t-1} + b_hh, (B, G*H). W (G*H, H), h_prev (B, H)."""
    Wh = h_prev @ W.T  # W h_{t-1}, (B, G*H)
    return Wh if b_hh is None else Wh + b_hh


def gru_step(
    U: Tensor,
    W: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    x_t: Tensor,
    state: tuple[Tensor],
    tokens: bool,
) -> tuple[Tensor]:
    """One GRU step. state = (h_{t-1},), (B, H). Returns (h_t,), (B, H).

    U (3H, D), W (3H, H), b_ih, b_hh (3H,) or None; x_t (B,) int64 ids or (B, D) dense.
    """
    (h_prev,) = state
    H = h_prev.shape[1]
    ix_r, ix_z, ix_n = input_part(U, b_ih, x_t, tokens).split(H, dim=1)  # U_g x_t + b_ig, each (B, H)
    hh_r, hh_z, hh_n = hidden_part(W, b_hh, h_prev).split(H, dim=1)  # W_g h_{t-1} + b_hg, each (B, H)
    r_t = torch.sigmoid(ix_r + hh_r)  # r_t = σ(U_r x_t + b_ir + W_r h_{t-1} + b_hr)
    z_t = torch.sigmoid(ix_z + hh_z)  # z_t = σ(U_z x_t + b_iz + W_z h_{t-1} + b_hz)
    n_t = torch.tanh(ix_n + r_t * hh_n)  # n_t = tanh(U_n x_t + b_in + r_t ⊙ (W_n h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_prev  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    return (h_t,)


def lstm_step(
    U: Tensor,
    W: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    x_t: Tensor,
    state: tuple[Tensor, Tensor],
    tokens: bool,
) -> tuple[Tensor, Tensor]:
    """One LSTM step. state = (h_{t-1}, cell_{t-1}), each (B, H). Returns (h_t, cell_t).

    U (4H, D), W (4H, H), b_ih, b_hh (4H,) or None; x_t (B,) int64 ids or (B, D) dense.
    """
    h_prev, cell_prev = state
    H = h_prev.shape[1]
    gates = input_part(U, b_ih, x_t, tokens) + hidden_part(W, b_hh, h_prev)  # (B, 4H)
    a_i, a_f, a_g, a_o = gates.split(H, dim=1)  # blocks i, f, g, o, each (B, H)
    i_t = torch.sigmoid(a_i)  # input gate
    f_t = torch.sigmoid(a_f)  # forget gate
    g_t = torch.tanh(a_g)  # candidate
    out_gate_t = torch.sigmoid(a_o)  # output gate
    cell_t = f_t * cell_prev + i_t * g_t  # cell_t = f_t ⊙ cell_{t-1} + i_t ⊙ g_t
    h_t = out_gate_t * torch.tanh(cell_t)  # h_t = out_gate_t ⊙ tanh(cell_t)
    return (h_t, cell_t)


STEPS: dict[str, Callable[..., tuple[Tensor, ...]]] = {"gru": gru_step, "lstm": lstm_step}


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------
def _numpy(x: Tensor | None) -> np.ndarray | None:
    """Tensor (any shape) -> numpy array of the same shape; None stays None."""
    return None if x is None else x.detach().numpy()


def initial_leaves(
    cell: str, s0: Any, H: int, B: int, batched: bool, dtype: torch.dtype, requires_grad: bool
) -> tuple[Tensor, ...]:
    """The initial state as leaf tensors, each shaped as given ((H,) or (B, H); zeros if None).

    GRU: (h0,). LSTM: (h0, cell0). The caller expands each to (B, H).
    """
    if cell == "gru" and isinstance(s0, tuple):
        raise ValueError("s0 for the GRU must be None or one array (H,) or (B, H), got a tuple")
    parts = (s0,) if cell == "gru" else split_lstm_state(s0)
    return tuple(initial_state(part, H, B, batched, dtype, requires_grad) for part in parts)


def gated_bptt(
    cell: str,
    p: GatedParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: Any = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
) -> GatedResult:
    """Loss and gradients of a GRU or LSTM (cell = "gru" | "lstm") by autograd through an unrolled loop.

    p:    object with U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None, V (K, H), c (K,) or None.
    xs:   token ids (T,) / (B, T) (integer dtype) or dense inputs (T, D) / (B, T, D).
    ys:   int labels (T,) / (B, T). mask: bool, shape of ys, or None.
    s0:   GRU: None, (H,) or (B, H). LSTM: None or a pair (h0, c0), each (H,) or (B, H), same shape.
          An (H,) part is shared by every sequence.
    truncate: None for full BPTT; tau >= 0 keeps, for each E_t, only the terms of steps k with
          t - tau <= k <= t, the chain running through the full state (h, and cell for the LSTM);
          this applies to U, W, b_ih, b_hh, xs and s0; V and c are unaffected.
    Returns GatedResult (see its docstring for shapes).
    """
    check_gated_params(cell, p)
    if truncate is not None and (
        isinstance(truncate, bool) or not isinstance(truncate, int | np.integer) or truncate < 0
    ):
        raise ValueError(f"truncate must be None or an integer >= 0, got {truncate!r}")
    step = STEPS[cell]
    U, W, V = (to_tensor(a, dtype, True) for a in (p.U, p.W, p.V))  # (G*H, D), (G*H, H), (K, H)
    b_ih = to_tensor(p.b_ih, dtype, True)  # (G*H,) or None
    b_hh = to_tensor(p.b_hh, dtype, True)  # (G*H,) or None
    c = to_tensor(p.c, dtype, True)  # (K,) or None
    tokens, batched, xs_leaf, xs_b = prepare_xs(xs, dtype, requires_grad=True)
    ys_b, weight = prepare_targets(ys, mask, reduction, dtype)  # (B, T), (B, T)
    B, T = ys_b.shape
    H = W.shape[1]
    s0_leaves = initial_leaves(cell, s0, H, B, batched, dtype, requires_grad=True)

    def start_state() -> tuple[Tensor, ...]:
        """The state before step 0, each part (B, H), in the graph of the s0 leaves."""
        return tuple(leaf.expand(B, H) for leaf in s0_leaves)

    if truncate is None or truncation.keeps_every_term(truncate, T):
        # Full BPTT (a window tau >= T - 1 keeps every term): one unrolled forward, one backward.
        state = start_state()  # state at t = -1
        E = torch.zeros((), dtype=dtype)
        for t in range(T):
            state = step(U, W, b_ih, b_hh, xs_b[:, t], state, tokens)  # state at t
            E = E + step_loss(V, c, state[0], ys_b[:, t], weight[:, t])  # E += E_t (o_t = V h_t + c)
        E.backward()
        loss = E.item()
        final = state
    else:
        # Truncated BPTT, tau < T - 1 (reference.truncation): the states, without a graph, then each
        # E_t differentiated through the steps max(0, t - tau) .. t only.
        with torch.no_grad():
            states = []  # states[t] = the full state at t, each part (B, H)
            state = start_state()
            for t in range(T):
                state = step(U, W, b_ih, b_hh, xs_b[:, t], state, tokens)
                states.append(state)

        def cell_step(x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return step(U, W, b_ih, b_hh, x_t, state, tokens)  # the state at t from the state at t - 1

        def E_t(state: tuple[Tensor, ...], targets_t: tuple[Tensor, Tensor]) -> Tensor:
            return step_loss(V, c, state[0], *targets_t)  # sum_b weight_t[b] * E_t[b] (o_t = V h_t + c)

        targets = (ys_b, weight)  # y_t and the weight of E_t[b], (B, T) each
        loss = truncation.truncated_windows(cell_step, start_state, states, xs_b, targets, truncate, E_t)
        final = states[-1]

    final_np = tuple(_numpy(part if batched else part[0]) for part in final)  # each (H,) or (B, H)
    ds0_np = tuple(_numpy(leaf.grad) for leaf in s0_leaves)
    grads = GatedGrads(
        U=_numpy(U.grad),
        W=_numpy(W.grad),
        b_ih=None if b_ih is None else _numpy(b_ih.grad),
        b_hh=None if b_hh is None else _numpy(b_hh.grad),
        V=_numpy(V.grad),
        c=None if c is None else _numpy(c.grad),
    )
    if cell == "gru":
        ds0, final_state = ds0_np[0], final_np[0]
    else:
        ds0, final_state = LSTMState(*ds0_np), LSTMState(*final_np)
    return GatedResult(
        loss=loss,
        grads=grads,
        ds0=ds0,
        dxs=None if xs_leaf is None else _numpy(xs_leaf.grad),
        final_state=final_state,
    )


def gru_bptt(
    p: GatedParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: np.ndarray | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
) -> GatedResult:
    """The GRU oracle: gated_bptt("gru", ...). p: U (3H, D), W (3H, H), b_ih, b_hh (3H,) or None,
    V (K, H), c (K,) or None. s0: None, (H,) or (B, H). ds0 and final_state are arrays."""
    return gated_bptt(
        "gru", p, xs, ys, s0=s0, truncate=truncate, reduction=reduction, mask=mask, dtype=dtype
    )


def lstm_bptt(
    p: GatedParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: tuple[np.ndarray, np.ndarray] | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
) -> GatedResult:
    """The LSTM oracle: gated_bptt("lstm", ...). p: U (4H, D), W (4H, H), b_ih, b_hh (4H,) or None,
    V (K, H), c (K,) or None. s0: None or (h0, c0), each (H,) or (B, H). ds0 = LSTMState(dh0, dc0),
    final_state = LSTMState(h_{T-1}, cell_{T-1})."""
    return gated_bptt(
        "lstm", p, xs, ys, s0=s0, truncate=truncate, reduction=reduction, mask=mask, dtype=dtype
    )


def bptt_cell(cell: str, p: Any, xs: np.ndarray, ys: np.ndarray, **kwargs: Any) -> Any:
    """The oracle for `cell`: "rnn" -> reference.bptt (Elman; RefResult), "gru" -> gru_bptt,
    "lstm" -> lstm_bptt (GatedResult). Keyword arguments are passed through unchanged, except
    `activation`, which belongs to the Elman cell only: for a gated cell it may be absent or None,
    any other value is a ValueError."""
    if cell == "rnn":
        return rnn_bptt(p, xs, ys, **kwargs)
    if cell in GATES:
        activation = kwargs.pop("activation", None)
        if activation is not None:
            raise ValueError(f"activation applies to the Elman cell only, got {activation!r} for {cell!r}")
        return gated_bptt(cell, p, xs, ys, **kwargs)
    raise ValueError(f"cell must be 'rnn', 'gru' or 'lstm', got {cell!r}")
