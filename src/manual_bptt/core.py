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

The recursion over t is the only Python loop over single steps; every other product runs
over many (time, batch) rows at once. Besides the outputs, a call allocates only the states
and one (T, B, H) array that holds a_t, then e_t, then delta_t in turn: f'(a_t) is computed
from s_t a cache-sized block of steps at a time, dE/do_t exists a block of rows at a time, and
batch-first dense inputs are read in place, copied to time-major order a block at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._inputs import Batch, check_truncate, prepare
from .params import RNNParams

#: Rows (t, b) per block where work is done a block of rows at a time: the output layer, and
#: the time-major copy of batch-first inputs for dU. Enough rows for full-speed matrix products.
_ROWS = 1024
#: Numbers per block of elementwise work done a block of steps at a time (f'(a_t) in the
#: backward recursion): 256 KiB of float64, so the block stays in cache between its uses.
_NUMBERS = 1 << 15


@dataclass(frozen=True, eq=False)
class Trace:
    """What the forward pass keeps for the backward pass, time-major.

    Attributes:
        batch: the validated inputs.
        a: (T, B, H) pre-activations a_t.
        s: (T, B, H) states s_t.
        s_in: (T, B, H) the state entering each step, s_in[t] = s_{t-1} (s_in[0] = s0).
            s and s_in are two overlapping views of one (T + 1, B, H) buffer, so every
            weight gradient that needs s_{t-1} is a single matrix product over all rows.
        U, W, V, b, c: the parameters in the compute dtype (b, c may be None).
        fprime: (T, B, H) f'(a_t), computed from s on first use (bptt's full recursion
            computes it a block of steps at a time instead).
    """

    batch: Batch
    a: np.ndarray
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


def run_forward(p: RNNParams, batch: Batch) -> Trace:
    """The recurrence a_t = U x_t + W s_{t-1} + b, s_t = f(a_t) over a validated batch."""
    dt = batch.dtype
    T, B, H = batch.T, batch.B, batch.H
    U, W, V = (np.asarray(m, dtype=dt) for m in (p.U, p.W, p.V))
    b = None if p.b is None else np.asarray(p.b, dtype=dt)
    c = None if p.c is None else np.asarray(p.c, dtype=dt)

    a = np.empty((T, B, H), dtype=dt)
    # input term U x_t + b for all t at once: a column gather for tokens, matrix products for
    # dense inputs, a block of steps at a time (b is added while the block is in cache)
    if batch.tokens is not None:
        np.take(U.T, batch.tokens, axis=0, out=a)
        if b is not None:
            a += b
    else:
        UT = np.ascontiguousarray(U.T)  # x @ UT is a faster product than x @ U.T
        for steps, x in _input_blocks(batch.X):
            a_steps = np.matmul(x, UT, out=a[steps].reshape(-1, H))
            if b is not None:
                a_steps += b
    states = np.empty((T + 1, B, H), dtype=dt)  # s_{-1} = s0, s_0, ..., s_{T-1}
    states[0] = batch.s0
    WT = np.ascontiguousarray(W.T)
    recur = np.empty((B, H), dtype=dt)
    f = batch.act.f
    # one row of each array per step; iterating yields views, without per-step indexing
    for a_t, s_prev, s_t in zip(a, states[:-1], states[1:], strict=True):
        np.dot(s_prev, WT, out=recur)  # W s_{t-1}
        a_t += recur  # a_t = (U x_t + b) + W s_{t-1}
        f(a_t, out=s_t)  # s_t = f(a_t)
    return Trace(batch=batch, a=a, s=states[1:], s_in=states[:-1], U=U, W=W, V=V, b=b, c=c)


