"""Real-time recurrent learning (RTRL): the exact gradient by forward-mode sensitivities, for any cell.

A third derivation beside the reverse recursion and the explicit sum: it carries the
sensitivities of the state forward in time and never runs backward. Over the cell interface
(manual_bptt.cells.base), with A_t = ds_t/ds_{t-1} = Js + Jh W [I_H 0] the full step Jacobian
and Ji, Jh the step's partials with respect to gi_t = U x_t + b_ih and gh_t = W h_{t-1} + b_hh:

    P^W_t    = ds_t/dW    = A_t P^W_{t-1} + ∂s_t/∂W,     ∂s_t[i]/∂W[m, n] = Jh[i, m] h_{t-1}[n]
    P^U_t    = ds_t/dU    = A_t P^U_{t-1} + ∂s_t/∂U,     ∂s_t[i]/∂U[m, n] = Ji[i, m] x_t[n]
    P^ih_t   = ds_t/db_ih = A_t P^ih_{t-1} + Ji          (the Elman cell's b)
    P^hh_t   = ds_t/db_hh = A_t P^hh_{t-1} + Jh          (gated cells)
    P^0_t    = ds_t/ds0   = A_t P^0_{t-1},               P^0_{-1} = I
    M_t[k]   = ds_t/dx_k  = A_t M_{t-1}[k] (k < t),      M_t[t] = Ji U

    dE/dθ = sum_t dE_t/ds_t · P^θ_t          (θ in W, U, the biases, s0, x_k)

For the Elman cell A_t = diag(f'(a_t)) W and Ji = Jh = diag(f'(a_t)). Cost: P^W holds
B*S*G*H*H numbers and each step multiplies it by A_t: O(B S^2 G H^2) per step (Elman O(B H^4)),
against O(B G H^2) for BPTT. Dense-input gradients dxs add O(T^2 B S^2 D). The sensitivities
must fit in ``max_bytes`` (default 1 GiB), else TooLargeError (a ValueError) naming max_bytes.
"""

from __future__ import annotations

import numpy as np

from ._inputs import Sizes, check_max_bytes
from .cells import Cell
from .decompose import step_jacobians, unroll
from .elman import BPTTResult
from .errors import DEFAULT_MAX_BYTES, QUIET, TooLargeError, check_grads_finite
from .gated import GatedBPTTResult
from .kinds import kind_of

#: Default limit, in bytes, for the carried sensitivity tensors.
MAX_RTRL_BYTES = DEFAULT_MAX_BYTES  # 1 GiB


def _check_sensitivities(sz: Sizes, dtype: np.dtype, cell: Cell, biases: int, max_bytes: int) -> None:
    """Refuse, from the shapes (before anything is allocated), sensitivities over max_bytes:
    B*S*(G*H*H + G*H*D + G*H per bias + S) numbers, plus T*B*S*D for dense inputs."""
    T, B, D, H = sz.T, sz.B, sz.D, sz.H
    S, GH = cell.parts * H, cell.gates * H
    n_numbers = B * S * (GH * H + GH * D + GH * biases + S) + (T * B * S * D if not sz.tokens else 0)
    need = n_numbers * dtype.itemsize
    if need > max_bytes:
        raise TooLargeError(
            f"max_bytes: RTRL sensitivities for B={B}, H={H}, D={D}, T={T} need {need} bytes "
            f"({need / 2**20:.1f} MiB), over the limit of {max_bytes} bytes ({max_bytes / 2**20:.1f} MiB); "
            f"use bptt, or pass a larger max_bytes"
        )


