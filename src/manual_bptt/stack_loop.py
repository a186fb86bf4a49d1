"""The loop over the layers and directions of a stack, written once over the cells and drivers. numpy only.

Time-major inside: T steps, B sequences, layer l's input X_l (T, B, D_l), H_out the size of h_t,
S = H_out + (P-1)*H the state's numbers, mask (T, B) with mask[t, b] = t < n_b (None without
lengths). The reverse direction runs over the time axis flipped: with the state held at skipped
steps (drivers.run's mask), the flipped row b first holds h0 through its T - n_b padded steps,
then runs n_b - 1, ..., 1, 0: the reverse pass over the sequence's own steps, its last state
torch's h_n of that direction. The forward direction holds its state from n_b - 1 on. So the
final state of every direction is s_T of its run.

    forward:   X_0 = xs (0 past each length); for l = 0..L-1 and d in the directions:
                   run_ld = the cell over X_l (flipped when d = 1), from s0 row l*dirs + d
                   H_ld   = its outputs h_t (flipped back when d = 1), 0 past each length
               X_{l+1} = [H_l0, H_l1] along the last axis; outputs = X_L
    backward:  up = dhs (0 past each length); for l = L-1..0 and d:
                   the h part of dE/ds_t from above = up's columns of d (flipped when d = 1);
                   d_final row l*dirs + d enters at the sequence's own last step
                   drivers.backprop (or the fast path) -> dgi, dgh, ds0; the weight gradients
                   and dX_ld = dE/dX_l through direction d (flipped back when d = 1)
               up = sum_d dX_ld (the gradient of layer l-1's outputs); dxs = up below layer 0

Each (layer, direction) runs on one of three engines: the gated fast path (fast.gated) or the
Elman one (fast.elman) when the call has no lengths, no projection and is not truncated, and
otherwise the generic drivers over the spec cells (drivers.run / backprop / weight_grads, with
the step mask, the truncation, and the projection's dE/dh_t for dW_hr).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import Batch
from .activations import get_activation
from .cells import ELMAN, GRU, LSTM, Cell, StepWeights
from .drivers import backprop, input_terms, projection_grad, run, weight_grads
from .errors import QUIET, NonFiniteError, first_nonfinite
from .fast import gated as fast_gated
from .fast.elman import run_forward, trace_backward
from .params import RNNParams
from .stack_params import StackParams, direction_name

CELLS: dict[str, Cell] = {"rnn": ELMAN, "gru": GRU, "lstm": LSTM}


@dataclass(frozen=True, eq=False)
class Weights:
    """One direction of one layer in the compute dtype, as its engine reads it.

    Attributes:
        U (G*H, D_l), W (G*H, H_out), b_ih, b_hh (G*H,) or None, W_hr (H_out, H) or None.
        w: the recurrent weights of the spec cell (cells.base.StepWeights).
    """

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    W_hr: np.ndarray | None
    w: StepWeights


def weights(p: StackParams, layer: int, d: int, dtype: np.dtype) -> Weights:
    """Layer l, direction d's arrays in ``dtype`` (no copy when they have it already)."""
    lw = p.layers[layer][d]

    def cast(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a, dtype=dtype)

    U, W, b_ih, b_hh, W_hr = (cast(a) for a in (lw.U, lw.W, lw.b_ih, lw.b_hh, lw.W_hr))
    act = get_activation(p.nonlinearity) if p.cell == "rnn" else None
    w = StepWeights(
        W=W,
        WT=np.ascontiguousarray(W.T),
        b_hh=b_hh,
        H=p.hidden_size,
        act=act,
        W_hr=W_hr,
        W_hrT=None if W_hr is None else np.ascontiguousarray(W_hr.T),
    )
    return Weights(U=U, W=W, b_ih=b_ih, b_hh=b_hh, W_hr=W_hr, w=w)


