"""Real-time recurrent learning (RTRL): the exact gradient by forward-mode sensitivities.

A third derivation beside the reverse recursion and the explicit sum: it carries the
sensitivities of the state forward in time and never runs backward.

    P^W_t = ds_t/dW = diag(f'(a_t)) (W P^W_{t-1} + ∂a_t/∂W),   ∂a_t[i]/∂W[m, n] = [i = m] s_{t-1}[n]
    P^U_t = ds_t/dU = diag(f'(a_t)) (W P^U_{t-1} + ∂a_t/∂U),   ∂a_t[i]/∂U[m, n] = [i = m] x_t[n]
    P^b_t = ds_t/db = diag(f'(a_t)) (W P^b_{t-1} + I)
    P^0_t = ds_t/ds0 = diag(f'(a_t)) W P^0_{t-1},               P^0_{-1} = I
    M_t[k] = ds_t/dx_k = diag(f'(a_t)) W M_{t-1}[k] (k < t),    M_t[t] = diag(f'(a_t)) U

    dE/dθ = sum_t dE_t/ds_t · P^θ_t          (θ in W, U, b, s0, x_k)

Cost: P^W holds B*H*H*H numbers and each step multiplies it by W: O(B H^4) per step,
O(T B H^4) in all (BPTT: O(T B H^2)). Dense-input gradients dxs add O(T^2 B H^2 D).
The sensitivities must fit in ``max_bytes`` (default 1 GiB) or a ValueError is raised.
"""

from __future__ import annotations

import numpy as np

from ._inputs import check_max_bytes, prepare
from .core import BPTTResult, final_state, output_layer, run_forward
from .params import RNNParams

#: Default limit, in bytes, for the carried sensitivity tensors.
MAX_RTRL_BYTES = 1 << 30  # 1 GiB


def rtrl(
    p: RNNParams,
    xs: object,
    ys: object,
    *,
    activation: str = "tanh",
    s0: object | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = MAX_RTRL_BYTES,
) -> BPTTResult:
    """Loss and exact gradients by real-time recurrent learning (forward mode).

    Same inputs, checks and result type as :func:`manual_bptt.bptt` (no truncation).

    Args:
        p: RNNParams: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None.
        xs, ys, activation, s0, reduction, mask: as for bptt.
        max_bytes: limit for the carried sensitivities, B*H*(H*H + H*D + H + H) numbers,
            plus T*B*H*D for dense-input sensitivities.

    Raises:
        ValueError naming the argument for malformed input, or naming max_bytes when the
        sensitivities would not fit.
    """
    max_bytes = check_max_bytes(max_bytes)
    batch = prepare(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)
    T, B, D, H, K = batch.T, batch.B, batch.D, batch.H, batch.K
    dense = batch.X is not None
    n_numbers = B * H * (H * H + H * D + 2 * H) + (T * B * H * D if dense else 0)
    need = n_numbers * batch.dtype.itemsize
    if need > max_bytes:
        raise ValueError(
            f"max_bytes: RTRL sensitivities for B={B}, H={H}, D={D}, T={T} need {need} bytes "
            f"({need / 2**20:.1f} MiB), over the limit of {max_bytes} bytes ({max_bytes / 2**20:.1f} MiB); "
            f"use bptt, or pass a larger max_bytes"
        )
    tr = run_forward(p, batch)
    loss, dO = output_layer(tr)
    W, U, dt = tr.W, tr.U, batch.dtype
    eye = np.eye(H, dtype=dt)

    PW = np.zeros((B, H, H, H), dtype=dt)  # ds_t/dW [b, i, m, n]
    PU = np.zeros((B, H, H, D), dtype=dt)  # ds_t/dU [b, i, m, n]
    Pb = np.zeros((B, H, H), dtype=dt)  # ds_t/db [b, i, m]
    P0 = np.broadcast_to(eye, (B, H, H)).copy()  # ds_t/ds0, starts at ds_{-1}/ds0 = I
    M = np.zeros((T, B, H, D), dtype=dt) if dense else None  # ds_t/dx_k [k, b, i, n]
    dW, dU, db, ds0 = (np.zeros((H, H), dt), np.zeros((H, D), dt), np.zeros(H, dt), np.zeros((B, H), dt))
    dX = np.zeros((T, B, D), dtype=dt) if dense else None

    for t in range(T):
        fp = tr.fprime[t]  # f'(a_t), (B, H)
        s_prev = tr.s_prev(t)  # s_{t-1}, (B, H)
        # W P_{t-1}: contract W[i, j] with P[b, j, ...]
        PW = np.einsum("ij,bjmn->bimn", W, PW)
        PU = np.einsum("ij,bjmn->bimn", W, PU)
        Pb = np.einsum("ij,bjm->bim", W, Pb)
        P0 = np.einsum("ij,bjm->bim", W, P0)
        # + immediate partials of a_t
        idx = np.arange(H)
        PW[:, idx, idx, :] += s_prev[:, None, :]  # [i = m] s_{t-1}[n]
        if dense:
            PU[:, idx, idx, :] += batch.X[t][:, None, :]  # [i = m] x_t[n]
        else:
            # x_t one-hot: [i = m] [n = x_t]
            PU[np.arange(B)[:, None], idx[None, :], idx[None, :], batch.tokens[t][:, None]] += 1.0
        Pb[:, idx, idx] += 1.0
        # times diag(f'(a_t))
        PW *= fp[:, :, None, None]
        PU *= fp[:, :, None, None]
        Pb *= fp[:, :, None]
        P0 *= fp[:, :, None]

        g = dO[t] @ tr.V  # dE_t/ds_t = V^T dE_t/do_t, (B, H)
        dW += np.einsum("bi,bimn->mn", g, PW)
        dU += np.einsum("bi,bimn->mn", g, PU)
        db += np.einsum("bi,bim->m", g, Pb)
        ds0 += np.einsum("bi,bim->bm", g, P0)
        if dense:
            M[:t] = np.einsum("ij,kbjn->kbin", W, M[:t]) * fp[None, :, :, None]
            M[t] = fp[:, :, None] * U[None]  # ds_t/dx_t = diag(f'(a_t)) U
            dX[: t + 1] += np.einsum("bi,kbin->kbn", g, M[: t + 1])

    dO2 = dO.reshape(T * B, K)
    grads = RNNParams(
        U=dU,
        W=dW,
        V=dO2.T @ tr.s.reshape(T * B, H),  # dV = sum_t dE/do_t s_t^T
        b=db if tr.b is not None else None,
        c=dO2.sum(axis=0) if tr.c is not None else None,
    )
    return BPTTResult(
        loss=loss,
        grads=grads,
        ds0=batch.fold_ds0(ds0),
        dxs=batch.to_batch_first(dX) if dense else None,
        final_state=final_state(tr),
    )
