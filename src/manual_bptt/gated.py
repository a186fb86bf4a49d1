"""The gated cells' front (GRU, LSTM): bptt, forward, the layer backward and the inputs of the generic
drivers: validation, sizes refused before allocating, results. numpy only. Every function takes
the cell (cells.GRU or cells.LSTM) from its row in manual_bptt.kinds.

Model (torch's nn.GRU / nn.LSTM layer 0, see gated_params and cells.gru / cells.lstm), then the
output layer of the Elman model:

    s_t = cell(U x_t + b_ih, W h_{t-1} + b_hh, s_{t-1})     s_t = h_t (GRU) or [h_t; c_t] (LSTM)
    o_t = V h_t + c        y_hat_t = softmax(o_t)        E = sum_t w_t E_t,  E_t = -log y_hat_t[y_t]

Names: o_t are the logits and c the output bias, as for the Elman cell; the LSTM's output gate
is gate_o and its cell state c_t (the second part of LSTMState), never o or c.

Backward: full BPTT runs the fast path (manual_bptt.fast.gated: preallocated buffers, one stacked
product per step, blocks of steps); truncated BPTT runs the generic drivers (manual_bptt.drivers)
over the spec cells, from the fast path's forward states. Both compute:

    dE/do_t = w_t (y_hat_t - onehot(y_t))      dE_t/dh_t = V^T dE/do_t   (direct, into the h part)
    g_t = dE/ds_t = direct + carried;  (g_{t-1}, dgi_t, dgh_t) = cell.backward(g_t)
    dU = sum_t dgi_t^T x_t   db_ih = sum_t dgi_t   dW = sum_t dgh_t^T h_{t-1}   db_hh = sum_t dgh_t
    dV = sum_t dE/do_t h_t^T   dc = sum_t dE/do_t   ds0 = g_{-1}   dE/dx_t = dgi_t U

truncate=tau keeps, for every E_t, exactly the terms t - tau <= k <= t of the sum over k, the
chain running through the full state s (h and c for the LSTM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._inputs import Batch, Sizes, prepare, real_array, upstream_gradients
from .cells.base import Cell, StepWeights
from .cells.lstm import LSTM
from .drivers import CellInputs, Run, backprop, input_terms, weight_grads
from .errors import DEFAULT_MAX_BYTES, QUIET, check_bytes, check_grads_finite, check_max_bytes, integer_arg
from .fast import gated as fast
from .fast.blocks import input_grad_arrays
from .gated_params import GRUParams, LSTMParams, LSTMState
from .output import logits, output_layer, raise_loss_overflow, raise_loss_sum_overflow, softmax

GatedParams = GRUParams | LSTMParams
GatedState = np.ndarray | LSTMState

#: Numbers per (t, b) row that a call keeps besides the logits, in units of H: the input terms
#: gi (G), the states s (P), the caches (GRU: gh and n, 4; LSTM: the gates and tanh(c_t), 5) and
#: dgi, dgh (2G), plus a (P)-wide direct gradient. GRU 3+1+4+6+1, LSTM 4+2+5+8+2.
_ROW_NUMBERS = {"gru": 15, "lstm": 21}
#: Bytes per step for the Python objects of a step's cache (measured: 500-800 at H = 3).
_STEP_BYTES = 1024


@dataclass(frozen=True, eq=False)
class GatedInputs:
    """Validated inputs of a gated cell, time-major, in the compute dtype.

    Attributes:
        batch: the checked xs, ys, mask and reduction (manual_bptt._inputs.Batch; its s0 is unused).
        cell: GRU or LSTM.  H: hidden size.  dtype: the compute dtype.
        X: (T, B, D) dense inputs in dtype, or None for tokens (batch.tokens (T, B)).
        weight: (T, B) weight of each E_t in dtype, or None without labels.
        s0: (B, S) initial state of every row, S = H (GRU) or 2H (LSTM, [h0; c0]).
        s0_shape: the shape s0 (or each of its parts) was given in: (H,) or (B, H).
        U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or None, V (K, H), c (K,) or None: in dtype.
    """

    batch: Batch
    cell: Cell
    H: int
    dtype: np.dtype
    X: np.ndarray | None
    weight: np.ndarray | None
    s0: np.ndarray
    s0_shape: tuple[int, ...]
    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    V: np.ndarray
    c: np.ndarray | None

    def step_weights(self) -> StepWeights:
        """The recurrent weights W, W^T, b_hh for cell.forward / cell.backward."""
        return StepWeights(W=self.W, WT=np.ascontiguousarray(self.W.T), b_hh=self.b_hh, H=self.H)

    def input_terms(self) -> np.ndarray:
        """gi_t = U x_t + b_ih, (T, B, G*H)."""
        return input_terms(self.U, self.b_ih, self.batch.tokens, self.X)

    def _fold(self, a: np.ndarray) -> np.ndarray:
        """(B, H) gradient of the per-row initial state -> the shape s0 was given in."""
        if self.s0_shape == (self.H,):
            return a.sum(axis=0) if self.batch.batched else a[0].copy()
        return a.copy()

    def fold_ds0(self, ds0: np.ndarray) -> GatedState:
        """dE/ds0 (B, S) per row -> ds0 as s0 was given: an array (GRU), LSTMState(dh0, dc0) (LSTM)."""
        H = self.H
        if self.cell is LSTM:
            return LSTMState(self._fold(ds0[:, :H]), self._fold(ds0[:, H:]))
        return self._fold(ds0)

    def to_batch_first(self, a: np.ndarray) -> np.ndarray:
        """(T, B, ...) -> the caller's layout: (B, T, ...) if batched, else (T, ...)."""
        return self.batch.to_batch_first(a)

    def state_out(self, s: np.ndarray) -> GatedState:
        """A state s (B, S) in the caller's layout: (H,) or (B, H); LSTMState(h, c) for the LSTM."""
        H = self.H

        def part(a: np.ndarray) -> np.ndarray:
            return a.copy() if self.batch.batched else a[0].copy()

        if self.cell is LSTM:
            return LSTMState(part(s[:, :H]), part(s[:, H:]))
        return part(s)