@dataclass(eq=False)
class DirectionRun:
    """The forward pass of one direction of one layer, in its own time order (flipped for the
    reverse direction), and what its backward pass needs.

    Attributes:
        layer, d: where it is.  engine: "gated", "elman" (the fast paths) or "drivers".
        wt: its weights.  tokens (T, B) or X (T, B, D_l): its input.  mask: (T, B) or None.
        state: the engine's forward (fast.gated.FastForward, fast.elman.Trace, drivers.Run).
        outputs: (T, B, H_out) h_t.  final: (B, S) the last state (s_T of the run).
        batch: the Elman fast path's Batch (None otherwise).
    """

    layer: int
    d: int
    engine: str
    wt: Weights
    tokens: np.ndarray | None
    X: np.ndarray | None
    mask: np.ndarray | None
    state: Any
    outputs: np.ndarray
    final: np.ndarray
    batch: Batch | None = None


@contextmanager
def where(layer: int, d: int, T: int) -> Iterator[None]:
    """A NonFiniteError raised inside names the layer and the direction (and, for the reverse
    direction, the step in the sequence's order, not the flipped one)."""
    try:
        yield
    except NonFiniteError as exc:
        step = exc.step
        if step is not None and d == 1:
            step = T - 1 - step
        at = "" if step is None else f" at step t = {step}"
        what = "s_t" if exc.what == "z_t" else exc.what  # the fast path's name for the state
        raise NonFiniteError(
            f"layer {layer}, {direction_name(d)} direction: {what} is not finite (NaN or inf){at}: "
            "the computation overflowed; scale the parameters or inputs down, or use float64",
            what=what,
            step=step,
        ) from None


def _check_finite(what: str, a: np.ndarray) -> None:
    """NonFiniteError naming ``what`` and the first step of a (T, ...) that is not finite."""
    t = first_nonfinite(a)
    if t is not None:
        raise NonFiniteError(f"{what}: not finite at step t = {t}", what=what, step=t)


def forward_direction(
    p: StackParams,
    layer: int,
    d: int,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
    mask: np.ndarray | None,
    s0: np.ndarray,
    engine: str,
) -> DirectionRun:
    """Run layer l, direction d over its input (already in its own time order) from s0 (B, S)."""
    dtype = s0.dtype
    wt = weights(p, layer, d, dtype)
    H, H_out = p.hidden_size, p.out_size
    T = (tokens if tokens is not None else X).shape[0]
    with np.errstate(**QUIET), where(layer, d, T):
        if engine == "gated":
            fw = fast_gated.forward(p.cell == "lstm", wt.U, wt.W, wt.b_ih, wt.b_hh, tokens, X, s0)
            return DirectionRun(layer, d, engine, wt, tokens, X, mask, fw, fw.hs[1:], fw.final_state())
        if engine == "elman":
            batch = _elman_batch(p, tokens, X, s0)
            b = None if wt.b_ih is None else wt.b_ih + wt.b_hh  # a_t = U x_t + (b_ih + b_hh) + W s_{t-1}
            one = RNNParams._adopt(U=wt.U, W=wt.W, V=np.zeros((1, H), dtype=dtype), b=b, c=None)
            tr = run_forward(one, batch, keep_a=False)
            return DirectionRun(layer, d, engine, wt, tokens, X, mask, tr, tr.s, tr.s[-1].copy(), batch)
        cell = CELLS[p.cell]
        gi = input_terms(wt.U, wt.b_ih, tokens, X)  # gi_t = U x_t + b_ih, (T, B, G*H)
        r = run(cell, wt.w, gi, s0, mask=mask)
        del gi
        _check_finite("s_t", r.s[1:])
        return DirectionRun(layer, d, engine, wt, tokens, X, mask, r, r.outputs(H_out), r.s[-1].copy())


