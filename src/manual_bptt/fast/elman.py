"""The Elman cell's fast path: the forward pass and BPTT by the reverse recursion, in blocks of steps.

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
every other product runs over a block of steps, about blocks._ROWS rows (t, b), at once. Besides its
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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._inputs import Batch
from ..errors import QUIET, check_grads_finite, check_steps_finite
from ..output import output_layer, raise_loss_overflow
from ..params import RNNParams
from .blocks import add_rows_by_token, input_grad_arrays, step_blocks, sub_block_steps, x_buffer, x_rows


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
    x_buf = x_buffer(batch.X, blocks[0][1])
    recur = np.empty((B, H), dtype=states.dtype)
    f = batch.act.f
    for start, end in blocks:
        a_blk = a[start:end] if keep_a else a[: end - start]
        # input term U x_t + b for the block: a column gather for tokens, one matrix product
        # for dense inputs (b is added while the block is in cache)
        if batch.tokens is not None:
            np.take(UT, batch.tokens[start:end], axis=0, out=a_blk)
        else:
            np.matmul(x_rows(batch.X, start, end, x_buf), UT, out=a_blk.reshape(-1, H))
        if b is not None:
            a_blk += b
        # one row of each array per step; iterating yields views, without per-step indexing
        for a_t, s_prev, s_t in zip(a_blk, states[start:end], states[start + 1 : end + 1], strict=True):
            np.dot(s_prev, WT, out=recur)  # W s_{t-1}
            a_t += recur  # a_t = (U x_t + b) + W s_{t-1}
            f(a_t, out=s_t)  # s_t = f(a_t)
        if check_states:
            check_steps_finite("s_t", states[start + 1 : end + 1], start)


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
    """Scratch for f'(a_t) of a sub-block of steps (blocks.sub_block_steps: at most blocks._NUMBERS
    numbers, at least one step, at most `steps`)."""
    m = sub_block_steps(steps, batch.B, batch.H)
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
        x_buf: the block from x_buffer (None if xs needs no copy); free again once dU has
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
        add_rows_by_token(sums.dUT, batch.tokens[start:end].reshape(n), delta_rows)
        return
    sums.dU += delta_rows.T @ x_rows(batch.X, start, end, x_buf)  # dU += sum_k g_k x_k^T
    dx = dxs_tm[start:end]
    if dx.flags.c_contiguous:  # time-major dxs (unbatched, or B = 1)
        np.matmul(delta_rows, tr.U, out=dx.reshape(n, batch.D))  # dE/dx_k = U^T g_k
    else:  # batch-first dxs: computed into the free block, then copied into place
        rows = np.empty_like(dx, order="C") if x_buf is None else x_buf[: len(delta)]
        np.matmul(delta_rows, tr.U, out=rows.reshape(n, batch.D))  # dE/dx_k = U^T g_k
        dx[...] = rows


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
    dxs, dxs_tm = input_grad_arrays(batch, batch.dtype)
    x_buf = x_buffer(batch.X, blocks[0][1])
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
    x_buf = x_buffer(batch.X, blocks[0][1])
    dxs, dxs_tm = input_grad_arrays(batch, batch.dtype)
    loss = dt.type(0)
    for start, end in reversed(blocks):
        block = signal[: end - start]
        loss += upstream(start, end, block)  # block holds e_t
        _reverse_recursion(tr, block, start, carry, fp_buf)  # block holds delta_t
        check_steps_finite("dE/da_t", block, start, last_first=True)
        _delta_block_grads(tr, block, start, x_buf, dxs_tm, sums)
    return float(loss), batch.fold_ds0(carry), dxs  # carry = W^T delta_0 = ds0 per row


def full_bptt(tr: Trace) -> tuple[float, _GradSums, np.ndarray, np.ndarray | None]:
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
    T = batch.T
    with np.errstate(**QUIET):  # overflow raises NonFiniteError, never a warning
        if truncate is None or truncate >= T - 1:
            tr = run_forward(p, batch, keep_a=False)
            dU, dW, db, ds0, dxs = trace_backward(tr, dhs, d_final)
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


def trace_backward(
    tr: Trace, dhs: np.ndarray, d_final: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Full BPTT of the layer alone over a forward pass already run (run_forward, keep_a=False):
    L = sum_t <dhs_t, s_t> + <d_final, s_{T-1}>, by the blocked reverse recursion.

    Args:
        tr: the forward pass.  dhs: (T, B, H) dL/ds_t from above, time-major (read only).
        d_final: (B, H) dL/ds_{T-1}, or None.

    Returns:
        (dU (H, D), dW (H, H), db (H,) or None, ds0 in s0's shape, dxs in xs's shape or None).
    """
    batch = tr.batch
    with np.errstate(**QUIET):  # overflow raises NonFiniteError, never a warning
        sums = _GradSums.zeros(tr)

        def from_caller(start: int, end: int, block: np.ndarray) -> float:
            np.copyto(block, dhs[start:end])  # e_t = dL/ds_t from above
            return 0.0

        carry = np.zeros((batch.B, batch.H), dtype=batch.dtype) if d_final is None else d_final.copy()
        _, ds0, dxs = _bptt_blocks(tr, from_caller, sums, carry)
    return sums.input_grad(), sums.dW, sums.db, ds0, dxs