def _state_parts(cell: Cell, s0: object) -> list[tuple[str, np.ndarray]]:
    """s0 as its named parts: [("s0", h0)] for the GRU, [("s0.h", h0), ("s0.c", c0)] for the LSTM."""
    if cell is LSTM:
        if not isinstance(s0, tuple) or len(s0) != 2:
            raise ValueError(
                "s0: the LSTM's initial state is a pair, manual_bptt.LSTMState(h, c) or a tuple (h, c), "
                f"got {type(s0).__name__}" + (f" of length {len(s0)}" if isinstance(s0, tuple) else "")
            )
        return [("s0.h", real_array("s0", s0[0])), ("s0.c", real_array("s0", s0[1]))]
    if isinstance(s0, LSTMState):
        raise ValueError("s0: the GRU's initial state is one array h0 (H,) or (B, H), got an LSTMState")
    return [("s0", real_array("s0", s0))]


def _initial_state(cell: Cell, s0: object, H: int, B: int, batched: bool) -> tuple[list[np.ndarray], tuple]:
    """The parts of s0 as given (checked: shape (H,) or (B, H), finite, equal shapes) and that shape."""
    if s0 is None:
        return [], (B, H) if batched else (H,)
    parts = _state_parts(cell, s0)
    allowed = [(H,)] + ([(B, H)] if batched else [])
    for name, a in parts:
        if a.shape not in allowed:
            want = " or ".join(str(s) for s in allowed)
            raise ValueError(f"s0: {name} expected shape {want} (H = {H}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(f"s0: {name} contains NaN or inf (first at index {bad})")
    if len(parts) == 2 and parts[0][1].shape != parts[1][1].shape:
        raise ValueError(
            f"s0: h and c must have the same shape, got h {parts[0][1].shape} and c {parts[1][1].shape}"
        )
    return [a for _, a in parts], parts[0][1].shape


def prepare_gated(
    cell: Cell,
    p: GatedParams,
    xs: object,
    ys: object | None,
    *,
    s0: object | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    activation: object | None = None,
    labels_required: bool = True,
    size_check: Callable[[Sizes, np.dtype], None] | None = None,
) -> GatedInputs:
    """Validate the inputs of a gated cell; every malformed one is a ValueError naming it.

    Args:
        cell: GRU or LSTM.  p: its parameters, GRUParams or LSTMParams.
        xs, ys, mask, reduction: as for the Elman cell (manual_bptt._inputs.prepare).
        s0: None (zeros); GRU: h0 (H,) or (B, H); LSTM: LSTMState(h0, c0) or a tuple (h0, c0),
            parts of one shape (H,) or (B, H). An (H,) s0 with batched xs is shared by every row.
        activation: must be None: the gated cells fix their nonlinearities.
        labels_required: when True, ys=None is an error.
        size_check: called with the Sizes and the compute dtype once the shapes of xs and s0
            are read, before any value of xs or ys is scanned or copied: where a call too
            large to run is refused.
    """
    if activation is not None:
        raise ValueError(
            f"activation: applies to the Elman cell only (RNNParams); a gated cell fixes its own "
            f"nonlinearities, so pass no activation, got {activation!r}"
        )
    state: list = []  # [the parts of s0, their shape, the compute dtype], read from the shapes

    def read_state(sz: Sizes) -> None:
        parts, s0_shape = _initial_state(cell, s0, sz.H, sz.B, sz.batched)
        floats = [sz.dtype, *(a.dtype for a in parts if np.issubdtype(a.dtype, np.floating))]
        dtype = np.dtype(np.result_type(*floats))
        if dtype not in (np.float32, np.float64):  # as _inputs.prepare: a longdouble s0 computes in float64
            dtype = np.dtype(np.float64)
        if size_check is not None:
            size_check(sz, dtype)
        state.extend((parts, s0_shape, dtype))

    batch = prepare(
        p,
        xs,
        ys,
        activation="tanh",
        s0=None,
        reduction=reduction,
        mask=mask,
        labels_required=labels_required,
        size_check=read_state,
    )
    parts, s0_shape, dtype = state
    H, B = batch.H, batch.B
    s0_rows = np.zeros((B, cell.parts * H), dtype=dtype)
    for j, a in enumerate(parts):
        s0_rows[:, j * H : (j + 1) * H] = a  # broadcasts an (H,) part over the rows
    X = None if batch.X is None else np.asarray(batch.X, dtype=dtype)
    weight = batch.weight
    if weight is not None and weight.dtype != dtype:  # s0 widened the computation: 1/n in that dtype
        counted = weight != 0  # the weights are 1, or 1/n with reduction="mean", where counted
        weight = counted.astype(dtype)
        if reduction == "mean":
            weight /= int(counted.sum())

    def cast(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a, dtype=dtype)

    return GatedInputs(
        batch=batch,
        cell=cell,
        H=H,
        dtype=dtype,
        X=X,
        weight=weight,
        s0=s0_rows,
        s0_shape=tuple(s0_shape),
        U=cast(p.U),
        W=cast(p.W),
        b_ih=cast(p.b_ih),
        b_hh=cast(p.b_hh),
        V=cast(p.V),
        c=cast(p.c),
    )


def check_size(cell: Cell, sz: Sizes, dtype: np.dtype, max_bytes: int, what: str, extra: int = 0) -> None:
    """Refuse, from the shapes alone (prepare_gated's size_check), a call whose per-step arrays
    would pass max_bytes.

    Per step: B rows of k*H + K numbers (k from _ROW_NUMBERS), 2D more for dense inputs (xs in
    the compute dtype and dxs), and _STEP_BYTES for the step's cache objects themselves;
    ``extra``: more numbers per (t, b) row, in units of H (1 for the layer backward's outputs h_t).
    """
    k = _ROW_NUMBERS[cell.name] + extra
    dense = 0 if sz.tokens else 2 * sz.D
    per_step = sz.B * (k * sz.H + sz.K + dense) + -(-_STEP_BYTES // dtype.itemsize)
    check_bytes(
        f"{what} ({cell.name}): the states, caches, gradients and logits, T steps of "
        f"B*({k}*H + K{' + 2*D' if dense else ''}) numbers and {_STEP_BYTES} bytes of cache objects each",
        (sz.T, per_step),
        dtype,
        max_bytes,
        hint="split the sequence into chunks (pass final_state on as s0), or pass a larger max_bytes",
    )


def run_checked(g: GatedInputs) -> tuple[StepWeights, Run]:
    """The recurrent weights and the forward run for the generic drivers (truncated BPTT).

    The run is the fast path's forward (NonFiniteError "z_t" on overflow) seen as the spec's
    per-step caches (fast.spec_run), so every method reports the same states.
    """
    return g.step_weights(), fast.spec_run(fast_forward(g))


def fast_forward(g: GatedInputs) -> fast.FastForward:
    """The forward pass of the fast path over validated inputs (NonFiniteError "z_t" on overflow)."""
    b = g.batch
    return fast.forward(g.cell is LSTM, g.U, g.W, g.b_ih, g.b_hh, b.tokens, g.X, g.s0)


def fast_backward(
    p: GatedParams,
    g: GatedInputs,
    fw: fast.FastForward,
    upstream: fast.Upstream,
    ds_final: np.ndarray | None,
    *,
    V: np.ndarray | None = None,
    c: np.ndarray | None = None,
) -> tuple[float, GatedParams, GatedState, np.ndarray | None]:
    """Full BPTT by the fast path (fast.backward) after fast_forward.

    Args:
        upstream: the per-block source of dE_t/dh_t (fast.Upstream).
        ds_final: (B, S) gradient arriving at the final state from beyond, or None.
        V, c: dE/dV, dE/dc to put in the result (None for the layer alone).

    Returns:
        (loss, grads as p's type, ds0 in the caller's layout, dxs (xs's shape) or None).

    Raises:
        NonFiniteError for the loss when upstream's finite parts sum past the largest float, and
        for a gradient whose sum over the steps overflowed (check_grads).
    """
    b = g.batch
    dxs, dxs_tm = input_grad_arrays(b, g.dtype)
    sw = fast.backward(fw, g.U, g.W, g.b_ih is not None, b.tokens, g.X, upstream, ds_final, dxs_tm)
    if not np.isfinite(sw.loss):  # every block's part is finite (output_upstream), their sum is not
        raise_loss_sum_overflow(0, b.T - 1, g.dtype)
    grads = type(p)._adopt(U=sw.dU, W=sw.dW, b_ih=sw.db_ih, b_hh=sw.db_hh, V=V, c=c)
    ds0 = g.fold_ds0(sw.ds0)
    check_grads(grads, ds0, dxs)
    return sw.loss, grads, ds0, dxs


def fast_layer_backward(
    p: GatedParams, g: GatedInputs, dhs: np.ndarray, d_final: np.ndarray | None
) -> tuple[GatedParams, GatedState, np.ndarray | None, np.ndarray, GatedState]:
    """The vector-Jacobian product of the layer alone by the fast path (full BPTT).

    Args:
        dhs: (T, B, H) dL/dh_t from above, time-major (read only).
        d_final: (B, S) dL/ds_{T-1} of the final state, or None.

    Returns:
        (grads as p's type (V, c None), ds0 in the caller's layout, dxs or None,
         h_t (T, B, H) time-major, the final state in the caller's layout).
    """
    fw = fast_forward(g)

    def from_caller(start: int, end: int, out: np.ndarray) -> float:
        np.copyto(out, dhs[start:end])  # dL/dh_t from above
        return 0.0

    _, grads, ds0, dxs = fast_backward(p, g, fw, from_caller, d_final)
    return grads, ds0, dxs, fw.hs[1:], g.state_out(fw.final_state())


@dataclass(frozen=True, eq=False)
class GatedBPTTResult:
    """Loss and exact gradients of a gated cell.

    Attributes:
        loss: E, a Python float.
        grads: the gradients as the parameters' type (GRUParams or LSTMParams): dE/dU (G*H, D),
            dE/dW (G*H, H), dE/db_ih, dE/db_hh (G*H,) (None without biases), dE/dV (K, H), dE/dc (K,).
        ds0: GRU: dE/dh0, the shape of s0 as given ((H,) or (B, H) when s0 was None);
            LSTM: LSTMState(dE/dh0, dE/dc0), each in that shape.
        dxs: dE/dxs, same shape as xs, for dense inputs; None for token inputs.
        final_state: GRU h_{T-1}; LSTM LSTMState(h_{T-1}, c_{T-1}); each (H,) or (B, H).
    """

    loss: float
    grads: GatedParams
    ds0: GatedState
    dxs: np.ndarray | None
    final_state: GatedState


def bptt(
    cell: Cell,
    p: GatedParams,
    xs: object,
    ys: object,
    *,
    s0: object | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    activation: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> GatedBPTTResult:
    """Loss and exact gradients of a GRU or LSTM with a softmax output layer, by BPTT.

    Args:
        cell: GRU or LSTM.  p: its parameters, GRUParams or LSTMParams (torch's layer-0 layout).
        xs: int token ids (T,) or (B, T) in [0, D), or float dense inputs (T, D) or (B, T, D).
        ys: int labels in [0, K), (T,) or (B, T) matching xs.
        s0: None (zeros); GRU h0 (H,) or (B, H); LSTM LSTMState(h0, c0) or a tuple (h0, c0).
        truncate: None for full BPTT; tau >= 0 keeps, for every E_t, exactly the terms
            t - tau <= k <= t of the sum over k, through the full state (h and c). V, c unaffected.
        reduction: "sum" or "mean" (over the counted targets).  mask: None or bool like ys.
        activation: must be None (the Elman cell's argument; a ValueError for a gated cell).
        max_bytes: refuse, before allocating, a call whose per-step arrays (see _ROW_NUMBERS)
            would take more bytes.

    Returns:
        GatedBPTTResult (loss, grads, ds0, dxs, final_state), in float32 only when every
        floating input is float32.

    Raises:
        ValueError naming the argument for malformed input; TooLargeError over max_bytes;
        NonFiniteError naming the first step whose state, logits, loss term E_t or dE/dgh_t
        overflowed, else the loss E or the gradient whose sum over the steps overflowed.
    """
    tau = None if truncate is None else integer_arg("truncate", truncate, 0)
    max_bytes = check_max_bytes(max_bytes)
    g = prepare_gated(cell, p, xs, ys, s0=s0, reduction=reduction, mask=mask, activation=activation,
                      size_check=lambda sz, dt: check_size(cell, sz, dt, max_bytes, "bptt"))
    b, H = g.batch, g.H
    T, B, n = b.T, b.B, b.T * b.B
    if tau is None or tau >= T - 1:  # every term kept: the fast path (fast.gated)
        fw = fast_forward(g)
        upstream, dV, dc = fast.output_upstream(fw, g.V, g.c, b.Y, g.weight)
        loss, grads, ds0, dxs = fast_backward(p, g, fw, upstream, None, V=dV, c=dc)
        final = g.state_out(fw.final_state())
        return GatedBPTTResult(loss=loss, grads=grads, ds0=ds0, dxs=dxs, final_state=final)
    w, r = run_checked(g)
    h_rows = np.ascontiguousarray(r.outputs(H)).reshape(n, H)  # h_t, one row per (t, b)

    def overflow(loss: np.floating) -> None:
        fast.check_finite("o_t", logits(h_rows, g.V.T, g.c).reshape(T, B, -1))
        raise_loss_overflow(r.outputs(H), g.V, g.c, b.Y, g.weight, 0)  # a term w_t E_t, or their sum

    with np.errstate(**QUIET):  # overflow is named (o_t, dE/dgh_t), never a warning
        out = output_layer(h_rows, g.V.T, g.V, g.c, b.Y.reshape(n), g.weight.reshape(n), overflow)
        loss, dV, dc = float(out.loss), out.dV, out.dc
        ds_direct = np.zeros((T, B, g.cell.parts * H), dtype=g.dtype)
        ds_direct[:, :, :H] = out.e.reshape(T, B, H)  # dE_t/dh_t = V^T dE/do_t
    del out
    grads, ds0, dxs = layer_backward(p, g, w, r, ds_direct, tau, V=dV, c=dc)
    return GatedBPTTResult(loss=loss, grads=grads, ds0=ds0, dxs=dxs, final_state=g.state_out(r.s[-1]))


def check_grads(grads: GatedParams, ds0: GatedState, dxs: np.ndarray | None) -> None:
    """NonFiniteError naming the first gradient whose sum over the steps overflowed, as for the
    Elman cell: in the order of the parameters' fields, then ds0 (the LSTM's h part, then its c
    part) and dxs. One sum per array unless one is not finite."""
    arrays = {f"dE/d{name}": a for name, a in grads.items()}
    if isinstance(ds0, LSTMState):
        arrays.update({"dE/ds0.h": ds0.h, "dE/ds0.c": ds0.c})
    else:
        arrays["dE/ds0"] = ds0
    arrays["dE/dxs"] = dxs
    with np.errstate(**QUIET):  # finite entries may sum to inf: all_finite decides
        check_grads_finite(arrays)


def layer_backward(
    p: GatedParams,
    g: GatedInputs,
    w: StepWeights,
    r: Run,
    ds_direct: np.ndarray,
    tau: int | None,
    *,
    V: np.ndarray | None = None,
    c: np.ndarray | None = None,
) -> tuple[GatedParams, GatedState, np.ndarray | None]:
    """The reverse recursion and the weight gradients, given the gradient from above of every state.

    Shared by bptt (ds_direct = [V^T dE/do_t; 0]) and manual_bptt.layer.backward (the caller's
    upstream gradients): one recursion, drivers.backprop.

    Args:
        p: the parameters (for the result type).  g: the validated inputs.  w, r: the forward run.
        ds_direct: (T, B, S) the gradient arriving at each state s_t from above.
        tau: None (full) or the truncation tau >= 0.
        V, c: dE/dV (K, H), dE/dc (K,) to put in the result (None for the layer alone).

    Returns:
        (grads as p's type: U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or None, V, c;
         ds0 in the caller's layout (LSTMState for the LSTM); dxs (xs's shape) or None).

    Raises:
        NonFiniteError at the first step whose dE/dgh_t is not finite, and for a gradient
        whose sum over the steps overflowed (check_grads).
    """
    with np.errstate(**QUIET):  # as on the fast path: overflow is named, never a warning
        dgi, dgh, ds0_rows = backprop(g.cell, w, r, ds_direct, truncate=tau)
        fast.check_finite("dE/dgh_t", dgh)
        dU, db_ih, dW, db_hh, dX = weight_grads(dgi, dgh, r.h_prev(g.H), g.U, g.batch.tokens, g.X)
    has_bias = g.b_ih is not None
    grads = type(p)._adopt(
        U=dU, W=dW, b_ih=db_ih if has_bias else None, b_hh=db_hh if has_bias else None, V=V, c=c
    )
    ds0, dxs = g.fold_ds0(ds0_rows), None if dX is None else g.batch.to_batch_first(dX)
    check_grads(grads, ds0, dxs)
    return grads, ds0, dxs


@dataclass(frozen=True, eq=False)
class GatedForwardResult:
    """The forward pass of a gated cell in the caller's layout (batch-first when batched).

    Attributes:
        h: outputs h_t, (T, H) or (B, T, H).
        cell_state: the LSTM's cell states c_t, like h; None for the GRU.
        o: logits o_t = V h_t + c, (T, K) or (B, T, K).  y_hat: softmax(o_t), like o.
        final_state: GRU h_{T-1}; LSTM LSTMState(h_{T-1}, c_{T-1}); each (H,) or (B, H).
    """

    h: np.ndarray
    cell_state: np.ndarray | None
    o: np.ndarray
    y_hat: np.ndarray
    final_state: GatedState


def forward(
    cell: Cell,
    p: GatedParams,
    xs: object,
    *,
    s0: object | None = None,
    activation: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> GatedForwardResult:
    """Run a GRU or LSTM forward; the same input forms and checks as bptt (no labels).

    Args:
        cell: GRU or LSTM.  p: its parameters.  xs: (T,) / (B, T) token ids or (T, D) / (B, T, D) dense.
        s0: None; GRU h0 (H,) or (B, H); LSTM LSTMState(h0, c0) or (h0, c0).
        activation: must be None (as for bptt).  max_bytes: as for bptt.
    """
    max_bytes = check_max_bytes(max_bytes)
    g = prepare_gated(cell, p, xs, None, s0=s0, activation=activation, labels_required=False,
                      size_check=lambda sz, dt: check_size(cell, sz, dt, max_bytes, "forward"))
    b, H = g.batch, g.H
    T, B = b.T, b.B
    fw = fast_forward(g)
    h = fw.hs[1:]
    with np.errstate(**QUIET):  # logits that overflow are named, never a warning
        o = logits(h.reshape(T * B, H), g.V.T, g.c).reshape(T, B, b.K)
        fast.check_finite("o_t", o)
        y_hat = softmax(o)
    cell_state = b.to_batch_first(fw.cs[1:]) if g.cell is LSTM else None
    return GatedForwardResult(
        h=b.to_batch_first(h),
        cell_state=cell_state,
        o=b.to_batch_first(o),
        y_hat=b.to_batch_first(y_hat),
        final_state=g.state_out(fw.final_state()),
    )


def backward(
    cell: Cell,
    p: GatedParams,
    xs: object,
    dhs: np.ndarray,
    final_parts: list[tuple[str, np.ndarray]],
    s0: object | None,
    tau: int | None,
    activation: object | None,
    limit: int,
) -> tuple[GatedParams, np.ndarray | None, GatedState, np.ndarray, GatedState]:
    """A gated layer's vector-Jacobian product (manual_bptt.layer.backward, which checked the rest).

    Args:
        cell: GRU or LSTM.  dhs: dL/dh_t as given (real numbers), (B, T, H) or (T, H).
        final_parts: d_final's named parts (the LSTM's h and c), or [].  tau: None or >= 0.
        limit: max_bytes.

    Returns:
        (grads (V and c None), dxs or None, ds0, the outputs h_t in the caller's layout, the
        final state).
    """
    g = prepare_gated(cell, p, xs, None, s0=s0, activation=activation, labels_required=False,
                      size_check=lambda sz, dt: check_size(cell, sz, dt, limit, "backward", extra=1))
    b, H = g.batch, g.H
    dhs_tm, d_fin = upstream_gradients(dhs, final_parts, b.T, b.B, H, b.batched, g.dtype)
    if tau is None or tau >= b.T - 1:  # every term kept: the fast path
        grads, ds0, dxs, hs, final = fast_layer_backward(p, g, dhs_tm, d_fin)
        return grads, dxs, ds0, b.to_batch_first(hs), final
    w, r = run_checked(g)
    ds_direct = np.zeros((b.T, b.B, g.cell.parts * H), dtype=g.dtype)
    ds_direct[:, :, :H] = dhs_tm  # dL/dh_t from above; nothing arrives at c_t but through h_t
    if d_fin is not None:
        ds_direct[-1] += d_fin  # the final state's gradient: upstream of step T - 1
    grads, ds0, dxs = layer_backward(p, g, w, r, ds_direct, tau)
    return grads, dxs, ds0, b.to_batch_first(np.ascontiguousarray(r.outputs(H))), g.state_out(r.s[-1])


def driver_inputs(
    cell: Cell,
    p: GatedParams,
    xs: object,
    ys: object | None,
    *,
    activation: object | None,
    s0: object | None,
    reduction: str = "sum",
    mask: object | None = None,
    labels: bool = True,
    owned: bool = False,
    size_check: Callable[[Sizes, np.dtype], None] | None = None,
) -> CellInputs:
    """As elman.driver_inputs, for the gated cell ``cell`` (cells.gru, cells.lstm)."""
    g = prepare_gated(
        cell, p, xs, ys, s0=s0, reduction=reduction, mask=mask, activation=activation, labels_required=labels,
        size_check=size_check,
    )
    batch = g.batch.owned() if owned else g.batch
    X = None if g.X is None else (g.X.copy() if owned else g.X)
    return CellInputs(
        cell=g.cell,
        w=g.step_weights(),
        U=g.U,
        b_ih=g.b_ih,
        V=g.V,
        c=g.c,
        bias_names=p.bias_names,
        tokens=batch.tokens,
        X=X,
        s0=g.s0,
        Y=batch.Y,
        weight=g.weight,
        batched=batch.batched,
        prep=g,
    )
