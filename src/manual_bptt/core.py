"""Forward pass, loss, and backpropagation through time by the reverse recursion.

Model (batch-first at the API, time-major inside):

    a_t = U x_t + W s_{t-1} + b        s_t = f(a_t)         s_{-1} = s0
    o_t = V s_t + c                    y_hat_t = softmax(o_t)
    E_t = -log y_hat_t[y_t]            E = sum_t w_t E_t

with w_t = mask_t (reduction="sum") or mask_t / (number of counted targets) ("mean").

Backward, with delta_t := dE/da_t (the total derivative, through every later step):

    dE/do_t   = w_t (y_hat_t - onehot(y_t))                  (softmax cross-entropy)
    e_t       = V^T dE/do_t                                   (dE_t/ds_t, direct part)
    delta_t   = (e_t + W^T delta_{t+1}) * f'(a_t)             (delta_T = 0)
    dW = sum_t delta_t s_{t-1}^T   dU = sum_t delta_t x_t^T   db = sum_t delta_t
    dV = sum_t dE/do_t s_t^T       dc = sum_t dE/do_t         ds0 = W^T delta_0

The two recursions over t (forward and backward) are the only Python loops over single steps;
every other product runs over a block of steps, about _ROWS rows (t, b), at once. Besides its
outputs, a call to bptt allocates only the states s_t, (T + 1, B, H), and a few blocks of that
many rows, each reused:
    forward:  U x_t + b for a block of steps, then a_t and s_t = f(a_t) step by step;
    backward: the blocks in reverse order; for each, dE/do_t and e_t, then delta_t by the
              recursion (f'(a_t) from s_t, a cache-sized block of steps at a time), then
              that block's terms of dU, dW, db and dE/dxs, while the block is in cache.
              The same sweep (_bptt_blocks) serves the layer alone (layer_backward, behind
              manual_bptt.backward): there e_t is the caller's upstream dL/ds_t instead.
Batch-first dense inputs are read in place, copied to time-major order a block at a time.
Truncated BPTT keeps e_t for all steps (its sums over lags need them) in one (T, B, H) array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._inputs import Batch, Sizes, check_max_bytes, check_truncate, prepare
from .errors import (
    DEFAULT_MAX_BYTES,
    QUIET,
    all_finite,
    check_bytes,
    check_grads_finite,
    check_steps_finite,
    nbytes,
)
from .output import logits, output_layer, raise_loss_overflow, raise_loss_sum_overflow, softmax
from .params import RNNParams

#: Rows (t, b) per block of steps (at least one step per block), where work is done a block
#: of steps at a time: enough rows for full-speed matrix products, few enough to stay in cache.
_ROWS = 1024
#: Numbers per block of elementwise work done a block of steps at a time (f'(a_t) in the
#: backward recursion): 256 KiB of float64, so the block stays in cache between its uses.
_NUMBERS = 1 << 15
_INT64 = np.dtype(np.int64)  # the copies of token ids and labels


def elman_activation(activation: object) -> object:
    """The Elman cell's activation name: None means "tanh" (anything else is checked by prepare)."""
    return "tanh" if activation is None else activation


@dataclass(frozen=True, eq=False)
class Trace:
    """What the forward pass keeps for the backward pass, time-major.

    Attributes:
        batch: the validated inputs.
        a: (T, B, H) pre-activations a_t, or None when not kept (bptt's full recursion
            needs only s_t: see run_forward's keep_a).
        s: (T, B, H) states s_t.
        s_in: (T, B, H) the state entering each step, s_in[t] = s_{t-1} (s_in[0] = s0).
            s and s_in are two overlapping views of one (T + 1, B, H) buffer, so every
            weight gradient that needs s_{t-1} is a single matrix product over all rows.
        U, W, V, b, c: the parameters in the compute dtype (b, c may be None).
        fprime: (T, B, H) f'(a_t), computed from s on first use (bptt's full recursion
            computes it a block of steps at a time instead).
    """

    batch: Batch
    a: np.ndarray | None
    s: np.ndarray
    s_in: np.ndarray
    U: np.ndarray
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray | None
    c: np.ndarray | None

    @cached_property
    def fprime(self) -> np.ndarray:
        """(T, B, H) f'(a_t) for every step, from s_t alone (see activations)."""
        return self.batch.act.prime(self.s)

    def s_prev(self, k: int) -> np.ndarray:
        """s_{k-1}, (B, H): the state entering step k (s0 for k = 0)."""
        return self.s_in[k]


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


