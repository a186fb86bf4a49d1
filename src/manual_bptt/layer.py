"""One public API over every cell, and the backward pass of the recurrent layer alone. numpy only.

    bptt(p, xs, ys, ...)         loss and exact gradients, the cell chosen by the type of p
    forward(p, xs, ...)          the forward pass, likewise
    backward(p, xs, dhs, ...)    the vector-Jacobian product of the recurrent layer alone

p is an RNNParams (the Elman cell), a GRUParams, an LSTMParams or a StackParams (a stack of
layers, torch's nn.RNN / nn.GRU / nn.LSTM of any shape: manual_bptt.stack): each call runs what
p's row in manual_bptt.kinds names. ``activation`` belongs to the Elman cell (None means "tanh");
with a gated cell or a StackParams (which holds its own) any value but None is a ValueError.
``lengths`` (variable-length batches) is a StackParams's: a ValueError with the one-layer types
(StackParams.from_params converts them).

The layer backward has no output layer and no labels. With h_t the layer's output at step t
(s_t for the Elman cell) and s_{T-1} its final state (h_{T-1}; the pair (h_{T-1}, c_{T-1}) for
the LSTM, c_t its cell state), it differentiates

    L = sum_t <dhs_t, h_t> + <d_final, s_{T-1}>

by the same reverse recursion as bptt: bptt is this backward with dhs_t = V^T dE/do_t, plus the
output layer's dV and dc. ``truncate=tau`` keeps, for every t, exactly the steps k with
t - tau <= k <= t of the chain of dhs_t, through the full state. d_final is treated as part of
the upstream gradient of step T - 1: under truncation its chain keeps the steps
T-1-tau <= k <= T-1, like that of dhs_{T-1} (with full BPTT this is simply the whole chain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import elman, gated, stack
from ._inputs import check_truncate, real_array
from .errors import DEFAULT_MAX_BYTES, check_max_bytes
from .gated_params import GRUParams, LSTMParams, LSTMState
from .kinds import Kind, kind_of
from .params import RNNParams
from .stack_params import StackParams

AnyParams = RNNParams | GRUParams | LSTMParams | StackParams


def _lengths(kind: Kind, lengths: object | None) -> dict[str, object]:
    """The ``lengths=`` argument for the front of p's row: only a stack's takes one."""
    if kind.stacked:
        return {"lengths": lengths}
    if lengths is not None:
        raise ValueError(
            "lengths: variable lengths are a stack's (manual_bptt.StackParams); a one-layer p converts by "
            "StackParams.from_params(p)"
        )
    return {}


def bptt(
    p: AnyParams,
    xs: object,
    ys: object,
    *,
    s0: object | None = None,
    lengths: object | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    activation: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> elman.BPTTResult | gated.GatedBPTTResult | stack.StackBPTTResult:
    """Loss and exact gradients by backpropagation through time, for any cell.

    Args:
        p: RNNParams (U (H, D), W (H, H), b (H,) or None, V (K, H), c (K,) or None), or
            GRUParams / LSTMParams (U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None,
            V (K, H), c (K,) or None; G = 3 for r, z, n, G = 4 for i, f, g, o), or a
            StackParams with its output layer V (see manual_bptt.stack.bptt: s0 in torch's
            (L * dirs, B, H_out) layout, lengths, truncation for one direction).
        xs: int token ids (T,) or (B, T) in [0, D), or float dense inputs (T, D) or (B, T, D).
        ys: int labels in [0, K), (T,) or (B, T) matching xs.
        s0: None (zeros); Elman and GRU an array (H,) or (B, H); LSTM an LSTMState(h0, c0)
            or a pair (h0, c0), parts of one shape (H,) or (B, H).
        lengths: a StackParams's only: None, or (B,) integers 1 <= n_b <= T.
        truncate: None (full BPTT) or tau >= 0: for every E_t exactly the terms of the steps
            t - tau <= k <= t, the chain running through the full state.
        reduction: "sum" or "mean".  mask: None or bool like ys.
        activation: the Elman cell's f ("tanh", "sigmoid", "relu", "identity"; None: "tanh");
            must be None for a gated cell.
        max_bytes: the size limit, checked before allocating.

    Returns:
        elman.BPTTResult (Elman) or gated.GatedBPTTResult (GRU, LSTM): loss, grads (the type of
        p), ds0 (LSTMState(dh0, dc0) for the LSTM), dxs ((T, D) / (B, T, D), or None for
        tokens), final_state (LSTMState(h_{T-1}, c_{T-1}) for the LSTM).
    """
    kind = kind_of(p)
    return kind.bptt(
        p,
        xs,
        ys,
        s0=s0,
        truncate=truncate,
        reduction=reduction,
        mask=mask,
        activation=activation,
        max_bytes=max_bytes,
        **_lengths(kind, lengths),
    )


def forward(
    p: AnyParams,
    xs: object,
    *,
    s0: object | None = None,
    lengths: object | None = None,
    activation: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> elman.ForwardResult | gated.GatedForwardResult | stack.StackForwardResult:
    """The forward pass of any cell (no labels): states and logits, batch-first when batched.

    Args:
        p, xs, s0, lengths, activation, max_bytes: as for :func:`bptt` (a StackParams needs no V).

    Returns:
        elman.ForwardResult (a, s (T, H) / (B, T, H); o, y_hat (T, K) / (B, T, K); final_state)
        for the Elman cell; gated.GatedForwardResult (h, cell_state (the LSTM's c_t, else None),
        o, y_hat, final_state) for the GRU and the LSTM; stack.StackForwardResult (outputs,
        h_n, c_n, o, y_hat) for a StackParams.
    """
    kind = kind_of(p)
    return kind.forward(p, xs, s0=s0, activation=activation, max_bytes=max_bytes, **_lengths(kind, lengths))


@dataclass(frozen=True, eq=False)
class LayerResult:
    """The vector-Jacobian product of a recurrent layer (see :func:`backward`).

    Attributes:
        grads: dL/dθ as the type of p: U, W and the biases (b; or b_ih, b_hh), each in the
            parameter's shape (None where p has none); V and c are None.
        dxs: dL/dxs, the shape of xs, for dense inputs; None for token ids.
        ds0: dL/ds0 in the shape s0 was given ((H,) or (B, H) when None); LSTMState(dh0, dc0)
            for the LSTM.
        hs: the outputs h_t (s_t for the Elman cell), (T, H) or (B, T, H).
        final_state: (H,) or (B, H); LSTMState(h_{T-1}, c_{T-1}) for the LSTM.
    """

    grads: AnyParams
    dxs: np.ndarray | None
    ds0: np.ndarray | LSTMState
    hs: np.ndarray
    final_state: np.ndarray | LSTMState


def _final_parts(kind: Kind, d_final: object) -> list[tuple[str, np.ndarray]]:
    """d_final as its named parts: [("d_final", dh)]; for the LSTM, whose state has two parts,
    [("d_final.h", dh), ("d_final.c", dc)]."""
    if kind.cell.parts == 2:
        if not isinstance(d_final, tuple) or len(d_final) != 2:
            raise ValueError(
                "d_final: the LSTM's final-state gradient is a pair, manual_bptt.LSTMState(dh, dc) or a "
                f"tuple (dh, dc), got {type(d_final).__name__}"
                + (f" of length {len(d_final)}" if isinstance(d_final, tuple) else "")
            )
        return [
            ("d_final.h", real_array("d_final.h", d_final[0])),
            ("d_final.c", real_array("d_final.c", d_final[1])),
        ]
    if isinstance(d_final, LSTMState):
        raise ValueError(
            "d_final: an LSTMState is the LSTM's; this cell's final state is one array (H,) or (B, H)"
        )
    return [("d_final", real_array("d_final", d_final))]


def _compute_dtype(p: AnyParams, arrays: list[np.ndarray]) -> np.dtype | None:
    """float64 when p is float32 but an upstream array is not (float32 only when every
    floating input is); None when no cast of p is needed."""
    if np.dtype(p.dtype) != np.float32:
        return None
    wider = any(np.issubdtype(a.dtype, np.floating) and a.dtype != np.float32 for a in arrays)
    return np.dtype(np.float64) if wider else None


def backward(
    p: AnyParams,
    xs: object,
    dhs: object,
    *,
    s0: object | None = None,
    d_final: object | None = None,
    lengths: object | None = None,
    truncate: int | None = None,
    activation: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LayerResult | stack.StackLayerResult:
    """The vector-Jacobian product of the recurrent layer alone: no output layer, no labels.

        L = sum_t <dhs_t, h_t> + <d_final, s_{T-1}>

    with h_t the layer's output (s_t for the Elman cell) and s_{T-1} the final state
    (the pair (h_{T-1}, c_{T-1}) for the LSTM). A StackParams takes its own layout (see
    manual_bptt.stack.backward: dhs (B, T, dirs * H_out), d_final of every layer's final state
    (L * dirs, B, H_out), lengths) and returns a stack.StackLayerResult.

    Args:
        p: RNNParams, GRUParams or LSTMParams (V and c are ignored), or a StackParams.
        xs: int token ids (T,) or (B, T) in [0, D), or float dense inputs (T, D) or (B, T, D).
        dhs: (T, H) or (B, T, H) (as xs is batched or not): dL/dh_t arriving at every output
            from above (not through the recurrence); finite real numbers.
        s0: as for :func:`bptt`.
        d_final: None (zeros), or dL/ds_{T-1} arriving at the final state: (H,) unbatched or
            (B, H) batched; for the LSTM an LSTMState(dh, dc) or a pair (dh, dc) of such arrays.
        truncate: None (full) or tau >= 0: for every t exactly the steps t - tau <= k <= t of
            the chain of dhs_t, through the full state; d_final belongs to step T - 1 (its chain
            keeps the steps T-1-tau <= k <= T-1).
        activation: the Elman cell's f (None: "tanh"); must be None for a gated cell.
        max_bytes: refuse, before allocating, a call whose arrays would pass this many bytes.

    Returns:
        LayerResult (grads, dxs, ds0, hs, final_state), in float32 only when every floating
        input (p, xs, s0, dhs, d_final) is float32.

    Raises:
        ValueError naming the argument for malformed input (dhs, d_final, ...); TooLargeError
        over max_bytes; NonFiniteError naming the first step that overflowed.
    """
    kind = kind_of(p)
    if kind.stacked:  # the stack's front reads every argument itself, in torch's layout
        return kind.backward(
            p, xs, dhs, s0=s0, d_final=d_final, lengths=lengths, truncate=truncate, activation=activation,
            max_bytes=max_bytes,
        )  # fmt: skip
    _lengths(kind, lengths)
    tau = check_truncate(truncate)
    limit = check_max_bytes(max_bytes)
    dhs_arr = real_array("dhs", dhs)
    final_parts = [] if d_final is None else _final_parts(kind, d_final)
    cast = _compute_dtype(p, [dhs_arr, *(a for _, a in final_parts)])
    if cast is not None:
        p = p.astype(cast)
    grads, dxs, ds0, hs, final = kind.backward(p, xs, dhs_arr, final_parts, s0, tau, activation, limit)
    return LayerResult(grads=grads, dxs=dxs, ds0=ds0, hs=hs, final_state=final)
