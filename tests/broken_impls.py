"""Deliberately broken implementations of BPTT, one classic bug each, for the report's tests.

Every function here has manual_bptt.bptt's signature (so the report can load it by name,
``broken_impls:one_step_recurrence``, also in worker processes) and returns a
manual_bptt.BPTTResult. All but the float32 ones share one readable backward pass, the
explicit double sum over the output step t and the step k it reaches back to:

    g_{t,t}     = dE_t/ds_t = V^T dE_t/do_t
    delta_{t,k} = g_{t,k} * f'(a_k)                         (dE_t/da_k)
    g_{t,k-1}   = W^T delta_{t,k}                           (dE_t/ds_{k-1})
    D_k         = sum_t delta_{t,k}   over the kept (t, k): t - tau <= k <= t

from which manual_bptt.fast.elman.delta_grads forms dU, dW, db, ds0 and dxs (the forward pass
and the output layer are manual_bptt's, and correct). ``correct_double_sum`` is the same
code without a bug, and must pass. Each bug, and where the report should put it:

    transposed_dW            dW^T instead of dW                  W only, immediate (lag 0)
    transposed_recurrence    W instead of W^T in the recursion    U, W, b, ds0, dxs; lag 1
    one_step_recurrence      walks back at most one step          U, W, b, ...; lag 2, T >= 3
    wrong_bias_gradient      db from dE/ds_k, forgetting f'(a_k)   b only, immediate
    sign_error               -W^T delta in the recursion          U, W, b, ...; lag 1
    off_by_one_time_loop     the loop over t skips t = T - 1       U, W, b, ...; immediate, T = 1
    output_sign_error        -dV                                  V only, the output layer
    float32_arithmetic       computes in float32, returns float64 every array, "float32"
    float32_outputs          computes and returns float32         every array, "float32"
    one_step_no_truncate     one_step_recurrence without the truncate keyword: localized by
                             the sequence length instead (first disagrees at T = 3)
    correct_without_mask     manual_bptt.bptt without the mask keyword: unsupported, not failing

The targets above that are written for the Elman cell (the double sum, float32) raise
NotImplementedError for gated parameters, so they are checked on the Elman cell alone. Bugs
of the gated cells:

    gru_reset_before_matmul  a GRU whose reset gate multiplies h_{t-1} before the matrix
                             product, n_t = tanh(U_n x_t + b_in + W_n (r_t ⊙ h_{t-1}) + b_hn)
                             (a common textbook form, not nn.GRU's): the loss itself differs;
                             GRUParams only (NotImplementedError else), no truncate keyword
    lstm_swapped_ig          manual_bptt.bptt with the i and g blocks of dU, dW, db_ih, db_hh
                             exchanged: immediate (lag 0); declares cells ["lstm"]
    b_ih_grad_to_b_hh        manual_bptt.bptt returning db_ih as db_hh too: only the GRU's n
                             block differs (b_hn sits inside r ⊙ (...)); every cell
    elman_only_typeerror     manual_bptt.bptt, a TypeError for gated parameters (correct)
    elman_only_declared_inputs  declares its input forms (not its cells), NotImplementedError
                             for gated parameters (correct)

Targets that try to get a PASS without computing anything right, or to end or hang the
checker; none of them may get PASS or exit status 0:

    returns_none             returns None
    not_implemented          raises NotImplementedError for everything
    s0_only_transposed_dW    signature (p, xs, ys, s0=None), dW transposed
    zeroes_ys                sets the caller's ys to 0 in place, then computes on them
    sets_mask_all_true       ignores the mask and sets the caller's mask to all True
    replaces_oracle          replaces reference.bptt in its process by its own wrong gradient
    calls_sys_exit_0, calls_sys_exit_3, calls_os_exit_0, segfaults, sleeps

And correct ones that support little, which must get a real check and PASS:

    tokens_only              manual_bptt.bptt for token ids (T,) only (NotImplementedError else)
    tokens_only_declared     the same, declared with bptt_supports (a ValueError else)
    torch_free_bptt          manual_bptt.bptt, raising if torch or reference is imported in its process
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

import manual_bptt as mb
from manual_bptt._inputs import check_truncate, prepare
from manual_bptt.elman import BPTTResult, final_state
from manual_bptt.fast.elman import delta_grads, run_forward
from manual_bptt.output import output_layer


def _act(p, activation):
    """The activation for manual_bptt.bptt: the Elman cell's; None (no activation) for a gated cell."""
    return activation if isinstance(p, mb.RNNParams) else None