def run_forward(p: RNNParams, batch: Batch, *, keep_a: bool = True, check_states: bool = True) -> Trace:
    """The recurrence a_t = U x_t + W s_{t-1} + b, s_t = f(a_t) over a validated batch.

    Called inside ``np.errstate(**QUIET)`` (bptt, forward, the layer backward): overflow is
    found by the finiteness checks, never reported as a warning.

    Args:
        p: the parameters.
        batch: the validated inputs.
        keep_a: keep every a_t in Trace.a, (T, B, H); if False, a_t exists only a block of
            steps at a time (in one reused block) and Trace.a is None.
        check_states: raise NonFiniteError at the first step whose state s_t is not finite.
            bptt passes False: a non-finite s_t makes the loss of its step non-finite (NaN
            and inf survive every product and sum of the output layer, masked steps
            included, since 0 * inf is NaN), the loss is checked a block at a time
            (_output_block), and the search that follows names the first such state.
    """
    dt = batch.dtype
    T, B, H = batch.T, batch.B, batch.H
    U, W, V = (np.asarray(m, dtype=dt) for m in (p.U, p.W, p.V))
    b = None if p.b is None else np.asarray(p.b, dtype=dt)
    c = None if p.c is None else np.asarray(p.c, dtype=dt)

    blocks = step_blocks(T, B)
    a = np.empty((T if keep_a else blocks[0][1], B, H), dtype=dt)
    states = np.empty((T + 1, B, H), dtype=dt)  # s_{-1} = s0, s_0, ..., s_{T-1}
    _recurrence(batch, blocks, a, keep_a, states, U, W, b, check_states)
    return Trace(
        batch=batch, a=a if keep_a else None, s=states[1:], s_in=states[:-1], U=U, W=W, V=V, b=b, c=c
    )


def _recurrence(
    batch: Batch,
    blocks: list[tuple[int, int]],
    a: np.ndarray,
    keep_a: bool,
    states: np.ndarray,
    U: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    check_states: bool,
) -> None:
    """Fill states, (T + 1, B, H), with s0, s_0, ..., s_{T-1}, and a with a_t (see run_forward).

    With check_states, raises NonFiniteError at the first step whose state is not finite.
    """
    B, H = batch.B, batch.H
    states[0] = batch.s0  # s_{-1} = s0
    if batch.tokens is not None and blocks[0][1] * B < batch.D:
        UT = U.T  # fewer rows to gather than U has columns: gathered from U itself, no copy
    else:
        UT = np.ascontiguousarray(U.T)  # contiguous rows to gather, and x @ UT is faster than x @ U.T
    WT = np.ascontiguousarray(W.T)  # s_{t-1} @ WT: the per-step product, faster than with W.T
    x_buf = _x_buffer(batch, blocks)
    recur = np.empty((B, H), dtype=states.dtype)
    f = batch.act.f
    for start, end in blocks:
        a_blk = a[start:end] if keep_a else a[: end - start]
        # input term U x_t + b for the block: a column gather for tokens, one matrix product
        # for dense inputs (b is added while the block is in cache)
        if batch.tokens is not None:
            np.take(UT, batch.tokens[start:end], axis=0, out=a_blk)
        else:
            np.matmul(_x_rows(batch.X, start, end, x_buf), UT, out=a_blk.reshape(-1, H))
        if b is not None:
            a_blk += b
        # one row of each array per step; iterating yields views, without per-step indexing
        for a_t, s_prev, s_t in zip(a_blk, states[start:end], states[start + 1 : end + 1], strict=True):
            np.dot(s_prev, WT, out=recur)  # W s_{t-1}
            a_t += recur  # a_t = (U x_t + b) + W s_{t-1}
            f(a_t, out=s_t)  # s_t = f(a_t)
        if check_states:
            check_steps_finite("s_t", states[start + 1 : end + 1], start)


