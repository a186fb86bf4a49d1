"""Decomposition oracles: per-(t, k) gradient terms and state Jacobians, by plain autograd.

Untied-weights construction: the forward uses a separate leaf copy U_k, W_k, b_k of the
weights at each step k only, so dE_t/dW_k is the contribution of step k to dE_t/dW, and

    dE/dW = sum_t sum_k dE_t/dW_k,       with dE_t/dW_k = 0 for k > t.

Truncated BPTT with window tau keeps, for each t, the terms t - tau <= k <= t.
Same model and notation as `reference.autograd`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .autograd import (
    ACTIVATIONS,
    ParamsLike,
    initial_state,
    prepare_targets,
    prepare_xs,
    rnn_step,
    step_loss,
    to_tensor,
)

DTYPE = torch.float64


def untied_terms(
    p: ParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    activation: str = "tanh",
    s0: np.ndarray | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-(t, k) terms term[t, k] = dE_t/dθ_k with untied per-step weight copies θ_k.

    p:  object with U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None (numpy).
    xs: token ids (T,) / (B, T) or dense inputs (T, D) / (B, T, D).
    ys: int labels (T,) / (B, T). mask: bool, shape of ys, or None. s0: None, (H,) or (B, H).
    E_t is the batch-summed, reduction/mask-weighted loss at time t (so sum_t E_t = E).
    Returns (termsW, termsU, termsb), float64:
        termsW (T, T, H, H), termsU (T, T, H, D), termsb (T, T, H) or None if p.b is None.
        Entries with k > t are exactly zero.
    """
    f = ACTIVATIONS[activation]
    V = to_tensor(p.V, DTYPE, False)  # (K, H), a constant here
    c = to_tensor(p.c, DTYPE, False)  # (K,) or None
    tokens, batched, _, xs_b = prepare_xs(xs, DTYPE, requires_grad=False)
    ys_b, weight = prepare_targets(ys, mask, reduction, DTYPE)  # (B, T), (B, T)
    B, T = ys_b.shape
    H, D = np.shape(p.U)

    # One leaf copy of U, W, b per step k.
    U_k = [to_tensor(p.U, DTYPE, True) for k in range(T)]  # each (H, D)
    W_k = [to_tensor(p.W, DTYPE, True) for k in range(T)]  # each (H, H)
    b_k = [to_tensor(p.b, DTYPE, True) for k in range(T)]  # each (H,) or None
    has_b = p.b is not None

    # Forward: step k uses only U_k, W_k, b_k. E[t] = E_t.
    s = initial_state(s0, H, B, batched, DTYPE, requires_grad=False).expand(B, H)  # s_{-1}
    E = []
    for k in range(T):
        s = rnn_step(U_k[k], W_k[k], b_k[k], xs_b[:, k], s, f, tokens)  # s_k, (B, H)
        E.append(step_loss(V, c, s, ys_b[:, k], weight[:, k]))  # E_k

    termsW = np.zeros((T, T, H, H))
    termsU = np.zeros((T, T, H, D))
    termsb = np.zeros((T, T, H)) if has_b else None
    for t in range(T):
        # Backward E_t alone; ask for every step's copy (unused copies, k > t, give zero).
        leaves = U_k + W_k + (b_k if has_b else [])
        g = torch.autograd.grad(E[t], leaves, retain_graph=True, allow_unused=True, materialize_grads=True)
        for k in range(T):
            termsU[t, k] = g[k].numpy()  # dE_t/dU_k
            termsW[t, k] = g[T + k].numpy()  # dE_t/dW_k
            if has_b:
                termsb[t, k] = g[2 * T + k].numpy()  # dE_t/db_k
    return termsW, termsU, termsb


def state_jacobian(
    p: ParamsLike,
    xs: np.ndarray,
    t: int,
    k: int,
    *,
    activation: str = "tanh",
    s0: np.ndarray | None = None,
) -> np.ndarray:
    """ds_t/ds_k (H, H) for UNBATCHED xs, by torch.func.jacrev.

    p:  object with U (H, D), W (H, H), b (H,) or None (numpy); V and c are not used.
    xs: token ids (T,) or dense inputs (T, D). s0: None (zeros) or (H,).
    t, k: -1 <= k <= t <= T - 1. k = -1 means the initial state s_{-1} = s0.
    Entry [i, j] = d s_t[i] / d s_k[j]. The identity when t == k.
    """
    f = ACTIVATIONS[activation]
    U = to_tensor(p.U, DTYPE, False)  # (H, D)
    W = to_tensor(p.W, DTYPE, False)  # (H, H)
    b = to_tensor(p.b, DTYPE, False)  # (H,) or None
    tokens, _, _, xs_b = prepare_xs(xs, DTYPE, requires_grad=False)  # xs_b: (1, T) or (1, T, D)
    H = W.shape[0]

    # s_k by a plain forward through steps 0 .. k (k = -1: s_k = s0).
    s_k = initial_state(s0, H, 1, False, DTYPE, requires_grad=False)  # (H,)
    for j in range(k + 1):
        s_k = rnn_step(U, W, b, xs_b[:, j], s_k[None], f, tokens)[0]  # s_j, (H,)

    def s_t_of_s_k(s: Tensor) -> Tensor:
        """s_k (H,) -> s_t (H,), running steps k + 1 .. t."""
        s = s[None]  # (1, H)
        for j in range(k + 1, t + 1):
            s = rnn_step(U, W, b, xs_b[:, j], s, f, tokens)  # s_j, (1, H)
        return s[0]

    return torch.func.jacrev(s_t_of_s_k)(s_k).numpy()