def _elman_only(p) -> None:
    if not isinstance(p, mb.RNNParams):
        raise NotImplementedError(f"the Elman cell (RNNParams) only, got {type(p).__name__}")


def _double_sum(p, xs, ys, *, activation, s0, truncate, reduction, mask, bug: str | None) -> BPTTResult:
    """BPTT by the explicit double sum over (t, k), with one named bug (None: correct)."""
    _elman_only(p)
    tau = check_truncate(truncate)
    batch = prepare(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)
    tr = run_forward(p, batch)
    T, B, H, K = batch.T, batch.B, batch.H, batch.K
    n = T * B
    y, w = batch.Y.reshape(n), batch.weight.reshape(n)
    out = output_layer(tr.s.reshape(n, H), tr.V.T, tr.V, tr.c, y, w, overflow=lambda loss: None)  # unchecked
    loss, dO = float(out.loss), out.dO.reshape(T, B, K)
    e = (dO.reshape(T * B, K) @ tr.V).reshape(T, B, H)  # dE_t/ds_t, direct part, (T, B, H)
    D = np.zeros_like(e)  # D_k = sum_t delta_{t,k}
    S = np.zeros_like(e)  # sum_t g_{t,k} = sum_t dE_t/ds_k (only the bias bug uses it)
    last = T - 1 if bug == "off_by_one_time_loop" else T
    for t in range(last):
        lowest = 0 if tau is None else max(0, t - tau)
        if bug == "one_step_recurrence":
            lowest = max(lowest, t - 1)
        g = e[t]  # g_{t,t} = dE_t/ds_t
        for k in range(t, lowest - 1, -1):
            delta = g * tr.fprime[k]  # delta_{t,k} = g_{t,k} * f'(a_k)
            D[k] += delta
            S[k] += g
            if k > lowest:
                g = delta @ (
                    tr.W.T if bug == "transposed_recurrence" else tr.W
                )  # g_{t,k-1} = W^T delta_{t,k}
                if bug == "sign_error":
                    g = -g
    dU, dW, db, ds0, dxs = delta_grads(tr, D)
    dO2 = dO.reshape(T * B, K)
    dV, dc = dO2.T @ tr.s.reshape(T * B, H), None if tr.c is None else dO2.sum(axis=0)
    grads = mb.RNNParams(U=dU, W=dW, V=dV, b=db, c=dc)
    if bug == "transposed_dW":
        grads = grads.replace(W=grads.W.T)
    if bug == "wrong_bias_gradient" and grads.b is not None:
        grads = grads.replace(b=S.sum(axis=(0, 1)))  # should be D: f'(a_k) forgotten
    if bug == "output_sign_error":
        grads = grads.replace(V=-grads.V)
    return BPTTResult(loss=loss, grads=grads, ds0=ds0, dxs=dxs, final_state=final_state(tr))