def _elman_batch(p: StackParams, tokens: np.ndarray | None, X: np.ndarray | None, s0: np.ndarray) -> Batch:
    """The Elman fast path's Batch for one direction's input (time-major, batched)."""
    T, B = (tokens if tokens is not None else X).shape[:2]
    D = p.input_size if tokens is not None else X.shape[2]
    H = p.hidden_size
    return Batch(
        batched=True,
        T=T,
        B=B,
        D=D,
        H=H,
        K=1,
        tokens=tokens,
        X=X,
        Y=None,
        weight=None,
        s0=s0,
        s0_shape=(B, H),
        dtype=s0.dtype,
        act=get_activation(p.nonlinearity),
    )


def backward_direction(
    p: StackParams,
    r: DirectionRun,
    up: np.ndarray,
    d_final: np.ndarray | None,
    last: np.ndarray,
    tau: int | None,
) -> tuple[dict[str, np.ndarray | None], np.ndarray | None, np.ndarray]:
    """The backward pass of one direction of one layer, in its own time order.

    Args:
        r: its forward pass.  up: (T, B, H_out) dE/dh_t from above (0 past each length).
        d_final: (B, S) the gradient of its final state, or None.
        last: (B,) the step of its run at which each sequence's final state is computed (the
            sequence's own last step: n_b - 1 forward, T - 1 on the flipped axis in reverse).
        tau: None (full) or the truncation.

    Returns:
        (the gradients as LayerWeights fields U, W, b_ih, b_hh, W_hr (None where absent),
         dX (T, B, D_l) or None for token ids, ds0 (B, S)).
    """
    wt, T = r.wt, r.outputs.shape[0]
    bias = wt.b_ih is not None
    with np.errstate(**QUIET), where(r.layer, r.d, T):
        if r.engine == "gated":
            B, D = r.outputs.shape[1], wt.U.shape[1]
            dX = None if r.X is None else np.empty((T, B, D), dtype=up.dtype)

            def from_above(start: int, end: int, out: np.ndarray) -> float:
                np.copyto(out, up[start:end])  # dE/dh_t from above
                return 0.0

            sw = fast_gated.backward(r.state, wt.U, wt.W, bias, r.tokens, r.X, from_above, d_final, dX)
            fields = {"U": sw.dU, "W": sw.dW, "b_ih": sw.db_ih, "b_hh": sw.db_hh, "W_hr": None}
            return fields, dX, sw.ds0
        if r.engine == "elman":
            dU, dW, db, ds0, dxs = trace_backward(r.state, up, d_final)
            dX = None if dxs is None else dxs.swapaxes(0, 1)  # (T, B, D_l)
            # a_t = U x_t + b_ih + W s_{t-1} + b_hh: both biases receive dE/db, the one sum's
            fields = {"U": dU, "W": dW, "b_ih": db, "b_hh": None if db is None else db.copy(), "W_hr": None}
            return fields, dX, ds0
        cell, w, run_ = CELLS[p.cell], wt.w, r.state
        H_out = p.out_size
        ds_direct = np.zeros(
            run_.s[1:].shape, dtype=up.dtype
        )  # (T, B, S): from above, not through the recurrence
        ds_direct[:, :, :H_out] = up  # the h part; nothing reaches c_t but through h_t
        if d_final is not None:
            ds_direct[last, np.arange(len(last))] += d_final  # at each sequence's own last step
        dh = None if wt.W_hr is None else np.zeros((T, *up.shape[1:]), dtype=up.dtype)
        dgi, dgh, ds0 = backprop(cell, w, run_, ds_direct, truncate=tau, mask=r.mask, dh_out=dh)
        del ds_direct
        _check_finite("dE/dgh_t", dgh)
        dU, db_ih, dW, db_hh, dX = weight_grads(dgi, dgh, run_.h_prev(H_out), wt.U, r.tokens, r.X)
        dW_hr = None
        if dh is not None:
            m = np.stack([cell.output_input(cache) for cache in run_.caches])  # m_t (T, B, H)
            dW_hr = projection_grad(dh, m)  # dW_hr = sum_t dh_t^T m_t
        fields = {
            "U": dU,
            "W": dW,
            "b_ih": db_ih if bias else None,
            "b_hh": db_hh if bias else None,
            "W_hr": dW_hr,
        }
        return fields, dX, ds0


