"""The front of a stack of recurrent layers (StackParams): forward, the layer backward and bptt:
validation, sizes refused before allocating, results. numpy only (its row in manual_bptt.kinds).

Every shape of torch's nn.RNN / nn.GRU / nn.LSTM: L layers, one or two directions, the LSTM's
projection, with or without biases, variable lengths. B sequences, T steps (the padded length),
H_out = proj_size or H, dirs = 2 if bidirectional else 1, sequence b of length n_b:

    input of layer 0:   x_t (D,)          input of layer l:  [h_t(l-1, forward); h_t(l-1, reverse)]
    forward:            t = 0 .. n_b - 1,  from h0[l*dirs + 0, b] (and c0)
    reverse:            t = n_b - 1 .. 0,  from h0[l*dirs + 1, b] (and c0)
    outputs[b, t]     = [h_t forward; h_t reverse] of layer L-1 for t < n_b, 0 for t >= n_b
    h_n[l*dirs + d, b] = the last state computed (forward t = n_b - 1, reverse t = 0); c_n alike

exactly torch's semantics with pack_padded_sequence(..., enforce_sorted=False) and
pad_packed_sequence. Steps past a length neither change a state nor receive gradient.

    forward(p, xs)               outputs, h_n, c_n (and o, y_hat with an output layer V)
    backward(p, xs, dhs)         the vector-Jacobian product of the stack alone:
                                     L = sum_{b,t} <dhs[b, t], outputs[b, t]> + <d_final, (h_n, c_n)>
    bptt(p, xs, ys)              the output layer o_t = V outputs_t + c over the top layer, the
                                 softmax cross-entropy of every counted step (t < n_b, the mask)

``truncate=tau`` (one-direction stacks only) truncates every layer's own recurrence: the gradient
arriving at layer l's h_t (from the output layer or dhs for the top layer, from the layer above at
the same step t otherwise) is carried back through layer l over the steps t - tau <= k <= t only;
it passes down to layer l-1 at the same step, untruncated. A path from E_t to a parameter of layer
0 may so span up to L*tau steps (tau per layer). d_final enters at each sequence's own last step.

A stack of one layer, one direction, no projection and no lengths (or every length T) runs
today's one-layer path (its row in manual_bptt.kinds, given as ``kind_of``) and gives its results
bitwise. The others run the loop of manual_bptt.stack_loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import check_truncate
from .errors import DEFAULT_MAX_BYTES, QUIET, check_bytes, check_grads_finite, check_max_bytes
from .fast.gated import check_finite
from .gated_params import LSTMState
from .output import logits, output_layer, raise_loss_overflow, softmax
from .stack_inputs import StackCall, labels, read_call, scan_dhs, scan_inputs
from .stack_loop import CELLS, backprop_stack, run_stack
from .stack_params import StackParams

StackState = np.ndarray | LSTMState

#: Bytes per step and direction for the Python objects of a step's cache.
_STEP_BYTES = 1024


@dataclass(frozen=True, eq=False)
class StackForwardResult:
    """The forward pass of a stack, in the caller's layout (batch-first when batched).

    Attributes:
        outputs: (B, T, dirs * H_out) the top layer's [forward, reverse] h_t, 0 past each length
            ((T, dirs * H_out) unbatched).
        h_n: (L*dirs, B, H_out) every layer's and direction's final h ((L*dirs, H_out) unbatched).
        c_n: (L*dirs, B, H) the LSTM's final cell states, else None.
        o: (B, T, K) logits o_t = V outputs_t + c when p has V (0 past each length), else None.
        y_hat: softmax(o_t), like o (0 past each length), or None.
    """

    outputs: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None
    o: np.ndarray | None
    y_hat: np.ndarray | None

    @property
    def final_state(self) -> StackState:
        """h_n, or LSTMState(h_n, c_n) for the LSTM: the s0 of the next chunk."""
        return self.h_n if self.c_n is None else LSTMState(self.h_n, self.c_n)


@dataclass(frozen=True, eq=False)
class StackLayerResult:
    """The vector-Jacobian product of a stack (see backward).

    Attributes:
        grads: dL/dθ as a StackParams (V and c None), each array in its parameter's shape.
        dxs: dL/dxs, the shape of xs (0 past each length), for dense inputs; None for token ids.
        ds0: dL/dh0 (L*dirs, B, H_out); LSTMState(dh0, dc0) for the LSTM, dc0 (L*dirs, B, H).
        hs: the outputs (B, T, dirs * H_out), as forward's.
        final_state: h_n (L*dirs, B, H_out); LSTMState(h_n, c_n) for the LSTM.
    """

    grads: StackParams
    dxs: np.ndarray | None
    ds0: StackState
    hs: np.ndarray
    final_state: StackState


@dataclass(frozen=True, eq=False)
class StackBPTTResult:
    """Loss and exact gradients of a stack with its output layer.

    Attributes:
        loss: E, a Python float.
        grads: dE/dθ as a StackParams, V and c included.
        ds0: dE/dh0 (L*dirs, B, H_out); LSTMState(dh0, dc0) for the LSTM.
        dxs: dE/dxs, the shape of xs, for dense inputs (0 past each length); None for token ids.
        final_state: h_n; LSTMState(h_n, c_n) for the LSTM.
    """

    loss: float
    grads: StackParams
    ds0: StackState
    dxs: np.ndarray | None
    final_state: StackState


# ---------------------------------------------------------------------------------------------
# Arguments, sizes, states
# ---------------------------------------------------------------------------------------------
def _begin(p: StackParams, activation: object, truncate: object, max_bytes: object) -> tuple[int | None, int]:
    """(tau, max_bytes) checked; activation must be None; truncate only for one direction."""
    if activation is not None:
        raise ValueError(
            f"activation: a StackParams holds its own nonlinearity (p.nonlinearity = {p.nonlinearity!r}); "
            f"pass no activation, got {activation!r}"
        )
    tau = check_truncate(truncate)
    limit = check_max_bytes(max_bytes)
    if tau is not None and p.bidirectional:
        raise ValueError(
            f"truncate: only for one-direction stacks (bidirectional=False), got truncate={tau} for a "
            "bidirectional stack: the reverse direction's windows are not defined"
        )
    return tau, limit


def _check_size(p: StackParams, call: StackCall, max_bytes: int, what: str, backward: bool) -> None:
    """Refuse, before allocating, a call whose arrays would pass max_bytes in total.

    Per (t, b) row: every layer's input (D_l) and, for every direction, (P + cache_width + G + 1)
    * H (the states, the spec's caches, the input terms, the outputs; cells.base.Cell.cache_width)
    and the step objects; the backward adds the
    upstream and its copy (2 dirs * H_out), one direction's dE/ds_t (S), dgi and dgh (2 G*H),
    dX (D_l), and for the projection dE/dh_t and m_t. T is the padded length.
    """
    L, dirs, H, H_out, G = p.num_layers, p.directions, p.hidden_size, p.out_size, p.gates
    S = H_out + (H if p.cell == "lstm" else 0)
    inputs = call.D + (L - 1) * dirs * H_out + dirs * H_out  # every X_l and the outputs
    cell = CELLS[p.cell]
    per_run = (cell.parts + cell.cache_width + cell.gates + 1) * H  # states, caches, input terms, outputs
    numbers = inputs + L * dirs * (per_run + (H if p.proj_size else 0))
    if backward:
        D_max = max(call.D, dirs * H_out)
        numbers += 2 * dirs * H_out + S + 2 * G * H + D_max + (H + H_out if p.proj_size else 0)
    if p.V is not None:
        numbers += 2 * p.V.shape[0]  # the logits and dE/do_t (bptt), o and y_hat (forward)
    item = call.dtype.itemsize
    per_step = call.B * numbers + -(-L * dirs * _STEP_BYTES // item)
    check_bytes(
        f"{what} ({p.cell}, L = {L} layers x {dirs} direction{'s' if dirs > 1 else ''}, T = {call.T}, "
        f"B = {call.B}, D = {call.D}, H = {H}, H_out = {H_out}): the states, caches, input terms and layer "
        f"inputs of every layer and direction, {'and the gradients, ' if backward else ''}T steps of "
        f"{per_step} numbers each",
        (call.T, per_step),
        call.dtype,
        max_bytes,
        hint="split the sequence into chunks (pass final_state on as s0), use fewer layers, or pass a "
        "larger max_bytes",
    )


def _state_rows(p: StackParams, parts: list[np.ndarray], B: int, dtype: np.dtype) -> np.ndarray:
    """(L*dirs, B, S) the initial (or final-gradient) state rows, [h; c] for the LSTM; zeros
    for no parts."""
    LD, H_out = p.num_layers * p.directions, p.out_size
    S = H_out + (p.hidden_size if p.cell == "lstm" else 0)
    rows = np.zeros((LD, B, S), dtype=dtype)
    if parts:
        rows[:, :, :H_out] = parts[0]
        if len(parts) == 2:
            rows[:, :, H_out:] = parts[1]
    return rows


def _state_out(p: StackParams, call: StackCall, rows: np.ndarray) -> StackState:
    """(L*dirs, B, S) rows -> h (L*dirs, B, H_out), or LSTMState(h, c), in the caller's layout."""
    H_out = p.out_size
    h = call.state_out(rows[:, :, :H_out])
    return LSTMState(h, call.state_out(rows[:, :, H_out:])) if p.cell == "lstm" else h


def _one_layer(p: StackParams, call: StackCall) -> bool:
    """Whether the call is today's one-layer case: L = 1, one direction, no projection, no step
    skipped (no lengths, or every length T)."""
    return p.num_layers == 1 and not p.bidirectional and not p.proj_size and call.lengths is None


def _single(call: StackCall, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Stack-layout parts (1, B, n) as today's one-layer (B, n), or (n,) unbatched (views)."""
    return [a[0] if call.batched else a[0, 0] for a in parts]


def _stacked(a: np.ndarray) -> np.ndarray:
    """Today's one-layer state (B, n) or (n,) in the stack layout (1, B, n) or (1, n)."""
    return a[None]


def _stack_state(p: StackParams, s: Any) -> StackState:
    """Today's one-layer state or its gradient in the stack layout."""
    return LSTMState(_stacked(s.h), _stacked(s.c)) if p.cell == "lstm" else _stacked(s)


def _stack_grads(p: StackParams, g: Any, output: bool) -> StackParams:
    """Today's one-layer gradients as a StackParams (the Elman cell's db is db_ih and db_hh)."""
    if p.cell == "rnn":
        fields = {"U": g.U, "W": g.W, "b_ih": g.b, "b_hh": None if g.b is None else g.b.copy()}
    else:
        fields = {"U": g.U, "W": g.W, "b_ih": g.b_ih, "b_hh": g.b_hh}
    return StackParams._adopt(
        p.cell, p.nonlinearity, [[fields]], V=g.V if output else None, c=g.c if output else None
    )


def _one_layer_args(p: StackParams, call: StackCall) -> tuple[Any, Any, str | None]:
    """(today's params, s0 in today's layout or None, activation) of the one-layer case. Without an
    output layer, V is zeros (1, H): the layer alone never reads it (forward's o is dropped)."""
    V = p.V if p.V is not None else np.zeros((1, p.hidden_size), dtype=p.dtype)
    p1 = p._one_layer_params(V, p.c)
    s0 = None
    if call.s0_parts:
        parts = _single(call, call.s0_parts)
        s0 = LSTMState(*parts) if p.cell == "lstm" else parts[0]
    return p1, s0, p.nonlinearity if p.cell == "rnn" else None


def _check_grads(grads: StackParams, ds0: StackState, dxs: np.ndarray | None) -> None:
    """NonFiniteError naming the first gradient whose sum over the steps overflowed."""
    arrays: dict[str, np.ndarray | None] = {f"dE/d{name}": a for name, a in grads.items()}
    if isinstance(ds0, LSTMState):
        arrays.update({"dE/ds0.h": ds0.h, "dE/ds0.c": ds0.c})
    else:
        arrays["dE/ds0"] = ds0
    arrays["dE/dxs"] = dxs
    with np.errstate(**QUIET):
        check_grads_finite(arrays)


# ---------------------------------------------------------------------------------------------
# The public functions (manual_bptt.forward, backward, bptt with a StackParams)
# ---------------------------------------------------------------------------------------------
def forward(
    kind_of: Callable[[object], Any],
    p: StackParams,
    xs: object,
    *,
    s0: object | None = None,
    lengths: object | None = None,
    activation: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> StackForwardResult:
    """The forward pass of a stack (see the module docstring).

    Args:
        kind_of: manual_bptt.kinds.kind_of, for the one-layer case.  p: the StackParams.
        xs: dense (B, T, D) / (T, D), or token ids (B, T) / (T,) in [0, D).
        s0: None (zeros); h0 (L*dirs, B, H_out) ((L*dirs, H_out) unbatched); the LSTM's
            LSTMState(h0, c0) or a pair, c0 (L*dirs, B, H).
        lengths: None, or (B,) integers 1 <= n_b <= T in any order (batched xs only).
        activation: must be None (p.nonlinearity is the Elman cell's).  max_bytes: the limit.
    """
    _, limit = _begin(p, activation, None, max_bytes)
    call = read_call(p, xs, s0=s0, lengths=lengths)
    if _one_layer(p, call):
        p1, s1, act = _one_layer_args(p, call)
        r = kind_of(p1).forward(p1, xs, s0=s1, activation=act, max_bytes=limit)
        outputs = r.s if p.cell == "rnn" else r.h
        final = _stack_state(p, r.final_state)
        h_n, c_n = (final.h, final.c) if p.cell == "lstm" else (final, None)
        with_output = p.V is not None
        return StackForwardResult(
            outputs=outputs,
            h_n=h_n,
            c_n=c_n,
            o=r.o if with_output else None,
            y_hat=r.y_hat if with_output else None,
        )
    _check_size(p, call, limit, "forward", backward=False)
    tokens, X = scan_inputs(call)
    engine = "fast" if call.mask is None and not p.proj_size else "drivers"
    s0_rows = _state_rows(p, call.s0_parts, call.B, call.dtype)
    runs, out = run_stack(p, tokens, X, call.mask, s0_rows, engine)
    final = np.stack([r.final for row in runs for r in row])
    o = y_hat = None
    if p.V is not None:
        with np.errstate(**QUIET):  # logits that overflow are named, never a warning
            V = np.asarray(p.V, dtype=call.dtype)
            c = None if p.c is None else np.asarray(p.c, dtype=call.dtype)
            o = logits(out, V.T, c)  # o_t = V outputs_t + c, (T, B, K)
            check_finite("o_t", o)
            y_hat = softmax(o)
            if call.mask is not None:
                np.copyto(o, 0, where=~call.mask[:, :, None])
                np.copyto(y_hat, 0, where=~call.mask[:, :, None])
        o, y_hat = call.to_batch_first(o), call.to_batch_first(y_hat)
    state = _state_out(p, call, final)
    h_n, c_n = (state.h, state.c) if p.cell == "lstm" else (state, None)
    return StackForwardResult(outputs=call.to_batch_first(out), h_n=h_n, c_n=c_n, o=o, y_hat=y_hat)


def _compute_cast(p1: Any, upstream: list[np.ndarray]) -> Any:
    """As manual_bptt.layer.backward: float32 parameters computed in float64 when an upstream
    array is floating and wider (float32 only when every floating input is)."""
    if np.dtype(p1.dtype) != np.float32:
        return p1
    wider = any(a.dtype.kind == "f" and a.dtype != np.float32 for a in upstream)
    return p1.astype(np.float64) if wider else p1


def backward(
    kind_of: Callable[[object], Any],
    p: StackParams,
    xs: object,
    dhs: object,
    *,
    s0: object | None = None,
    d_final: object | None = None,
    lengths: object | None = None,
    truncate: int | None = None,
    activation: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> StackLayerResult:
    """The vector-Jacobian product of a stack: no output layer, no labels.

        L = sum_{b, t} <dhs[b, t], outputs[b, t]> + <d_final, (h_n, c_n)>

    Args:
        kind_of: manual_bptt.kinds.kind_of.  p, xs, s0, lengths, activation: as for forward.
        dhs: (B, T, dirs * H_out) ((T, dirs * H_out) unbatched): dL/d outputs of the top layer,
            finite where read (ignored past each length).
        d_final: None; or dL/dh_n (L*dirs, B, H_out), for the LSTM LSTMState(dh_n, dc_n) or a
            pair, dc_n (L*dirs, B, H): the gradient of every layer's final state.
        truncate: None, or tau >= 0 for one-direction stacks (see the module docstring).
        max_bytes: the limit, checked before allocating.

    Returns:
        StackLayerResult (grads, dxs, ds0, hs, final_state), in float32 only when every floating
        input is float32.
    """
    tau, limit = _begin(p, activation, truncate, max_bytes)
    if dhs is None:
        raise ValueError("dhs: required (the gradient of the top layer's outputs), got None")
    call = read_call(p, xs, s0=s0, lengths=lengths, dhs=dhs, d_final=d_final)
    if _one_layer(p, call):
        p1, s1, act = _one_layer_args(p, call)
        finals = _single(call, call.d_final_parts)
        names = ["d_final.h", "d_final.c"] if p.cell == "lstm" else ["d_final"]
        final_parts = list(zip(names, finals, strict=True)) if finals else []
        kind = kind_of(p1)
        p1 = _compute_cast(p1, [call.dhs, *finals])
        g, dxs, ds0, hs, final = kind.backward(p1, xs, call.dhs, final_parts, s1, tau, act, limit)
        return StackLayerResult(
            grads=_stack_grads(p, g, output=False),
            dxs=dxs,
            ds0=_stack_state(p, ds0),
            hs=hs,
            final_state=_stack_state(p, final),
        )
    if tau is not None and tau >= call.T - 1:
        tau = None  # every term kept: full BPTT
    _check_size(p, call, limit, "backward", backward=True)
    tokens, X = scan_inputs(call)
    up = scan_dhs(call)
    grads, dxs, ds0, out, final = _backward(p, call, tokens, X, up, tau)
    return StackLayerResult(grads=grads, dxs=dxs, ds0=ds0, hs=call.to_batch_first(out), final_state=final)


def _backward(
    p: StackParams,
    call: StackCall,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
    up: np.ndarray | None,
    tau: int | None,
    *,
    logits_layer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[StackParams, np.ndarray | None, StackState, np.ndarray, StackState]:
    """The stack's forward and backward: (grads, dxs, ds0, the outputs (T, B, dirs*H_out), the
    final state). ``logits_layer``: bptt's output layer, given the outputs, returns up."""
    engine = "fast" if call.mask is None and not p.proj_size and tau is None else "drivers"
    s0_rows = _state_rows(p, call.s0_parts, call.B, call.dtype)
    runs, out = run_stack(p, tokens, X, call.mask, s0_rows, engine)
    final = _state_out(p, call, np.stack([r.final for row in runs for r in row]))
    if logits_layer is not None:
        up = logits_layer(out)
    d_fin = None
    if call.d_final_parts:
        d_fin = _state_rows(p, call.d_final_parts, call.B, call.dtype)
    if up is None:
        up = np.zeros_like(out)
    grads, dX, ds0_rows = backprop_stack(p, runs, up, d_fin, call.lengths, tau)
    dxs = None if dX is None else call.to_batch_first(dX)
    ds0 = _state_out(p, call, ds0_rows)
    _check_grads(grads, ds0, dxs)
    return grads, dxs, ds0, out, final


def bptt(
    kind_of: Callable[[object], Any],
    p: StackParams,
    xs: object,
    ys: object,
    *,
    s0: object | None = None,
    lengths: object | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    activation: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> StackBPTTResult:
    """Loss and exact gradients of a stack with the output layer o_t = V outputs_t + c over its
    top layer, y_hat_t = softmax(o_t), E = sum_{b, t} w_t E_t.

    E_t counts where t < n_b and the mask (if any) is True: w_t = 1 there ("sum"), or 1 / the
    count ("mean"), and 0 elsewhere; labels that do not count are not read.

    Args:
        kind_of, p, xs, s0, lengths, truncate, activation, max_bytes: as for backward (p.V is
            required).
        ys: (B, T) / (T,) integer labels in [0, K) where they count.
        reduction: "sum" or "mean".  mask: None or bool like ys.

    Returns:
        StackBPTTResult (loss, grads with V and c, ds0, dxs, final_state).
    """
    tau, limit = _begin(p, activation, truncate, max_bytes)
    if p.V is None:
        raise ValueError(
            "p.V: bptt needs the output layer over the top layer's outputs: StackParams(..., V=, c=), or "
            "StackParams.init(..., output_size=K); manual_bptt.backward computes the layers alone"
        )
    call = read_call(p, xs, s0=s0, lengths=lengths)
    if _one_layer(p, call):
        p1, s1, act = _one_layer_args(p, call)
        r = kind_of(p1).bptt(
            p1, xs, ys, s0=s1, truncate=tau, reduction=reduction, mask=mask, activation=act, max_bytes=limit
        )
        return StackBPTTResult(
            loss=r.loss,
            grads=_stack_grads(p, r.grads, output=True),
            ds0=_stack_state(p, r.ds0),
            dxs=r.dxs,
            final_state=_stack_state(p, r.final_state),
        )
    if tau is not None and tau >= call.T - 1:
        tau = None  # every term kept: full BPTT
    _check_size(p, call, limit, "bptt", backward=True)
    K = p.V.shape[0]
    Y, weight = labels(call, ys, mask, reduction, K)
    tokens, X = scan_inputs(call)
    V = np.asarray(p.V, dtype=call.dtype)
    c = None if p.c is None else np.asarray(p.c, dtype=call.dtype)
    T, B = call.T, call.B
    sums: dict[str, Any] = {}

    def output_layer_of(out: np.ndarray) -> np.ndarray:
        n = T * B
        h_rows = np.ascontiguousarray(out).reshape(n, -1)  # outputs_t, one row per (t, b)

        def overflow(loss: np.floating) -> None:
            raise_loss_overflow(out, V, c, Y, weight, 0)  # which o_t or w_t E_t, or their sum

        with np.errstate(**QUIET):
            res = output_layer(h_rows, V.T, V, c, Y.reshape(n), weight.reshape(n), overflow)
        sums.update(loss=float(res.loss), dV=res.dV, dc=res.dc)
        return res.e.reshape(T, B, -1)  # dE_t/d outputs_t = V^T dE/do_t (0 where w_t = 0)

    grads, dxs, ds0, _, final = _backward(p, call, tokens, X, None, tau, logits_layer=output_layer_of)
    layers = [
        [{f: getattr(lw, f) for f in ("U", "W", "b_ih", "b_hh", "W_hr")} for lw in row]
        for row in grads.layers
    ]
    grads = StackParams._adopt(p.cell, p.nonlinearity, layers, V=sums["dV"], c=sums["dc"])
    with np.errstate(**QUIET):
        check_grads_finite({"dE/dV": grads.V, "dE/dc": grads.c})
    return StackBPTTResult(loss=sums["loss"], grads=grads, ds0=ds0, dxs=dxs, final_state=final)


def driver_inputs(p: StackParams, *args: object, **kwargs: object) -> Any:
    """decompose, state_jacobian and rtrl take one layer: a ValueError naming p."""
    raise ValueError(
        "p: decompose, state_jacobian and rtrl take one layer (manual_bptt.RNNParams, GRUParams or "
        f"LSTMParams), got a StackParams of {p.num_layers} layer(s), {p.directions} direction(s); a stack of "
        "one layer, one direction and no projection converts by p.to_params()"
    )
