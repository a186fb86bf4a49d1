"""Decomposition oracles for the GRU and the LSTM: per-(t, k) gradient terms and state Jacobians.

Untied-weights construction, as in `reference.decompose`: the forward uses a separate leaf copy
U_k, W_k, b_ih_k, b_hh_k of the weights at each step k only, so dE_t/dθ_k is the contribution of
step k to dE_t/dθ, and

    dE/dθ = sum_t sum_k dE_t/dθ_k,       with dE_t/dθ_k = 0 for k > t,

for θ in U, W, b_ih, b_hh. Truncated BPTT with window tau keeps, for each t, the terms
t - tau <= k <= t. The state is z_t = h_t for the GRU and z_t = [h_t; cell_t] (2H) for the LSTM.
Same model, layout and notation as `reference.gated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .autograd import prepare_targets, prepare_xs, step_loss, to_tensor
from .gated import GATES, STEPS, GatedParamsLike, check_gated_params, initial_leaves

DTYPE = torch.float64


@dataclass(frozen=True)
class GatedTerms:
    """Per-(t, k) terms term[t, k] = dE_t/dθ_k, float64; entries with k > t are exactly zero.

    U (T, T, G*H, D), W (T, T, G*H, H), b_ih (T, T, G*H) or None, b_hh (T, T, G*H) or None.
    """

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None


def gated_terms(
    cell: str,
    p: GatedParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: Any = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
) -> GatedTerms:
    """Per-(t, k) terms dE_t/dθ_k of a GRU or LSTM (cell = "gru" | "lstm") with untied weight copies.

    p:  object with U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None, V (K, H), c (K,) or None.
    xs: token ids (T,) / (B, T) or dense inputs (T, D) / (B, T, D).
    ys: int labels (T,) / (B, T). mask: bool, shape of ys, or None.
    s0: GRU None, (H,) or (B, H); LSTM None or (h0, c0).
    E_t is the batch-summed, reduction/mask-weighted loss at time t (so sum_t E_t = E).
    Returns GatedTerms (see its docstring for shapes).
    """
    D, H, _ = check_gated_params(cell, p)
    step = STEPS[cell]
    GH = GATES[cell] * H
    V = to_tensor(p.V, DTYPE, False)  # (K, H), a constant here
    c = to_tensor(p.c, DTYPE, False)  # (K,) or None
    tokens, batched, _, xs_b = prepare_xs(xs, DTYPE, requires_grad=False)
    ys_b, weight = prepare_targets(ys, mask, reduction, DTYPE)  # (B, T), (B, T)
    B, T = ys_b.shape
    has_b = p.b_ih is not None

    # One leaf copy of U, W, b_ih, b_hh per step k.
    U_k = [to_tensor(p.U, DTYPE, True) for k in range(T)]  # each (G*H, D)
    W_k = [to_tensor(p.W, DTYPE, True) for k in range(T)]  # each (G*H, H)
    b_ih_k = [to_tensor(p.b_ih, DTYPE, True) for k in range(T)]  # each (G*H,) or None
    b_hh_k = [to_tensor(p.b_hh, DTYPE, True) for k in range(T)]  # each (G*H,) or None

    # Forward: step k uses only U_k, W_k, b_ih_k, b_hh_k. E[t] = E_t.
    leaves0 = initial_leaves(cell, s0, H, B, batched, DTYPE, requires_grad=False)
    state = tuple(leaf.expand(B, H) for leaf in leaves0)  # the state at -1
    E = []
    for k in range(T):
        state = step(U_k[k], W_k[k], b_ih_k[k], b_hh_k[k], xs_b[:, k], state, tokens)  # state at k
        E.append(step_loss(V, c, state[0], ys_b[:, k], weight[:, k]))  # E_k

    terms_U = np.zeros((T, T, GH, D))
    terms_W = np.zeros((T, T, GH, H))
    terms_b_ih = np.zeros((T, T, GH)) if has_b else None
    terms_b_hh = np.zeros((T, T, GH)) if has_b else None
    leaves = U_k + W_k + (b_ih_k + b_hh_k if has_b else [])
    for t in range(T):
        # Backward E_t alone; ask for every step's copy (unused copies, k > t, give zero).
        g = torch.autograd.grad(E[t], leaves, retain_graph=True, allow_unused=True, materialize_grads=True)
        for k in range(T):
            terms_U[t, k] = g[k].numpy()  # dE_t/dU_k
            terms_W[t, k] = g[T + k].numpy()  # dE_t/dW_k
            if has_b:
                terms_b_ih[t, k] = g[2 * T + k].numpy()  # dE_t/db_ih_k
                terms_b_hh[t, k] = g[3 * T + k].numpy()  # dE_t/db_hh_k
    return GatedTerms(U=terms_U, W=terms_W, b_ih=terms_b_ih, b_hh=terms_b_hh)


def gru_terms(p: GatedParamsLike, xs: np.ndarray, ys: np.ndarray, **kwargs: Any) -> GatedTerms:
    """gated_terms("gru", ...): U (T, T, 3H, D), W (T, T, 3H, H), b_ih, b_hh (T, T, 3H) or None."""
    return gated_terms("gru", p, xs, ys, **kwargs)


def lstm_terms(p: GatedParamsLike, xs: np.ndarray, ys: np.ndarray, **kwargs: Any) -> GatedTerms:
    """gated_terms("lstm", ...): U (T, T, 4H, D), W (T, T, 4H, H), b_ih, b_hh (T, T, 4H) or None."""
    return gated_terms("lstm", p, xs, ys, **kwargs)


def gated_state_jacobian(
    cell: str,
    p: GatedParamsLike,
    xs: np.ndarray,
    t: int,
    k: int,
    *,
    s0: Any = None,
) -> np.ndarray:
    """dz_t/dz_k by torch.func.jacrev, for a GRU (z = h, (H, H)) or an LSTM (z = [h; cell], (2H, 2H)).

    p:  object with U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None (numpy); V, c unused.
    xs: token ids (T,) / (B, T) or dense inputs (T, D) / (B, T, D).
    s0: GRU None, (H,) or (B, H); LSTM None or (h0, c0), each (H,) or (B, H).
    t, k: -1 <= k <= t <= T - 1. k = -1 means the initial state.
    Returns (S, S) unbatched or (B, S, S) batched (S = H or 2H), entry [.., i, j] = dz_t[i] / dz_k[j]
    for one sequence (sequences do not interact). The identity when t == k.
    """
    _, H, _ = check_gated_params(cell, p)
    step = STEPS[cell]
    U, W = to_tensor(p.U, DTYPE, False), to_tensor(p.W, DTYPE, False)  # (G*H, D), (G*H, H)
    b_ih, b_hh = to_tensor(p.b_ih, DTYPE, False), to_tensor(p.b_hh, DTYPE, False)  # (G*H,) or None
    tokens, batched, _, xs_b = prepare_xs(xs, DTYPE, requires_grad=False)  # (B, T) or (B, T, D)
    B, T = xs_b.shape[0], xs_b.shape[1]
    if not (-1 <= k <= t <= T - 1):
        raise ValueError(f"need -1 <= k <= t <= T - 1 = {T - 1}, got t={t}, k={k}")
    leaves0 = initial_leaves(cell, s0, H, B, batched, DTYPE, requires_grad=False)

    jacobians = []
    for row in range(B):
        # z_k for this sequence by a plain forward through steps 0 .. k (k = -1: the initial state).
        state = tuple(leaf.expand(B, H)[row : row + 1] for leaf in leaves0)  # each (1, H)
        for j in range(k + 1):
            state = step(U, W, b_ih, b_hh, xs_b[row : row + 1, j], state, tokens)
        z_k = torch.cat(state, dim=1)[0]  # (S,)

        def z_t_of_z_k(z: Tensor, row: int = row) -> Tensor:
            """z_k (S,) -> z_t (S,), running steps k + 1 .. t of sequence `row`."""
            st = tuple(z[None].split(H, dim=1))  # GRU (h,), LSTM (h, cell); each (1, H)
            for j in range(k + 1, t + 1):
                st = step(U, W, b_ih, b_hh, xs_b[row : row + 1, j], st, tokens)
            return torch.cat(st, dim=1)[0]

        jacobians.append(torch.func.jacrev(z_t_of_z_k)(z_k).numpy())
    return np.stack(jacobians) if batched else jacobians[0]


def gru_state_jacobian(p: GatedParamsLike, xs: np.ndarray, t: int, k: int, *, s0: Any = None) -> np.ndarray:
    """dh_t/dh_k of the GRU: (H, H), or (B, H, H) batched. See gated_state_jacobian."""
    return gated_state_jacobian("gru", p, xs, t, k, s0=s0)


def lstm_state_jacobian(p: GatedParamsLike, xs: np.ndarray, t: int, k: int, *, s0: Any = None) -> np.ndarray:
    """dz_t/dz_k of the LSTM for z = [h; cell]: (2H, 2H), or (B, 2H, 2H) batched. See gated_state_jacobian."""
    return gated_state_jacobian("lstm", p, xs, t, k, s0=s0)