def step_blocks(T: int, B: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive blocks of steps: _ROWS rows (t, b) each, at least one step."""
    steps = max(1, _ROWS // B)
    return [(t, min(t + steps, T)) for t in range(0, T, steps)]


def _x_buffer(batch: Batch, blocks: list[tuple[int, int]]) -> np.ndarray | None:
    """The one block that _x_rows copies into, or None when no copy is needed."""
    X = batch.X
    if X is None or X.flags.c_contiguous:
        return None
    return np.empty_like(X[: blocks[0][1]], order="C")


def _x_rows(X: np.ndarray, start: int, end: int, buf: np.ndarray | None) -> np.ndarray:
    """x_k for the steps k in [start, end) as a C-contiguous (rows, D) matrix of rows (t, b).

    A C-contiguous X, (T, B, D), gives a view. The time-major view of the caller's
    batch-first array (see Batch.X) is copied into buf (from _x_buffer), reused for every
    block: the matrix products get contiguous rows, and no (T, B, D) copy is made.
    """
    if buf is None:
        return X[start:end].reshape(-1, X.shape[-1])
    x = buf[: end - start]
    np.copyto(x, X[start:end])  # x_k for the steps k of this block, time-major
    return x.reshape(-1, X.shape[-1])


@dataclass(eq=False)
class _GradSums:
    """Gradients that blocks of steps add their terms to (+=, in place), within one call.

    dW (H, H), dV (K, H), db (H,) or None, dc (K,) or None; dU (H, D) for dense inputs, or
    for token inputs dUT (D, H), its transpose, whose row v collects the g_k with x_k = v.
    All of them are views of one zeroed buffer (``flat``): one allocation, and one sum tells
    whether every entry is finite (see all_finite).
    """

    flat: np.ndarray
    dU: np.ndarray | None
    dUT: np.ndarray | None
    dW: np.ndarray
    dV: np.ndarray
    db: np.ndarray | None
    dc: np.ndarray | None

    @classmethod
    def zeros(cls, tr: Trace) -> _GradSums:
        batch = tr.batch
        D, H, K = batch.D, batch.H, batch.K
        tokens = batch.tokens is not None
        nb = 0 if tr.b is None else H
        nc = 0 if tr.c is None else K
        # [dU or dUT | dW | dV | db | dc], each a view of its slice
        w0 = D * H
        v0 = w0 + H * H
        b0 = v0 + K * H
        flat = np.zeros(b0 + nb + nc, dtype=batch.dtype)
        dU = flat[:w0].reshape((D, H) if tokens else (H, D))
        return cls(
            flat=flat,
            dU=None if tokens else dU,
            dUT=dU if tokens else None,
            dW=flat[w0:v0].reshape(H, H),
            dV=flat[v0:b0].reshape(K, H),
            db=flat[b0 : b0 + nb] if nb else None,
            dc=flat[b0 + nb :] if nc else None,
        )

    def input_grad(self) -> np.ndarray:
        """dU, (H, D)."""
        return self.dU if self.dUT is None else np.ascontiguousarray(self.dUT.T)


def _output_block(
    tr: Trace,
    start: int,
    end: int,
    VT: np.ndarray,
    dO_buf: np.ndarray,
    e_out: np.ndarray,
    dV: np.ndarray,
    dc: np.ndarray | None,
) -> np.floating:
    """The output layer (manual_bptt.output) on the steps t in [start, end); returns their part of E.

        o_t = V s_t + c,   dE/do_t = w_t (y_hat_t - onehot(y_t)),   e_t = V^T dE/do_t,
        dV += sum_t dE/do_t s_t^T,   dc += sum_t dE/do_t   (added in place).

    Args:
        VT: (H, K) V^T, C-contiguous.  dO_buf: scratch of at least (end - start) B rows of K.
        e_out: (end - start, B, H), receives e_t.  dV: (K, H).  dc: (K,) or None.
    """
    batch = tr.batch
    n, H = (end - start) * batch.B, batch.H

    def overflow(loss: np.floating) -> None:
        # bptt's forward pass does not check the states (see run_forward): the first state that
        # is not finite comes first, then the logits or loss terms of these steps
        check_steps_finite("s_t", tr.s, 0)
        raise_loss_overflow(tr.s[start:end], tr.V, tr.c, batch.Y[start:end], batch.weight[start:end], start)

    h = tr.s[start:end].reshape(n, H)  # s_t, one row per (t, b)
    y, w = batch.Y[start:end].reshape(n), batch.weight[start:end].reshape(n)
    e = e_out.reshape(n, H)  # receives e_t
    return output_layer(h, VT, tr.V, tr.c, y, w, overflow, dO_out=dO_buf[:n], e_out=e, dV=dV, dc=dc).loss


def output_grads(tr: Trace, e_out: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The output layer for every step: loss E, dV (K, H), dc (K,) or None, and e_t.

    A block of steps at a time (see _output_block), so that dE/do never exists as a (T, B, K)
    array.

    Args:
        tr: the forward trace.
        e_out: (T, B, H) array that receives e_t = V^T dE/do_t.
    """
    batch = tr.batch
    blocks = step_blocks(batch.T, batch.B)
    VT = np.ascontiguousarray(tr.V.T)  # S @ VT is a faster product than S @ V.T (float32, small)
    dO_buf = np.empty((blocks[0][1] * batch.B, batch.K), dtype=batch.dtype)
    dV = np.zeros((batch.K, batch.H), dtype=batch.dtype)
    dc = None if tr.c is None else np.zeros(batch.K, dtype=batch.dtype)
    loss = batch.dtype.type(0)
    for start, end in blocks:
        loss += _output_block(tr, start, end, VT, dO_buf, e_out[start:end], dV, dc)
    return float(loss), dV, dc


def _reverse_recursion(
    tr: Trace, delta: np.ndarray, start: int, carry: np.ndarray, fp_buf: np.ndarray
) -> None:
    """delta_t = (e_t + W^T delta_{t+1}) * f'(a_t) for the steps of one block, the last first.

    Args:
        tr: the forward trace.
        delta: (n, B, H) e_t for the steps t = start, ..., start + n - 1; overwritten by delta_t.
        start: the first step of the block.
        carry: (B, H) W^T delta_{start+n} on entry (zeros when start + n = T, as delta_T = 0);
            W^T delta_start on return, which is dE/ds0 (per row) when start = 0.
        fp_buf: (m, B, H) scratch, m >= 1: f'(a_t) is computed from s_t m steps at a time.
    """
    W, s, prime = tr.W, tr.s, tr.batch.act.prime
    m = len(fp_buf)
    for hi in range(start + len(delta), start, -m):  # sub-blocks of steps [lo, hi), the last first
        lo = max(hi - m, start)
        fp = prime(s[lo:hi], out=fp_buf[: hi - lo])  # f'(a_t) from s_t
        # the steps t = hi - 1, ..., lo as views, the last first (no per-step indexing)
        for d_t, fp_t in zip(delta[lo - start : hi - start][::-1], fp[::-1], strict=True):
            carry += d_t  # e_t + W^T delta_{t+1}; e_t is read before delta_t is written over it
            np.multiply(carry, fp_t, out=d_t)  # delta_t = (e_t + W^T delta_{t+1}) * f'(a_t)
            np.dot(d_t, W, out=carry)  # W^T delta_t, for step t - 1


def _fprime_buffer(batch: Batch, steps: int) -> np.ndarray:
    """Scratch for f'(a_t) of up to _NUMBERS numbers (at least one step, at most `steps`)."""
    m = min(steps, max(1, _NUMBERS // (batch.B * batch.H)))
    return np.empty((m, batch.B, batch.H), dtype=batch.dtype)


def truncated_deltas(tr: Trace, e: np.ndarray, truncate: int, out: np.ndarray | None = None) -> np.ndarray:
    """The per-step error signals g_k, (T, B, H), of truncated BPTT, from which every gradient follows.

    g_k = sum_{t=k..min(k+tau, T-1)} delta_{t,k}, where delta_{t,k} = dE_t/da_k along paths
    inside steps k..t only:
        delta_{t,t} = e_t * f'(a_t),  delta_{t,k-1} = (W^T delta_{t,k}) * f'(a_{k-1}).
    That is the seed's sum over k restricted to t - tau <= k <= t. It costs
    O(min(tau, T) * T) steps, computed lag by lag: for lag L the slices delta_{k+L,k} for
    all k form one matrix product. (Full BPTT is the reverse recursion of _bptt_blocks; with
    tau >= T - 1 this sum over lags gives the same g_k, at O(T^2) cost.)

    Args:
        tr: the forward trace.
        e: (T, B, H) e_t = dE_t/ds_t, the direct part (not through the recurrence).
        truncate: tau >= 0.
        out: optional (T, B, H) array for the result; it may be ``e`` itself (then e is
            overwritten), which saves one array of that size.
    """
    T = tr.batch.T
    total = None
    for L, Q in lag_deltas(tr, e, truncate):
        if total is None:  # lag 0, Q_0 = e * f'(a): a fresh array, and e is not read again
            if out is not None:
                out[...] = Q
            total = Q if out is None else out
        else:
            total[: T - L] += Q  # g_k += delta_{k+L,k}
    return total


def lag_deltas(tr: Trace, e: np.ndarray, max_lag: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (L, Q_L) for L = 0..min(max_lag, T-1), where Q_L[k] = delta_{k+L,k}, (T-L, B, H).

    delta_{t,k} = dE_t/da_k along paths inside steps k..t: the seed's (t, k) term before
    its last factor. For lag L all k are advanced together by one matrix product:
        Q_0[k] = e_k * f'(a_k),    Q_L[k] = (W^T Q_{L-1}[k+1]) * f'(a_k).
    The yielded array is fresh for each L (the caller may keep it).
    """
    T, B, H = tr.batch.T, tr.batch.B, tr.batch.H
    Q = e * tr.fprime
    yield 0, Q
    for L in range(1, min(max_lag, T - 1) + 1):
        n = T - L  # the k with k + L <= T - 1
        Q = (Q[1:].reshape(n * B, H) @ tr.W).reshape(n, B, H)
        Q *= tr.fprime[:n]
        yield L, Q


def _input_grad_arrays(batch: Batch) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(dxs in the caller's layout, its time-major (T, B, D) view), or (None, None) for tokens."""
    if batch.tokens is not None:
        return None, None
    if batch.batched:
        dxs = np.empty((batch.B, batch.T, batch.D), dtype=batch.dtype)
        return dxs, dxs.swapaxes(0, 1)
    dxs = np.empty((batch.T, batch.D), dtype=batch.dtype)
    return dxs, dxs[:, None, :]


def _delta_block_grads(
    tr: Trace,
    delta: np.ndarray,
    start: int,
    x_buf: np.ndarray | None,
    dxs_tm: np.ndarray | None,
    sums: _GradSums,
) -> None:
    """Add the terms of the steps k in [start, start + n) to the gradients, and write dE/dx_k.

        dW += sum_k g_k s_{k-1}^T,   dU += sum_k g_k x_k^T,   db += sum_k g_k,
        dE/dx_k = U^T g_k   (into dxs_tm[k], the time-major view of dxs; dense inputs).

    Args:
        delta: (n, B, H) the error signals g_k = dE/da_k of these steps.
        x_buf: the block from _x_buffer (None if xs needs no copy); free again once dU has
            its terms, it then holds dE/dx_k on its way to the caller's batch-first layout.
    """
    batch = tr.batch
    end = start + len(delta)
    n, H = len(delta) * batch.B, batch.H
    delta_rows = delta.reshape(n, H)
    sums.dW += delta_rows.T @ tr.s_in[start:end].reshape(n, H)  # dW += sum_k g_k s_{k-1}^T
    if sums.db is not None:
        sums.db += delta_rows.sum(axis=0)  # db += sum_k g_k
    if batch.tokens is not None:
        _add_rows_by_token(sums.dUT, batch.tokens[start:end].reshape(n), delta_rows)
        return
    sums.dU += delta_rows.T @ _x_rows(batch.X, start, end, x_buf)  # dU += sum_k g_k x_k^T
    dx = dxs_tm[start:end]
    if dx.flags.c_contiguous:  # time-major dxs (unbatched, or B = 1)
        np.matmul(delta_rows, tr.U, out=dx.reshape(n, batch.D))  # dE/dx_k = U^T g_k
    else:  # batch-first dxs: computed into the free block, then copied into place
        rows = np.empty_like(dx, order="C") if x_buf is None else x_buf[: len(delta)]
        np.matmul(delta_rows, tr.U, out=rows.reshape(n, batch.D))  # dE/dx_k = U^T g_k
        dx[...] = rows


def _add_rows_by_token(dUT: np.ndarray, tokens: np.ndarray, delta_rows: np.ndarray) -> None:
    """dUT[v] += the sum of the rows delta_rows[i] with tokens[i] = v.

    That is dU += sum_k g_k x_k^T for one-hot x_k: column v of dU collects the g_k of the
    steps with x_k = v. np.add.at sums repeated indices (plain += would keep one of them);
    on flat indices v * H + h it costs O(rows H), whatever the vocabulary.
    """
    H = delta_rows.shape[1]
    cell = (tokens[:, None] * H + np.arange(H)).reshape(-1)  # flat index of (v, h) in dUT
    np.add.at(dUT.reshape(-1), cell, delta_rows.reshape(-1))


def delta_grads(
    tr: Trace, deltas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The gradients that follow from the error signals g_k = dE/da_k.

    Args:
        tr: the forward trace.
        deltas: (T, B, H) error signal of each pre-activation a_k (see truncated_deltas, _bptt_blocks).
    Returns:
        (dU (H, D), dW (H, H), db (H,) or None, ds0 in s0's shape, dxs in xs's shape or None):
        dW = sum_k g_k s_{k-1}^T,  dU = sum_k g_k x_k^T,  db = sum_k g_k,
        ds0 = W^T g_0,  dE/dx_k = U^T g_k;  a block of steps at a time (_delta_block_grads).
    """
    batch = tr.batch
    blocks = step_blocks(batch.T, batch.B)
    sums = _GradSums.zeros(tr)
    dxs, dxs_tm = _input_grad_arrays(batch)
    x_buf = _x_buffer(batch, blocks)
    for start, end in blocks:
        _delta_block_grads(tr, deltas[start:end], start, x_buf, dxs_tm, sums)
    ds0 = batch.fold_ds0(deltas[0] @ tr.W)  # ds0 = W^T g_0
    return sums.input_grad(), sums.dW, sums.db, ds0, dxs


#: The per-block source of e_t for _bptt_blocks: (start, end, block) -> the block's part of
#: the loss. It writes e_t = dE_t/ds_t (the direct part, (end - start, B, H)) into block.
Upstream = Callable[[int, int, np.ndarray], float]


def _bptt_blocks(
    tr: Trace, upstream: Upstream, sums: _GradSums, carry: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Full BPTT, a block of steps at a time, the last block first: the one reverse recursion.

    For each block: ``upstream`` writes e_t into it (bptt: the output layer, which also adds
    its terms of dV and dc; the layer backward: the caller's dE/ds_t), then the recursion for
    delta_t, then the block's terms of dW, dU, db and dE/dx_k, while delta_t is in cache. One
    (steps, B, H) block holds e_t, then delta_t; the recursion carries W^T delta_t from block
    to block.

    Args:
        tr: the forward trace (keep_a=False suffices).
        upstream: see Upstream.
        sums: the gradient sums that receive the terms (+=).
        carry: (B, H) the gradient arriving at s_{T-1} from beyond the last step (zeros, or a
            caller's dE/ds_{T-1} of the final state); overwritten, W^T delta_0 on return.

    Returns:
        (the sum of upstream's loss parts, ds0 in s0's shape, dxs in xs's shape or None).
    """
    batch = tr.batch
    B, H, dt = batch.B, batch.H, batch.dtype
    blocks = step_blocks(batch.T, B)
    steps = blocks[0][1]
    signal = np.empty((steps, B, H), dtype=dt)  # e_t, then delta_t, for the steps of one block
    fp_buf = _fprime_buffer(batch, steps)
    x_buf = _x_buffer(batch, blocks)
    dxs, dxs_tm = _input_grad_arrays(batch)
    loss = dt.type(0)
    for start, end in reversed(blocks):
        block = signal[: end - start]
        loss += upstream(start, end, block)  # block holds e_t
        _reverse_recursion(tr, block, start, carry, fp_buf)  # block holds delta_t
        check_steps_finite("dE/da_t", block, start, last_first=True)
        _delta_block_grads(tr, block, start, x_buf, dxs_tm, sums)
    return float(loss), batch.fold_ds0(carry), dxs  # carry = W^T delta_0 = ds0 per row


def _full_bptt(tr: Trace) -> tuple[float, _GradSums, np.ndarray, np.ndarray | None]:
    """bptt's full recursion: _bptt_blocks with e_t = V^T dE/do_t from the output layer.

    Returns (loss, the gradient sums, ds0 in s0's shape, dxs in xs's shape or None).
    """
    batch = tr.batch
    steps = step_blocks(batch.T, batch.B)[0][1]
    dO_buf = np.empty((steps * batch.B, batch.K), dtype=batch.dtype)
    VT = np.ascontiguousarray(tr.V.T)  # S @ VT is a faster product than S @ V.T (float32, small)
    sums = _GradSums.zeros(tr)

    def from_output_layer(start: int, end: int, block: np.ndarray) -> float:
        return _output_block(tr, start, end, VT, dO_buf, block, sums.dV, sums.dc)  # e_t = V^T dE/do_t

    carry = np.zeros((batch.B, batch.H), dtype=batch.dtype)  # W^T delta_T = 0
    loss, ds0, dxs = _bptt_blocks(tr, from_output_layer, sums, carry)
    return loss, sums, ds0, dxs


def layer_backward(
    p: RNNParams, batch: Batch, dhs: np.ndarray, d_final: np.ndarray | None, truncate: int | None
) -> tuple[Trace, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The vector-Jacobian product of the Elman layer alone (manual_bptt.layer.backward).

    L = sum_t <dhs_t, s_t> + <d_final, s_{T-1}>; the same recursion as bptt with e_t = dhs_t.

    Args:
        p: RNNParams (V and c are not used).  batch: the validated inputs (no labels needed).
        dhs: (T, B, H) dL/ds_t from above, time-major, in batch.dtype (read only).
        d_final: (B, H) dL/ds_{T-1} of the final state, or None (zeros). Under truncation it
            is part of the upstream of step T - 1 (its chain keeps the steps T-1-tau..T-1).
        truncate: None (full) or tau >= 0, as for bptt.

    Returns:
        (the trace, dU (H, D), dW (H, H), db (H,) or None, ds0 in s0's shape, dxs or None).
    """
    T, B, H, dt = batch.T, batch.B, batch.H, batch.dtype
    with np.errstate(**QUIET):  # overflow raises NonFiniteError, never a warning
        if truncate is None or truncate >= T - 1:
            tr = run_forward(p, batch, keep_a=False)
            sums = _GradSums.zeros(tr)

            def from_caller(start: int, end: int, block: np.ndarray) -> float:
                np.copyto(block, dhs[start:end])  # e_t = dL/ds_t from above
                return 0.0

            carry = np.zeros((B, H), dtype=dt) if d_final is None else d_final.copy()
            _, ds0, dxs = _bptt_blocks(tr, from_caller, sums, carry)
            dU, dW, db = sums.input_grad(), sums.dW, sums.db
        else:
            tr = run_forward(p, batch)
            e = tr.a  # e_t = dL/ds_t over a, needed no more (f'(a_t) comes from s_t)
            np.copyto(e, dhs)
            if d_final is not None:
                e[T - 1] += d_final  # the final state's gradient: upstream of step T - 1
            deltas = truncated_deltas(tr, e, truncate, out=e)
            check_steps_finite("dE/da_t", deltas, 0, last_first=True)
            dU, dW, db, ds0, dxs = delta_grads(tr, deltas)
        check_grads_finite({"dE/dU": dU, "dE/dW": dW, "dE/db": db, "dE/ds0": ds0, "dE/dxs": dxs})
    return tr, dU, dW, db, ds0, dxs


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
            loss, sums, ds0, dxs = _full_bptt(tr)
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
    return tr.s[-1].copy() if tr.batch.batched else tr.s[-1, 0].copy()


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
        NonFiniteError naming the first step whose state or logits are not finite.
    """
    limit = check_max_bytes(max_bytes)
    batch = prepare(p, xs, None, activation=elman_activation(activation), s0=s0, labels_required=False,
                    size_check=lambda sz: _check_sizes("forward", _forward_arrays(sz), limit))
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    with np.errstate(**QUIET):  # overflow raises NonFiniteError, never a warning
        tr = run_forward(p, batch)
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
