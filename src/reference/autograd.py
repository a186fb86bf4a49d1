"""Plain, unrolled PyTorch-autograd oracle for BPTT in a vanilla (Elman) RNN.

Model (batch-first; B = batch, T = time, D = input size, H = hidden size, K = classes):

    a_t = U x_t + W s_{t-1} + b        s_t = f(a_t)         s_{-1} = s0 (zeros if None)
    o_t = V s_t + c                    y_hat_t = softmax(o_t)
    E_t = -log y_hat_t[y_t]            E = sum_t E_t  (reduction="sum")
                                       E = sum_t E_t / (number of counted targets)  (reduction="mean")

Shapes: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None.

Every time step is one iteration of an explicit Python loop; autograd computes every
derivative. Nothing is vectorized over time (truncated BPTT stacks the windows that end at
different t along the batch axis, each of their steps still one iteration: reference.truncation).
Internally the batch axis is always present (B = 1 for unbatched inputs) and is removed again
from the returned arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from . import truncation

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,  # derivative at 0 is 0
    "identity": lambda a: a,
}


class ParamsLike(Protocol):
    """Any object with numpy attributes U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None."""

    U: np.ndarray
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray | None
    c: np.ndarray | None


@dataclass(frozen=True)
class RefGrads:
    """dE/dθ as numpy arrays: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None."""

    U: np.ndarray
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray | None
    c: np.ndarray | None


@dataclass(frozen=True)
class RefResult:
    """Result of one oracle run.

    loss:        E as a python float.
    grads:       RefGrads, same shapes as the parameters (None where the parameter is None).
    ds0:         dE/ds0, shape of s0 as given; (H,) unbatched or (B, H) batched when s0 is None.
    dxs:         dE/dxs, same shape as dense xs ((T, D) or (B, T, D)); None for token ids.
    final_state: s_{T-1}, (H,) unbatched or (B, H) batched.
    """

    loss: float
    grads: RefGrads
    ds0: np.ndarray
    dxs: np.ndarray | None
    final_state: np.ndarray


def to_tensor(arr: np.ndarray | None, dtype: torch.dtype, requires_grad: bool) -> Tensor | None:
    """Copy a numpy array (any shape) into a new torch tensor of `dtype`; None stays None."""
    if arr is None:
        return None
    return torch.tensor(np.asarray(arr), dtype=dtype, requires_grad=requires_grad)


def prepare_xs(
    xs: np.ndarray, dtype: torch.dtype, requires_grad: bool
) -> tuple[bool, bool, Tensor | None, Tensor]:
    """Read the inputs.

    xs: token ids (T,) / (B, T) of an integer dtype, or dense vectors (T, D) / (B, T, D).
    Returns (tokens, batched, xs_leaf, xs_b):
        tokens:  True for integer token ids.
        batched: True when xs has a batch axis.
        xs_leaf: dense xs as given ((T, D) or (B, T, D)), a leaf tensor; None for tokens.
        xs_b:    batch-first view of xs: (B, T) int64 ids or (B, T, D) float.
    """
    xs = np.asarray(xs)
    tokens = bool(np.issubdtype(xs.dtype, np.integer))
    if tokens:
        batched = xs.ndim == 2
        xs_leaf = None
        xs_b = torch.tensor(xs, dtype=torch.int64)
    else:
        batched = xs.ndim == 3
        xs_leaf = to_tensor(xs, dtype, requires_grad)
        xs_b = xs_leaf
    if not batched:
        xs_b = xs_b.unsqueeze(0)  # add the batch axis, B = 1
    return tokens, batched, xs_leaf, xs_b


def prepare_targets(
    ys: np.ndarray, mask: np.ndarray | None, reduction: str, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Read the targets.

    ys: int labels in [0, K), (T,) or (B, T). mask: bool, shape of ys, or None (all True).
    Returns (ys_b, weight):
        ys_b:   (B, T) int64 labels.
        weight: (B, T) weight of E_t[b] in E: mask[b, t] ("sum") or mask[b, t] / mask.sum() ("mean").
    """
    ys_b = torch.tensor(np.asarray(ys), dtype=torch.int64)
    if mask is None:
        weight = torch.ones(ys_b.shape, dtype=dtype)
    else:
        weight = torch.tensor(np.asarray(mask), dtype=dtype)  # True -> 1, False -> 0
    if reduction == "mean":
        weight = weight / weight.sum()  # divide by the number of counted targets
    elif reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if ys_b.ndim == 1:
        ys_b, weight = ys_b.unsqueeze(0), weight.unsqueeze(0)  # add the batch axis, B = 1
    return ys_b, weight


def initial_state(
    s0: np.ndarray | None, H: int, B: int, batched: bool, dtype: torch.dtype, requires_grad: bool
) -> Tensor:
    """The initial state s_{-1} = s0 as a leaf tensor, with the shape of s0 as given.

    s0: None, (H,) or (B, H). When None: zeros of shape (H,) unbatched or (B, H) batched.
    The caller expands it to (B, H) with `.expand(B, H)` (an (H,) s0 is shared by the batch).
    """
    if s0 is None:
        shape = (B, H) if batched else (H,)
        return torch.zeros(shape, dtype=dtype, requires_grad=requires_grad)
    return to_tensor(s0, dtype, requires_grad)


