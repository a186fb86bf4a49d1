"""The Elman cell's front: bptt, forward, the layer backward and the inputs of the generic drivers:
validation, sizes refused before allocating, results. numpy only (its row in manual_bptt.kinds).

    a_t = U x_t + W s_{t-1} + b        s_t = f(a_t)         s_{-1} = s0
    o_t = V s_t + c                    y_hat_t = softmax(o_t)
    E_t = -log y_hat_t[y_t]            E = sum_t w_t E_t

with w_t = mask_t (reduction="sum") or mask_t / (number of counted targets) ("mean").

bptt, forward and backward run on the Elman fast path (manual_bptt.fast.elman): full BPTT by its
blocked reverse recursion, truncated BPTT by its sum over lags; the output layer is
manual_bptt.output's. driver_inputs hands the validated inputs to decompose and rtrl, which run
the spec (cells.elman) on the generic drivers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._inputs import Sizes, check_max_bytes, check_truncate, prepare, upstream_gradients
from .cells import ELMAN, StepWeights
from .drivers import CellInputs
from .errors import (
    DEFAULT_MAX_BYTES,
    QUIET,
    all_finite,
    check_bytes,
    check_grads_finite,
    check_steps_finite,
    nbytes,
)
from .fast.blocks import step_blocks
from .fast.elman import (
    Trace,
    delta_grads,
    full_bptt,
    layer_backward,
    output_grads,
    run_forward,
    truncated_deltas,
)
from .output import logits, raise_loss_sum_overflow, softmax
from .params import RNNParams

_INT64 = np.dtype(np.int64)  # the copies of token ids and labels


def elman_activation(activation: object) -> object:
    """The Elman cell's activation name: None means "tanh" (anything else is checked by prepare)."""
    return "tanh" if activation is None else activation


@dataclass(frozen=True, eq=False)
class BPTTResult:
    """Loss and exact gradients.

    Attributes:
        loss: E, a Python float.
        grads: dE/dU (H, D), dE/dW (H, H), dE/dV (K, H), dE/db (H,), dE/dc (K,) as an
            RNNParams (b, c are None where the parameters have none).
        ds0: dE/ds0, the shape of s0 as given; (H,) or (B, H) when s0 was None.
        dxs: dE/dxs, same shape as xs, for dense inputs; None for token inputs.
        final_state: s_{T-1}, (H,) or (B, H): the s0 of the next chunk.
    """

    loss: float
    grads: RNNParams
    ds0: np.ndarray
    dxs: np.ndarray | None
    final_state: np.ndarray