def _input_blocks(X: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (steps, x) with x = X[steps] as a C-contiguous (steps * B, D) matrix of rows (t, b).

    A C-contiguous X, (T, B, D), is a single block, not copied. The time-major view of the
    caller's batch-first array (see Batch.X) is copied a few steps at a time into one small
    block, reused: the matrix products get contiguous rows, and no (T, B, D) copy is made.
    """
    T, B, n = X.shape
    if X.flags.c_contiguous:
        yield slice(0, T), X.reshape(T * B, n)
        return
    steps = max(1, _ROWS // B)
    block = np.empty_like(X[:steps], order="C")
    for t in range(0, T, steps):
        x = block[: min(steps, T - t)]
        np.copyto(x, X[t : t + steps])  # x_k for the steps k of this block, time-major
        yield slice(t, t + steps), x.reshape(-1, n)


def _softmax_cross_entropy(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.floating:
    """Turn logits z, (n, K), into dE/do in place, and return sum_i w_i E_i for these rows.

    E_i = -log softmax(z_i)[y_i] by log-sum-exp, so large logits give finite results; one
    buffer holds the logits, then their exponentials, then dE/do: a single exp, no
    temporaries of that size. y: (n,) labels; w: (n,) weights. The sum has z's dtype.
    """
    rows = np.arange(len(z))
    z -= z.max(axis=1, keepdims=True)  # z_t = o_t - max_j o_t[j]: the shift of log-sum-exp
    z_y = z[rows, y]  # z_t[y_t]
    y_hat = np.exp(z, out=z)  # exp(z_t), in place
    sum_exp = y_hat.sum(axis=1)
    loss = w @ (np.log(sum_exp) - z_y)  # E_t = -log y_hat_t[y_t] = log sum_j exp(z_t[j]) - z_t[y_t]
    y_hat *= (w / sum_exp)[:, None]  # w_t y_hat_t = w_t exp(z_t) / sum_j exp(z_t[j])
    y_hat[rows, y] -= w  # dE/do_t = w_t (y_hat_t - onehot(y_t))
    return loss


def output_layer(tr: Trace) -> tuple[float, np.ndarray]:
    """Loss E and dE/do, (T, B, K), of the softmax cross-entropy on the states."""
    batch = tr.batch
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    n = T * B
    z = tr.s.reshape(n, H) @ tr.V.T  # o_t = V s_t (+ c), one row per (t, b)
    if tr.c is not None:
        z += tr.c
    loss = _softmax_cross_entropy(z, batch.Y.reshape(n), batch.weight.reshape(n))
    return float(loss), z.reshape(T, B, K)


def output_grads(tr: Trace, e_out: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The output layer for bptt: loss E, dV (K, H), dc (K,) or None, and e_t = V^T dE/do_t.

    The same softmax cross-entropy as output_layer, done a block of _ROWS rows (t, b) at a
    time, so that dE/do never exists as a (T, B, K) array:
        dV = sum_t dE/do_t s_t^T,   dc = sum_t dE/do_t,   e_t = V^T dE/do_t.

    Args:
        tr: the forward trace.
        e_out: (T, B, H) array that receives e_t (bptt passes tr.a, which it needs no more).
    """
    batch = tr.batch
    n, H, K = batch.T * batch.B, batch.H, batch.K
    S, E = tr.s.reshape(n, H), e_out.reshape(n, H)
    y, w = batch.Y.reshape(n), batch.weight.reshape(n)
    dV = np.zeros((K, H), dtype=batch.dtype)
    dc = None if tr.c is None else np.zeros(K, dtype=batch.dtype)
    loss = batch.dtype.type(0)
    VT = np.ascontiguousarray(tr.V.T)  # S @ VT is a faster product than S @ V.T
    block = np.empty((min(_ROWS, n), K), dtype=batch.dtype)
    for i in range(0, n, _ROWS):
        rows = slice(i, min(i + _ROWS, n))
        dO = block[: rows.stop - i]
        np.matmul(S[rows], VT, out=dO)  # o_t = V s_t (+ c)
        if tr.c is not None:
            dO += tr.c
        loss += _softmax_cross_entropy(dO, y[rows], w[rows])  # dO now holds dE/do_t
        dV += dO.T @ S[rows]  # dV = sum_t dE/do_t s_t^T
        if dc is not None:
            dc += dO.sum(axis=0)  # dc = sum_t dE/do_t
        np.matmul(dO, tr.V, out=E[rows])  # e_t = V^T dE/do_t
    return float(loss), dV, dc


def backward_deltas(
    tr: Trace, e: np.ndarray, truncate: int | None, out: np.ndarray | None = None
) -> np.ndarray:
    """The per-step error signals D_k, (T, B, H), from which every gradient follows.

    Full BPTT (truncate None): D_k = delta_k = dE/da_k by the reverse recursion
        delta_k = (e_k + W^T delta_{k+1}) * f'(a_k).
    Truncated (truncate = tau): D_k = sum_{t=k..min(k+tau, T-1)} delta_{t,k}, where
        delta_{t,k} = dE_t/da_k along paths inside steps k..t only:
        delta_{t,t} = e_t * f'(a_t),  delta_{t,k-1} = (W^T delta_{t,k}) * f'(a_{k-1}).
    That is the seed's sum over k restricted to t - tau <= k <= t. It costs
    O(min(tau, T) * T) steps, computed lag by lag: for lag L the slices
    delta_{k+L,k} for all k form one matrix product.

    Args:
        tr: the forward trace.
        e: (T, B, H) e_t = dE_t/ds_t through the output layer only.
        truncate: None or tau >= 0.
        out: optional (T, B, H) array for the result; it may be ``e`` itself (then e is
            overwritten), which saves one array of that size.
    """
    T = tr.batch.T
    if truncate is None or truncate >= T - 1:
        W, s, prime = tr.W, tr.s, tr.batch.act.prime
        delta = np.empty_like(e) if out is None else out
        steps = max(1, _NUMBERS // (tr.batch.B * tr.batch.H))
        fprime = np.empty_like(e[:steps])  # f'(a_t) for a block of steps, from s_t
        carry = np.zeros_like(e[0])  # W^T delta_{t+1}, as (B, H) rows; delta_T = 0
        for end in range(T, 0, -steps):  # blocks of steps [start, end), the last block first
            start = max(end - steps, 0)
            fp = prime(s[start:end], out=fprime[: end - start])
            for t in range(end - 1, start - 1, -1):
                carry += e[t]  # e_t is read before delta_t is written (out may be e)
                np.multiply(carry, fp[t - start], out=delta[t])  # delta_t = (e_t + W^T delta_{t+1}) * f'(a_t)
                if t > 0:
                    np.dot(delta[t], W, out=carry)  # W^T delta_t, for step t - 1
        return delta
    D = None
    for L, Q in lag_deltas(tr, e, truncate):
        if D is None:  # lag 0, Q_0 = e * f'(a): a fresh array, and e is not read again
            if out is not None:
                out[...] = Q
            D = Q if out is None else out
        else:
            D[: T - L] += Q  # D_k += delta_{k+L,k}
    return D


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


def delta_grads(
    tr: Trace, D: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The gradients that follow from the error signals D_k = dE/da_k.

    Args:
        tr: the forward trace.
        D: (T, B, H) error signal of each pre-activation a_k (see backward_deltas).
    Returns:
        (dU (H, D), dW (H, H), db (H,) or None, ds0 in s0's shape, dxs in xs's shape or None):
        dW = sum_k D_k s_{k-1}^T,  dU = sum_k D_k x_k^T,  db = sum_k D_k,
        ds0 = W^T D_0,  dE/dx_k = U^T D_k.
    """
    batch = tr.batch
    T, B, H = batch.T, batch.B, batch.H
    D2 = D.reshape(T * B, H)
    dW = D2.T @ tr.s_in.reshape(T * B, H)  # dW = sum_k D_k s_{k-1}^T, one product over all rows
    if batch.tokens is not None:
        # dU = sum_k D_k x_k^T: column x_k of dU collects D_k. bincount sums, for each
        # (token v, unit h), the entries D_k[h] with x_k = v: O(T B H), whatever the vocabulary.
        cell = (batch.tokens.reshape(T * B, 1) * H + np.arange(H)).reshape(-1)  # v * H + h
        dUT = np.bincount(cell, weights=D2.reshape(-1), minlength=batch.D * H).reshape(batch.D, H)
        dU = np.ascontiguousarray(dUT.T, dtype=D.dtype)
        dxs = None
    else:
        dU = _input_grad(D, batch.X)
        if batch.batched:
            # dE/dx_k = U^T D_k, written straight into the caller's (B, T, D) layout
            dxs = np.matmul(D.swapaxes(0, 1), tr.U)
        else:
            dxs = D2 @ tr.U  # dE/dx_k = U^T D_k, (T, D)
    db = None if tr.b is None else D2.sum(axis=0)
    ds0 = batch.fold_ds0(D[0] @ tr.W)  # ds0 = W^T D_0
    return dU, dW, db, ds0, dxs


def _input_grad(D: np.ndarray, X: np.ndarray) -> np.ndarray:
    """dU = sum_{t,b} D[t, b] X[t, b]^T, (H, D), for D (T, B, H) and dense X (T, B, D)."""
    H = D.shape[-1]
    dU = np.zeros((H, X.shape[-1]), dtype=D.dtype)
    for steps, x in _input_blocks(X):
        dU += D[steps].reshape(-1, H).T @ x  # sum of D_k x_k^T over the steps k of this block
    return dU


def bptt(
    p: RNNParams,
    xs: object,
    ys: object,
    *,
    activation: str = "tanh",
    s0: object | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: object | None = None,
) -> BPTTResult:
    """Loss and exact gradients of the RNN by backpropagation through time.

    Args:
        p: RNNParams: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None.
        xs: int token ids (T,) or (B, T) in [0, D), or float dense inputs (T, D) or (B, T, D).
        ys: int labels in [0, K), (T,) or (B, T) matching xs.
        activation: f, one of "tanh", "sigmoid", "relu", "identity".
        s0: initial state s_{-1}: None (zeros), (H,), or (B, H) for batched xs. An (H,)
            s0 with batched xs is shared by all sequences and ds0 sums over the batch.
        truncate: None for full BPTT; tau >= 0 keeps, for every E_t, exactly the terms
            k with t - tau <= k <= t of dE_t/dθ = sum_k dE_t/ds_t ds_t/ds_k ∂s_k/∂θ, for
            θ in U, W, b, xs and s0 (s0 enters through step 0). V and c are unaffected.
        reduction: "sum" (E = sum of E_t) or "mean" (divided by the counted targets).
        mask: None, or bool (T,) / (B, T): targets where False contribute nothing (the
            state still runs through those steps).

    Returns:
        BPTTResult with loss, grads, ds0, dxs (dense inputs) and final_state.
        Computed in float32 when every floating input is float32, else float64.

    Raises:
        ValueError naming the argument, for any malformed input.
    """
    tau = check_truncate(truncate)
    batch = prepare(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)
    tr = run_forward(p, batch)
    # e_t = V^T dE/do_t is written over a, which bptt needs no more (f'(a_t) comes from s_t),
    # and delta_t over e_t in turn: each fresh (T, B, H) array costs page faults on every call.
    e = tr.a
    loss, dV, dc = output_grads(tr, e_out=e)
    D = backward_deltas(tr, e, tau, out=e)
    dU, dW, db, ds0, dxs = delta_grads(tr, D)
    grads = RNNParams._adopt(U=dU, W=dW, V=dV, b=db, c=dc)  # fresh arrays: no copies
    return BPTTResult(loss=loss, grads=grads, ds0=ds0, dxs=dxs, final_state=final_state(tr))


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


def forward(p: RNNParams, xs: object, *, activation: str = "tanh", s0: object | None = None) -> ForwardResult:
    """Run the RNN forward; same input forms and checks as bptt (no labels needed).

    Args:
        p: RNNParams.  xs: (T,) / (B, T) token ids or (T, D) / (B, T, D) dense inputs.
        activation: "tanh", "sigmoid", "relu" or "identity".  s0: None, (H,) or (B, H).
    """
    batch = prepare(p, xs, None, activation=activation, s0=s0, labels_required=False)
    tr = run_forward(p, batch)
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    o = (tr.s.reshape(T * B, H) @ tr.V.T).reshape(T, B, K)
    if tr.c is not None:
        o += tr.c
    y_hat = np.exp(o - o.max(axis=-1, keepdims=True))
    y_hat /= y_hat.sum(axis=-1, keepdims=True)
    return ForwardResult(
        a=batch.to_batch_first(tr.a),
        s=batch.to_batch_first(tr.s),
        o=batch.to_batch_first(o),
        y_hat=batch.to_batch_first(y_hat),
        final_state=final_state(tr),
    )