def rnn_step(
    U: Tensor,
    W: Tensor,
    b: Tensor | None,
    x_t: Tensor,
    s_prev: Tensor,
    f: Callable[[Tensor], Tensor],
    tokens: bool,
) -> Tensor:
    """One step s_t = f(U x_t + W s_{t-1} + b).

    U (H, D), W (H, H), b (H,) or None; x_t (B,) int64 token ids or (B, D) dense;
    s_prev = s_{t-1} (B, H). Returns s_t (B, H).
    """
    if tokens:
        Ux_t = U[:, x_t].T  # U x_t for one-hot x_t = column x_t of U, (B, H)
    else:
        Ux_t = x_t @ U.T  # U x_t, (B, H)
    a_t = Ux_t + s_prev @ W.T  # a_t = U x_t + W s_{t-1}
    if b is not None:
        a_t = a_t + b  # ... + b
    return f(a_t)  # s_t = f(a_t)


def step_loss(V: Tensor, c: Tensor | None, s_t: Tensor, y_t: Tensor, weight_t: Tensor) -> Tensor:
    """Weighted loss at time t, summed over the batch: sum_b weight_t[b] * E_t[b].

    V (K, H), c (K,) or None, s_t (B, H), y_t (B,) int64, weight_t (B,). Returns a scalar.
    """
    o_t = s_t @ V.T  # o_t = V s_t, (B, K)
    if c is not None:
        o_t = o_t + c  # ... + c
    log_y_hat_t = torch.log_softmax(o_t, dim=1)  # log y_hat_t = log softmax(o_t), (B, K)
    E_t = -log_y_hat_t[torch.arange(y_t.shape[0]), y_t]  # E_t = -log y_hat_t[y_t], (B,)
    return (weight_t * E_t).sum()


def _numpy(x: Tensor | None) -> np.ndarray | None:
    """Tensor (any shape) -> numpy array of the same shape; None stays None."""
    return None if x is None else x.detach().numpy()


def bptt(
    p: ParamsLike,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    activation: str = "tanh",
    s0: np.ndarray | None = None,
    truncate: int | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
    dtype: torch.dtype = torch.float64,
) -> RefResult:
    """Loss and gradients of the RNN by plain autograd through an unrolled loop.

    p:    object with U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None (numpy).
    xs:   token ids (T,) / (B, T) (integer dtype) or dense inputs (T, D) / (B, T, D).
    ys:   int labels (T,) / (B, T). mask: bool, shape of ys, or None.
    s0:   None, (H,) or (B, H) (batched only). An (H,) s0 is shared by every sequence.
    truncate: None for full BPTT; tau >= 0 keeps, for each E_t, only the terms of steps
          k with t - tau <= k <= t (for U, W, b, xs and s0; V and c are unaffected).
    Returns RefResult (see its docstring for shapes).
    """
    f = ACTIVATIONS[activation]
    U, W, V = (to_tensor(a, dtype, True) for a in (p.U, p.W, p.V))  # (H, D), (H, H), (K, H)
    b = to_tensor(p.b, dtype, True)  # (H,) or None
    c = to_tensor(p.c, dtype, True)  # (K,) or None
    tokens, batched, xs_leaf, xs_b = prepare_xs(xs, dtype, requires_grad=True)
    ys_b, weight = prepare_targets(ys, mask, reduction, dtype)  # (B, T), (B, T)
    B, T = ys_b.shape
    H = W.shape[0]
    s0_leaf = initial_state(s0, H, B, batched, dtype, requires_grad=True)  # (H,) or (B, H)

    if truncate is None or truncation.keeps_every_term(truncate, T):
        # Full BPTT (a window tau >= T - 1 keeps every term): one unrolled forward, one backward.
        s = s0_leaf.expand(B, H)  # s_{-1}, (B, H)
        E = torch.zeros((), dtype=dtype)
        for t in range(T):
            s = rnn_step(U, W, b, xs_b[:, t], s, f, tokens)  # s_t, (B, H)
            E = E + step_loss(V, c, s, ys_b[:, t], weight[:, t])  # E += E_t
        E.backward()
        loss = E.item()
        final_state = s
    else:
        # Truncated BPTT, tau < T - 1 (reference.truncation): the states s_t, without a graph, then
        # each E_t differentiated through the steps max(0, t - tau) .. t only.
        with torch.no_grad():
            states = []  # states[t] = (s_t,), (B, H)
            s = s0_leaf.expand(B, H)
            for t in range(T):
                s = rnn_step(U, W, b, xs_b[:, t], s, f, tokens)
                states.append((s,))

        def step(x_t: Tensor, state: tuple[Tensor]) -> tuple[Tensor]:
            return (rnn_step(U, W, b, x_t, state[0], f, tokens),)  # s_t = f(U x_t + W s_{t-1} + b)

        def E_t(state: tuple[Tensor], targets_t: tuple[Tensor, Tensor]) -> Tensor:
            return step_loss(V, c, state[0], *targets_t)  # sum_b weight_t[b] * E_t[b]

        loss = truncation.truncated_windows(
            step, lambda: (s0_leaf.expand(B, H),), states, xs_b, (ys_b, weight), truncate, E_t
        )
        final_state = states[-1][0]

    if not batched:
        final_state = final_state[0]  # (H,)
    grads = RefGrads(
        U=_numpy(U.grad),
        W=_numpy(W.grad),
        V=_numpy(V.grad),
        b=None if b is None else _numpy(b.grad),
        c=None if c is None else _numpy(c.grad),
    )
    return RefResult(
        loss=loss,
        grads=grads,
        ds0=_numpy(s0_leaf.grad),
        dxs=None if xs_leaf is None else _numpy(xs_leaf.grad),
        final_state=_numpy(final_state),
    )