def bptt(
    p: RNNParams,
    xs: object,
    ys: object,
    *,
    activation: str | None = None,
    s0: object | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> BPTTResult:
    """Loss and exact gradients of the RNN by backpropagation through time.

    Args:
        p: RNNParams: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None.
        xs: int token ids (T,) or (B, T) in [0, D), or float dense inputs (T, D) or (B, T, D).
        ys: int labels in [0, K), (T,) or (B, T) matching xs.
        activation: f, one of "tanh", "sigmoid", "relu", "identity"; None means "tanh".
        s0: initial state s_{-1}: None (zeros), (H,), or (B, H) for batched xs. An (H,)
            s0 with batched xs is shared by all sequences and ds0 sums over the batch.
        truncate: None for full BPTT; tau >= 0 keeps, for every E_t, exactly the terms
            k with t - tau <= k <= t of dE_t/dθ = sum_k dE_t/ds_t ds_t/ds_k ∂s_k/∂θ, for
            θ in U, W, b, xs and s0 (s0 enters through step 0). V and c are unaffected.
        reduction: "sum" (E = sum of E_t) or "mean" (divided by the counted targets).
        mask: None, or bool (T,) / (B, T): targets where False contribute nothing (the
            state still runs through those steps); their labels may be any integer (padding).
        max_bytes: the largest single array the call may allocate (default 1 GiB): the
            states (T + 1, B, H), dE/dxs, the copies of the token ids and labels, the blocks.

    Returns:
        BPTTResult with loss, grads, ds0, dxs (dense inputs) and final_state.
        Computed in float32 when every floating input is float32, else float64.

    Raises:
        ValueError naming the argument, for any malformed input.
        TooLargeError (a ValueError) when an array would exceed max_bytes, found from the
            shapes alone, before any input is scanned and before anything is allocated.
        NonFiniteError naming the first step whose state s_t, logits o_t or dE/da_t is not
            finite (the computation overflowed).
    """
    tau = check_truncate(truncate)
    limit = check_max_bytes(max_bytes)

    def refuse_too_large(sz: Sizes) -> None:
        full = tau is None or tau >= sz.T - 1
        _check_sizes("bptt", _bptt_arrays(sz, full), limit)

    batch = prepare(p, xs, ys, activation=elman_activation(activation), s0=s0, reduction=reduction, mask=mask,
                    size_check=refuse_too_large)
    with np.errstate(**QUIET):  # overflow raises NonFiniteError below, never a warning
        if tau is None or tau >= batch.T - 1:  # every term kept: the full recursion
            tr = run_forward(p, batch, keep_a=False, check_states=False)
            loss, sums, ds0, dxs = full_bptt(tr)
            dU, dW, dV, db, dc = sums.input_grad(), sums.dW, sums.dV, sums.db, sums.dc
            # the arrays that hold every gradient's numbers: one sum each decides "all finite"
            # (for tokens dU is dUT transposed, the same numbers)
            covering = (sums.flat, ds0, dxs)
        else:
            # e_t = V^T dE/do_t is written over a, which is needed no more (f'(a_t) comes from
            # s_t), and the truncated g_k over e_t in turn: one (T, B, H) array for the three
            tr = run_forward(p, batch, check_states=False)
            e = tr.a
            loss, dV, dc = output_grads(tr, e_out=e)
            deltas = truncated_deltas(tr, e, tau, out=e)
            check_steps_finite("dE/da_t", deltas, 0, last_first=True)
            dU, dW, db, ds0, dxs = delta_grads(tr, deltas)
            covering = None
        if not math.isfinite(loss):  # every block's part is finite (_output_block), their sum is not
            raise_loss_sum_overflow(0, batch.T - 1, batch.dtype)
        if covering is None or not all_finite(*covering):  # the dict is built only to search it
            check_grads_finite({"dE/dU": dU, "dE/dW": dW, "dE/dV": dV, "dE/db": db, "dE/dc": dc,
                                "dE/ds0": ds0, "dE/dxs": dxs})
    grads = RNNParams._adopt(U=dU, W=dW, V=dV, b=db, c=dc)  # fresh arrays: no copies
    return BPTTResult(loss=loss, grads=grads, ds0=ds0, dxs=dxs, final_state=final_state(tr))


def _bptt_arrays(sz: Sizes, full: bool) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """(what, shape, dtype) of the arrays bptt allocates whose size grows with the inputs."""
    T, B, D, H, K, dt = sz.T, sz.B, sz.D, sz.H, sz.K, sz.dtype
    rows = step_blocks(T, B)[0][1] * B  # rows (t, b) of one block of steps
    arrays = [
        ("the states s_t, (T + 1, B, H)", (T + 1, B, H), dt),
        ("the labels, (T, B) int64", (T, B), _INT64),
        ("a block of logits o_t, (rows, K)", (rows, K), dt),
        ("dE/dU, (H, D)", (H, D), dt),
    ]
    if not full:
        arrays.append(("e_t and the truncated dE/da_t, (T, B, H)", (T, B, H), dt))
    if sz.tokens:
        arrays.append(("the token ids, (T, B) int64", (T, B), _INT64))
    else:
        arrays.append(("dE/dxs, (B, T, D)", (B, T, D), dt))
    return arrays


def _forward_arrays(sz: Sizes) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """(what, shape, dtype) of the arrays forward allocates whose size grows with the inputs."""
    T, B, H, K, dt = sz.T, sz.B, sz.H, sz.K, sz.dtype
    arrays = [
        ("the states s_t, (T + 1, B, H)", (T + 1, B, H), dt),
        ("the logits o_t and y_hat_t, (T, B, K) each", (T, B, K), dt),
    ]
    if sz.tokens:
        arrays.append(("the token ids, (T, B) int64", (T, B), _INT64))
    return arrays


def _check_sizes(caller: str, arrays: list[tuple[str, tuple[int, ...], np.dtype]], max_bytes: int) -> None:
    """TooLargeError for the first array over max_bytes, before anything is allocated.

    The message is written only for an array that is refused (check_bytes raises there).
    """
    for what, shape, dtype in arrays:
        if nbytes(shape, dtype.itemsize) > max_bytes:
            hint = "Split the input into shorter chunks (carry final_state as s0), or raise max_bytes"
            check_bytes(f"{caller}: {what}", shape, dtype, max_bytes, hint=hint)


def final_state(tr: Trace) -> np.ndarray:
    """s_{T-1} in the caller's layout: (B, H) if batched, else (H,)."""
    return tr.batch.state_out(tr.s[-1])


@dataclass(frozen=True, eq=False)
class ForwardResult:
    """The forward pass in the caller's layout (batch-first when batched).

    Attributes:
        a: pre-activations a_t, (T, H) or (B, T, H).
        s: states s_t, (T, H) or (B, T, H).
        o: logits o_t = V s_t + c, (T, K) or (B, T, K).
        y_hat: softmax(o_t), same shape as o.
        final_state: s_{T-1}, (H,) or (B, H).
    """

    a: np.ndarray
    s: np.ndarray
    o: np.ndarray
    y_hat: np.ndarray
    final_state: np.ndarray


def forward(
    p: RNNParams,
    xs: object,
    *,
    activation: str | None = None,
    s0: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ForwardResult:
    """Run the RNN forward; same input forms and checks as bptt (no labels needed).

    Args:
        p: RNNParams.  xs: (T,) / (B, T) token ids or (T, D) / (B, T, D) dense inputs.
        activation: "tanh", "sigmoid", "relu" or "identity" (None: "tanh").  s0: None, (H,) or (B, H).
        max_bytes: the largest single array the call may allocate (default 1 GiB): a_t and
            s_t, (T, B, H), o_t and y_hat_t, (T, B, K), are each refused past it.

    Raises:
        ValueError naming the argument; TooLargeError past max_bytes (before allocating);
        NonFiniteError naming the first step whose state, pre-activation (returned as a, it may
        overflow while f(a_t) is finite, as tanh(inf) = 1) or logits are not finite.
    """
    limit = check_max_bytes(max_bytes)
    batch = prepare(p, xs, None, activation=elman_activation(activation), s0=s0, labels_required=False,
                    size_check=lambda sz: _check_sizes("forward", _forward_arrays(sz), limit))
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    with np.errstate(**QUIET):  # overflow raises NonFiniteError, never a warning
        tr = run_forward(p, batch)
        check_steps_finite("a_t", tr.a, 0)
        o = logits(tr.s.reshape(T * B, H), tr.V.T, tr.c).reshape(T, B, K)
        check_steps_finite("o_t", o, 0)
        y_hat = softmax(o)
    return ForwardResult(
        a=batch.to_batch_first(tr.a),
        s=batch.to_batch_first(tr.s),
        o=batch.to_batch_first(o),
        y_hat=batch.to_batch_first(y_hat),
        final_state=final_state(tr),
    )


def backward(
    p: RNNParams,
    xs: object,
    dhs: np.ndarray,
    final_parts: list[tuple[str, np.ndarray]],
    s0: object | None,
    tau: int | None,
    activation: str | None,
    limit: int,
) -> tuple[RNNParams, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """The Elman layer's vector-Jacobian product (manual_bptt.layer.backward, which checked the rest).

    Args:
        dhs: dL/ds_t as given (real numbers), (B, T, H) or (T, H).  final_parts: d_final's one
            part [("d_final", ds)], or [].  tau: None or >= 0.  limit: max_bytes.

    Returns:
        (grads (U, W, b; V and c None), dxs or None, ds0, the states s_t in the caller's layout,
        the final state).
    """

    def refuse_too_large(sz: Sizes) -> None:
        full = tau is None or tau >= sz.T - 1
        extra = [
            ("the outputs h_t, (B, T, H)", (sz.T, sz.B, sz.H), sz.dtype),
            ("dhs in the compute dtype, (T, B, H)", (sz.T, sz.B, sz.H), sz.dtype),
        ]
        _check_sizes("backward", _bptt_arrays(sz, full) + extra, limit)

    batch = prepare(
        p,
        xs,
        None,
        activation=elman_activation(activation),
        s0=s0,
        labels_required=False,
        size_check=refuse_too_large,
    )
    T, B, H = batch.T, batch.B, batch.H
    dhs_tm, d_fin = upstream_gradients(dhs, final_parts, T, B, H, batch.batched, batch.dtype)
    tr, dU, dW, db, ds0, dxs = layer_backward(p, batch, dhs_tm, d_fin, tau)
    grads = RNNParams._adopt(U=dU, W=dW, b=db, V=None, c=None)
    return grads, dxs, ds0, batch.to_batch_first(tr.s), final_state(tr)


def driver_inputs(
    p: RNNParams,
    xs: object,
    ys: object | None,
    *,
    activation: str | None,
    s0: object | None,
    reduction: str = "sum",
    mask: object | None = None,
    labels: bool = True,
    owned: bool = False,
    size_check: Callable[[Sizes, np.dtype], None] | None = None,
) -> CellInputs:
    """The inputs of a call, validated as bptt validates them, for the generic drivers over
    cells.elman. ``labels``: ys is required (False: ys must be None). ``owned``: copies of the
    inputs that share no memory with the caller's (for results that outlive the call).
    ``size_check``: called with the Sizes and the compute dtype before any value of the inputs
    is scanned or copied (where decompose, state_jacobian and rtrl refuse a call too large)."""
    batch = prepare(
        p,
        xs,
        ys,
        activation=elman_activation(activation),
        s0=s0,
        reduction=reduction,
        mask=mask,
        labels_required=labels,
        size_check=None if size_check is None else (lambda sz: size_check(sz, sz.dtype)),
    )
    if owned:
        batch = batch.owned()
    dt = batch.dtype
    U, W, V = (np.asarray(m, dtype=dt) for m in (p.U, p.W, p.V))
    b = None if p.b is None else np.asarray(p.b, dtype=dt)
    c = None if p.c is None else np.asarray(p.c, dtype=dt)
    w = StepWeights(W=W, WT=np.ascontiguousarray(W.T), b_hh=None, H=batch.H, act=batch.act)
    return CellInputs(
        cell=ELMAN,
        w=w,
        U=U,
        b_ih=b,
        V=V,
        c=c,
        bias_names=p.bias_names,
        tokens=batch.tokens,
        X=batch.X,
        s0=batch.s0,
        Y=batch.Y,
        weight=batch.weight,
        batched=batch.batched,
        prep=batch,
    )