def rtrl(
    p: object,
    xs: object,
    ys: object,
    *,
    activation: str | None = None,
    s0: object | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = MAX_RTRL_BYTES,
) -> BPTTResult | GatedBPTTResult:
    """Loss and exact gradients by real-time recurrent learning (forward mode).

    Same inputs, checks and result type as :func:`manual_bptt.bptt` (no truncation).

    Args:
        p: RNNParams (U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None), or
            GRUParams / LSTMParams (U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or None, V, c).
        xs, ys, s0, reduction, mask: as for bptt (an LSTM's s0 is an LSTMState(h, c)).
        activation: the Elman cell's f (None: "tanh"); with a gated cell it must be None.
        max_bytes: limit for the carried sensitivities, B*S*(G*H*H + G*H*D + G*H per bias + S)
            numbers, plus T*B*S*D for dense-input sensitivities (S = H; 2H for the LSTM).

    Returns:
        BPTTResult for RNNParams, gated.GatedBPTTResult for GRUParams / LSTMParams.

    Raises:
        ValueError naming the argument for malformed input; TooLargeError (a ValueError)
        naming max_bytes when the sensitivities would not fit; NonFiniteError naming the state,
        the loss or the gradient that overflowed.
    """
    max_bytes = check_max_bytes(max_bytes)
    cell, n_biases = kind_of(p).cell, len(p.bias_names)
    u = unroll(
        p,
        xs,
        ys,
        activation=activation,
        s0=s0,
        reduction=reduction,
        mask=mask,
        max_bytes=max(max_bytes, DEFAULT_MAX_BYTES),
        what="rtrl",
        size_check=lambda sz, dt: _check_sensitivities(sz, dt, cell, n_biases, max_bytes),
    )
    T, B, D, H, S, GH, dt = u.T, u.B, u.D, u.H, u.S, u.GH, u.dtype
    dense = u.X is not None
    biases = u.bias_names  # ("b",), ("b_ih", "b_hh") or ()

    PW = np.zeros((B, S, GH, H), dtype=dt)  # ds_t/dW [b, i, m, n]
    PU = np.zeros((B, S, GH, D), dtype=dt)  # ds_t/dU [b, i, m, n]
    Pb = {name: np.zeros((B, S, GH), dtype=dt) for name in biases}  # ds_t/db [b, i, m]
    P0 = np.broadcast_to(np.eye(S, dtype=dt), (B, S, S)).copy()  # ds_t/ds0, from ds_{-1}/ds0 = I
    M = np.zeros((T, B, S, D), dtype=dt) if dense else None  # ds_t/dx_k [k, b, i, n]
    grad = {"W": np.zeros((GH, H), dt), "U": np.zeros((GH, D), dt), **{n: np.zeros(GH, dt) for n in biases}}
    ds0 = np.zeros((B, S), dt)
    dX = np.zeros((T, B, D), dtype=dt) if dense else None
    rows = np.arange(B)

    with np.errstate(**QUIET):  # overflow is named below, never a warning
        for t in range(T):
            A, Ji, Jh = step_jacobians(u, t)  # A_t (B, S, S); Ji, Jh (B, S, G*H)
            PW = (A @ PW.reshape(B, S, GH * H)).reshape(B, S, GH, H)  # A_t P^W_{t-1}
            PW += Jh[:, :, :, None] * u.h_prev(t)[:, None, None, :]  # + Jh[i, m] h_{t-1}[n]
            PU = (A @ PU.reshape(B, S, GH * D)).reshape(B, S, GH, D)  # A_t P^U_{t-1}
            if dense:
                PU += Ji[:, :, :, None] * u.X[t][:, None, None, :]  # + Ji[i, m] x_t[n]
            else:
                PU[rows, :, :, u.tokens[t]] += Ji  # x_t one-hot: + Ji[i, m] [n = x_t]
            for name, P in Pb.items():
                Pb[name] = A @ P + (Jh if name == "b_hh" else Ji)  # A_t P^b_{t-1} + ∂s_t/∂b
            P0 = A @ P0  # A_t P^0_{t-1}

            g = u.e[t]  # dE_t/ds_t = [V^T dE_t/do_t; 0], (B, S)
            grad["W"] += np.einsum("bi,bimn->mn", g, PW)
            grad["U"] += np.einsum("bi,bimn->mn", g, PU)
            for name, P in Pb.items():
                grad[name] += np.einsum("bi,bim->m", g, P)
            ds0 += np.einsum("bi,bim->bm", g, P0)
            if dense:
                M[:t] = A[None] @ M[:t]  # ds_t/dx_k = A_t ds_{t-1}/dx_k
                M[t] = Ji @ u.U  # ds_t/dx_t = Ji U
                dX[: t + 1] += np.einsum("bi,kbin->kbn", g, M[: t + 1])

    dV, dc = u.dV, u.dc  # the output layer's: dV = sum_t dE/do_t h_t^T, dc = sum_t dE/do_t
    bias_grads = {name: grad[name] for name in biases}
    grads = type(p)._adopt(U=grad["U"], W=grad["W"], V=dV, c=dc, **bias_grads)  # fresh arrays: no copies
    with np.errstate(**QUIET):  # a sensitivity or a sum over the steps that overflowed, named as by bptt
        check_grads_finite({**{f"dE/d{name}": a for name, a in grads.items()}, "dE/ds0": ds0, "dE/dxs": dX})
    prep = u.prep  # the validated inputs (an _inputs.Batch, or a gated.GatedInputs)
    return u.kind.result(
        loss=u.loss,
        grads=grads,
        ds0=prep.fold_ds0(ds0),
        dxs=prep.to_batch_first(dX) if dense else None,
        final_state=prep.state_out(u.s[-1]),
    )