def _make(bug: str | None):
    def impl(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
        return _double_sum(
            p,
            xs,
            ys,
            activation=activation,
            s0=s0,
            truncate=truncate,
            reduction=reduction,
            mask=mask,
            bug=bug,
        )

    impl.__name__ = impl.__qualname__ = bug or "correct_double_sum"
    impl.__doc__ = (
        f"BPTT by the double sum, with the bug {bug!r}." if bug else "BPTT by the double sum (correct)."
    )
    return impl


correct_double_sum = _make(None)
transposed_dW = _make("transposed_dW")
transposed_recurrence = _make("transposed_recurrence")
one_step_recurrence = _make("one_step_recurrence")
wrong_bias_gradient = _make("wrong_bias_gradient")
sign_error = _make("sign_error")
off_by_one_time_loop = _make("off_by_one_time_loop")
output_sign_error = _make("output_sign_error")


def _to32(a):
    return None if a is None else np.asarray(a, dtype=np.float32)


def float32_outputs(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
    """manual_bptt.bptt run in float32: every returned array is float32."""
    _elman_only(p)
    xs = np.asarray(xs)
    xs32 = xs if np.issubdtype(xs.dtype, np.integer) else xs.astype(np.float32)
    return mb.bptt(
        p.astype(np.float32),
        xs32,
        ys,
        activation=activation,
        s0=_to32(s0),
        truncate=truncate,
        reduction=reduction,
        mask=mask,
    )


def float32_arithmetic(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
    """manual_bptt.bptt run in float32, the results cast back to float64 (the sneaky kind)."""
    r = float32_outputs(
        p, xs, ys, activation=activation, s0=s0, truncate=truncate, reduction=reduction, mask=mask
    )

    def up(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    return dataclasses.replace(
        r,
        grads=mb.RNNParams(**{n: up(a) for n, a in r.grads.items()}),
        ds0=up(r.ds0),
        dxs=up(r.dxs),
        final_state=up(r.final_state),
    )


def one_step_no_truncate(p, xs, ys, *, activation="tanh", s0=None, reduction="sum", mask=None):
    """one_step_recurrence for a target that has no truncate keyword."""
    return one_step_recurrence(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)


def correct_without_mask(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum"):
    """manual_bptt.bptt for a target that has no mask keyword (correct otherwise)."""
    return mb.bptt(p, xs, ys, activation=_act(p, activation), s0=s0, truncate=truncate, reduction=reduction)


# ---------------------------------------------------------------------------------------------
# Bugs of the gated cells
# ---------------------------------------------------------------------------------------------
def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def gru_reset_before_matmul(p, xs, ys, *, s0=None, reduction="sum", mask=None):
    """A GRU with n_t = tanh(U_n x_t + b_in + W_n (r_t ⊙ h_{t-1}) + b_hn): exact gradients of
    that (different) model, full BPTT. Shapes as manual_bptt.bptt: p.U (3H, D), p.W (3H, H),
    b_ih, b_hh (3H,) or None, V (K, H), c (K,) or None; xs (T,) / (B, T) ids or (T, D) /
    (B, T, D); s0 None, (H,) or (B, H)."""
    if not isinstance(p, mb.GRUParams):
        raise NotImplementedError(f"GRUParams only, got {type(p).__name__}")
    xs, ys = np.asarray(xs), np.asarray(ys)
    tokens = np.issubdtype(xs.dtype, np.integer)
    batched = ys.ndim == 2
    H, D, K = p.hidden_size, p.input_size, p.output_size
    X = np.eye(D)[xs] if tokens else xs.astype(np.float64)  # (..., T, D)
    X = X if batched else X[None]  # (B, T, D)
    Y = ys if batched else ys[None]  # (B, T)
    B, T = Y.shape
    m = np.ones((B, T)) if mask is None else np.asarray(mask, dtype=np.float64).reshape(B, T)
    w = m / m.sum() if reduction == "mean" else m  # weight of each E_t
    zero = np.zeros(3 * H)
    b_ih = zero if p.b_ih is None else p.b_ih
    b_hh = zero if p.b_hh is None else p.b_hh
    c = np.zeros(K) if p.c is None else p.c
    Wr, Wz, Wn = p.W[:H], p.W[H : 2 * H], p.W[2 * H :]
    h = np.zeros((B, H)) if s0 is None else np.broadcast_to(np.asarray(s0, dtype=np.float64), (B, H)).copy()
    hs, cache, loss = [h], [], 0.0
    dO = np.zeros((B, T, K))
    for t in range(T):
        gi = X[:, t] @ p.U.T + b_ih  # (B, 3H)
        r = _sigmoid(gi[:, :H] + h @ Wr.T + b_hh[:H])
        z = _sigmoid(gi[:, H : 2 * H] + h @ Wz.T + b_hh[H : 2 * H])
        rh = r * h
        n = np.tanh(gi[:, 2 * H :] + rh @ Wn.T + b_hh[2 * H :])
        cache.append((r, z, n, rh, h))
        h = (1 - z) * n + z * h
        hs.append(h)
        o = h @ p.V.T + c  # (B, K)
        o = o - o.max(axis=1, keepdims=True)
        logp = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
        loss -= float((w[:, t] * logp[np.arange(B), Y[:, t]]).sum())
        prob = np.exp(logp)
        prob[np.arange(B), Y[:, t]] -= 1.0
        dO[:, t] = w[:, t, None] * prob  # dE/do_t
    Hs = np.stack(hs[1:], axis=1)  # (B, T, H)
    dV = dO.reshape(-1, K).T @ Hs.reshape(-1, H)
    dU, dW, db = np.zeros_like(p.U), np.zeros_like(p.W), np.zeros(3 * H)
    db_hh = np.zeros(3 * H)
    dX = np.zeros_like(X)
    dh_next = np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        r, z, n, rh, h_prev = cache[t]
        dh = dO[:, t] @ p.V + dh_next  # dE/dh_t
        dan = dh * (1 - z) * (1 - n**2)  # dE/d(pre-activation of n)
        daz = dh * (h_prev - n) * z * (1 - z)
        drh = dan @ Wn
        dar = drh * h_prev * r * (1 - r)
        da = np.concatenate([dar, daz, dan], axis=1)  # (B, 3H)
        dU += da.T @ X[:, t]
        dW[: 2 * H] += da[:, : 2 * H].T @ h_prev
        dW[2 * H :] += dan.T @ rh
        db += da.sum(axis=0)
        db_hh += da.sum(axis=0)
        dX[:, t] = da @ p.U
        dh_next = dh * z + drh * r + dar @ Wr + daz @ Wz
    shared = not batched or (s0 is not None and np.ndim(s0) == 1)
    ds0 = dh_next.sum(axis=0) if shared else dh_next  # the shape of s0 ((H,) or (B, H))
    biased = p.b_ih is not None
    grads = {
        "U": dU,
        "W": dW,
        "b_ih": db if biased else None,
        "b_hh": db_hh if biased else None,
        "V": dV,
        "c": None if p.c is None else dO.sum(axis=(0, 1)),
    }
    dxs = None if tokens else (dX if batched else dX[0])
    return SimpleNamespace(loss=loss, grads=grads, ds0=ds0, dxs=dxs)


def lstm_swapped_ig(p, xs, ys, **kw):
    """manual_bptt.bptt with the i and g gate blocks of dU, dW, db_ih, db_hh exchanged."""
    r = mb.bptt(p, xs, ys, **kw)
    H = p.hidden_size
    order = np.r_[2 * H : 3 * H, H : 2 * H, 0:H, 3 * H : 4 * H]  # g, f, i, o

    def swap(a):
        return None if a is None else np.asarray(a)[order]

    grads = r.grads.replace(**{n: swap(getattr(r.grads, n)) for n in ("U", "W", "b_ih", "b_hh")})
    return dataclasses.replace(r, grads=grads)


lstm_swapped_ig.bptt_supports = {"cells": ["lstm"]}


def elman_only_typeerror(p, xs, ys, **kw):
    """manual_bptt.bptt for RNNParams; a TypeError for any other params type."""
    if not isinstance(p, mb.RNNParams):
        raise TypeError(f"expected RNNParams, got {type(p).__name__}")
    return mb.bptt(p, xs, ys, **kw)


def b_ih_grad_to_b_hh(p, xs, ys, **kw):
    """manual_bptt.bptt, returning db_ih in place of db_hh (a gated cell with biases)."""
    r = mb.bptt(p, xs, ys, **kw)
    if isinstance(p, mb.RNNParams) or r.grads.b_ih is None:
        return r
    return dataclasses.replace(r, grads=r.grads.replace(b_hh=r.grads.b_ih))


# ---------------------------------------------------------------------------------------------
# Attacks on the checker
# ---------------------------------------------------------------------------------------------
def returns_none(p, xs, ys, **kw):
    """Computes nothing."""
    return None


def not_implemented(p, xs, ys, **kw):
    """Supports nothing."""
    raise NotImplementedError("nothing is implemented")


def s0_only_transposed_dW(p, xs, ys, s0=None):
    """Only the s0 keyword, and dW transposed."""
    return transposed_dW(p, xs, ys, s0=s0)


def zeroes_ys(p, xs, ys, **kw):
    """Sets the caller's labels to 0, then computes correctly on them."""
    ys[...] = 0
    return mb.bptt(p, xs, ys, **kw)


def sets_mask_all_true(p, xs, ys, *, mask=None, **kw):
    """Ignores the mask, and sets the caller's mask to all True (so the oracle would too)."""
    if mask is not None:
        mask[...] = True
    return mb.bptt(p, xs, ys, **kw)


def replaces_oracle(p, xs, ys, **kw):
    """Replaces reference.bptt in its process by transposed_dW, then returns transposed_dW."""
    import reference

    reference.bptt = transposed_dW
    reference.autograd.bptt = transposed_dW
    return transposed_dW(p, xs, ys, **kw)


def calls_sys_exit_0(p, xs, ys, **kw):
    sys.exit(0)


def calls_sys_exit_3(p, xs, ys, **kw):
    sys.exit(3)


def calls_os_exit_0(p, xs, ys, **kw):
    os._exit(0)


def segfaults(p, xs, ys, **kw):
    import ctypes

    return ctypes.string_at(0)


def sleeps(p, xs, ys, **kw):
    time.sleep(10**6)


# ---------------------------------------------------------------------------------------------
# Correct, but supporting little
# ---------------------------------------------------------------------------------------------
def _token_ids(xs) -> bool:
    a = np.asarray(xs)
    return a.ndim == 1 and np.issubdtype(a.dtype, np.integer)


def tokens_only(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
    """manual_bptt.bptt on token ids (T,); NotImplementedError for any other input form."""
    if not _token_ids(xs):
        raise NotImplementedError("token ids of shape (T,) only")
    kw = {"s0": s0, "truncate": truncate, "reduction": reduction, "mask": mask}
    return mb.bptt(p, xs, ys, activation=_act(p, activation), **kw)


def tokens_only_declared(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
    """manual_bptt.bptt on token ids (T,), declared; a ValueError for anything else."""
    if not _token_ids(xs):
        raise ValueError("token ids of shape (T,) only")
    kw = {"s0": s0, "truncate": truncate, "reduction": reduction, "mask": mask}
    return mb.bptt(p, xs, ys, activation=_act(p, activation), **kw)


tokens_only_declared.bptt_supports = {"inputs": ["tokens (T,)"]}


def torch_free_bptt(p, xs, ys, **kw):
    """manual_bptt.bptt, refusing to run where torch or the oracle has been imported."""
    found = [m for m in ("torch", "reference") if m in sys.modules]
    if found:
        raise RuntimeError(f"{', '.join(found)} imported in the target's process")
    return mb.bptt(p, xs, ys, **kw)


def elman_only_declared_inputs(p, xs, ys, **kw):
    """manual_bptt.bptt for RNNParams on token ids (T,), declared; NotImplementedError for gated params."""
    _elman_only(p)
    return mb.bptt(p, xs, ys, **kw)


elman_only_declared_inputs.bptt_supports = {"inputs": ["tokens (T,)"]}