def flip(a: np.ndarray | None, d: int) -> np.ndarray | None:
    """a (T, ...) in direction d's time order: the time axis reversed for the reverse direction."""
    return a if a is None or d == 0 else a[::-1]


def run_stack(
    p: StackParams,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
    mask: np.ndarray | None,
    s0: np.ndarray,
    engine: str,
) -> tuple[list[list[DirectionRun]], np.ndarray]:
    """The forward pass of every layer and direction.

    Args:
        tokens (T, B) or X (T, B, D): layer 0's input (0 past each length).  mask: (T, B) or None.
        s0: (L*dirs, B, S) the initial state of every layer and direction, [h0; c0] for the LSTM.
        engine: "fast" (the fast paths: no mask, no projection) or "drivers".

    Returns:
        (runs[l][d], the top layer's outputs (T, B, dirs * H_out), 0 past each length).
    """
    dirs, H_out = p.directions, p.out_size
    fast = {"rnn": "elman", "gru": "gated", "lstm": "gated"}[p.cell] if engine == "fast" else "drivers"
    runs = []
    for layer in range(p.num_layers):
        row = []
        T, B = (tokens if tokens is not None else X).shape[:2]
        out = np.empty((T, B, dirs * H_out), dtype=s0.dtype)  # X_{l+1}: [forward, reverse]
        for d in range(dirs):
            r = forward_direction(
                p, layer, d, flip(tokens, d), flip(X, d), flip(mask, d), s0[layer * dirs + d], fast
            )
            out[:, :, d * H_out : (d + 1) * H_out] = flip(r.outputs, d)
            row.append(r)
        if mask is not None:
            np.copyto(out, 0, where=~mask[:, :, None])  # outputs past each length are 0
        runs.append(row)
        tokens, X = None, out
    return runs, X


def backprop_stack(
    p: StackParams,
    runs: list[list[DirectionRun]],
    up: np.ndarray,
    d_final: np.ndarray | None,
    lengths: np.ndarray | None,
    tau: int | None,
) -> tuple[StackParams, np.ndarray | None, np.ndarray]:
    """The backward pass of every layer and direction, the top layer first (runs are freed).

    Args:
        runs: run_stack's.  up: (T, B, dirs * H_out) dE/d outputs of the top layer, 0 past each
            length.  d_final: (L*dirs, B, S) the gradient of every final state, or None.
        lengths: (B,) or None.  tau: None or the truncation (one direction only).

    Returns:
        (the gradients, a StackParams without V and c; dxs (T, B, D) or None for token ids;
         ds0 (L*dirs, B, S)).
    """
    dirs, H_out = p.directions, p.out_size
    T, B = up.shape[:2]
    last = [np.full(B, T - 1) if lengths is None else lengths - 1, np.full(B, T - 1)]  # per direction
    grads: list[list[dict]] = [[] for _ in range(p.num_layers)]
    ds0 = [None] * (p.num_layers * dirs)
    for layer in reversed(range(p.num_layers)):
        below = None
        for d in range(dirs):
            r = runs[layer][d]
            k = layer * dirs + d
            fields, dX, ds0[k] = backward_direction(
                p, r, flip(up[:, :, d * H_out : (d + 1) * H_out], d), None if d_final is None else d_final[k],
                last[d], tau,
            )  # fmt: skip
            grads[layer].append(fields)
            if dX is not None:
                dX = flip(dX, d)
                below = dX if below is None else below + dX  # dE/dX_l, both directions' paths
        runs[layer] = []  # this layer's caches are needed no more
        up = below
    return StackParams._adopt(p.cell, p.nonlinearity, grads), up, np.stack(ds0)
