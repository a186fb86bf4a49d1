"""Gradient clipping by global norm and the optimizers SGD and Adagrad.

Optimizers are frozen dataclasses whose ``update`` is a pure function (params, grads, state)
-> Update(new params, new state, ...); gradient clipping by global norm is part of the update,
never of the gradient function (``manual_bptt.bptt`` returns the exact gradient). Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from manual_bptt import RNNParams

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "AdagradState",
    "SGDState",
    "Update",
    "clip_by_global_norm",
    "global_norm",
    "make_optimizer",
]

#: The --optimizer choices.
OPTIMIZERS: tuple[str, ...] = ("adagrad", "sgd")


def global_norm(grads: RNNParams) -> float:
    """sqrt(sum over every array g of grads of sum g^2), without overflow for huge entries.

    Returns inf or nan when an entry is inf or nan.
    """
    arrays = [a.ravel() for a in grads.arrays()]
    with np.errstate(over="ignore"):  # fast path: sum of g^2 (not a BLAS dot: multithreaded
        sq = sum(float(np.square(a).sum()) for a in arrays)  # level-1 BLAS crawls on a busy machine)
    if math.isfinite(sq):
        return math.sqrt(sq)
    m = max(float(np.max(np.abs(a))) for a in arrays)  # inf or nan entries, or g^2 overflowed
    if not math.isfinite(m):
        return m
    return m * math.sqrt(sum(float(np.square(a / m).sum()) for a in arrays))  # ||g|| = m ||g / m||


def clip_by_global_norm(grads: RNNParams, max_norm: float | None) -> tuple[RNNParams, float]:
    """Rescale all gradients together so that their global norm is at most ``max_norm``.

        norm = sqrt(sum_i ||g_i||^2)
        g_i <- g_i * max_norm / norm      if norm > max_norm, else unchanged

    The direction of the whole gradient is kept (unlike elementwise clipping).

    Args:
        grads: gradients U (H, D), W (H, H), V (K, H), b (H,)|None, c (K,)|None.
        max_norm: positive float; None or inf for no clipping.
    Returns:
        (clipped grads, the global norm before clipping). When that norm is not finite (an
        inf or nan gradient) nothing is rescaled and the caller gets the non-finite norm.
    """
    if max_norm is not None and not (max_norm > 0):
        raise ValueError(f"max_norm: expected a positive number or None, got {max_norm!r}")
    norm = global_norm(grads)
    if max_norm is None or not math.isfinite(norm) or not norm > max_norm:
        return grads, norm
    scale = max_norm / norm
    return RNNParams(**{name: g * scale for name, g in grads.items()}), norm


def _check_same_structure(params: RNNParams, grads: RNNParams) -> None:
    pn = [(n, a.shape) for n, a in params.items()]
    gn = [(n, a.shape) for n, a in grads.items()]
    if pn != gn:
        raise ValueError(f"grads: arrays {gn} do not match the parameters {pn}")


def _check_hyper(lr: float, clip: float | None) -> None:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite positive number, got {lr!r}")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"clip: expected a positive number, inf or None, got {clip!r}")


@dataclass(frozen=True, eq=False)
class Update:
    """The result of one optimizer update.

    Attributes:
        params: the new parameters.
        state: the new optimizer state.
        grad_norm: global norm of the gradient before clipping.
        clipped: whether the gradient was rescaled.
    """

    params: RNNParams
    state: SGDState | AdagradState
    grad_norm: float
    clipped: bool


def _clip_checked(grads: RNNParams, clip: float | None, step: int) -> tuple[RNNParams, float]:
    g, norm = clip_by_global_norm(grads, clip)
    if not math.isfinite(norm):
        raise FloatingPointError(
            f"step {step}: the gradient norm is {norm}; lower the learning rate or the clip norm"
        )
    return g, norm


@dataclass(frozen=True, eq=False)
class SGDState:
    """SGD keeps no statistics; ``step`` counts the updates done."""

    step: int = 0


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent with clipping by global norm.

        g  = clip_by_global_norm(grad, clip)
        θ' = θ - lr g

    Attributes:
        lr: learning rate, > 0.   clip: max global norm, or None / inf for none.
    """

    lr: float
    clip: float | None = None

    def __post_init__(self) -> None:
        _check_hyper(self.lr, self.clip)

    def init(self, params: RNNParams) -> SGDState:
        """The state before the first update."""
        return SGDState(step=0)

    def update(self, params: RNNParams, grads: RNNParams, state: SGDState) -> Update:
        """One step; pure: the arguments are not changed."""
        _check_same_structure(params, grads)
        g, norm = _clip_checked(grads, self.clip, state.step)
        new = {name: p - self.lr * g_ for (name, p), (_, g_) in zip(params.items(), g.items(), strict=True)}
        return Update(RNNParams(**new), SGDState(step=state.step + 1), norm, g is not grads)


@dataclass(frozen=True, eq=False)
class AdagradState:
    """Adagrad's per-parameter sum of squared (clipped) gradients.

    Attributes:
        step: the updates done.
        sum_sq: G = sum over past updates of g * g, the same arrays as the parameters.
    """

    step: int
    sum_sq: RNNParams


@dataclass(frozen=True)
class Adagrad:
    """Adagrad with clipping by global norm, as in min-char-rnn.

        g  = clip_by_global_norm(grad, clip)
        G' = G + g * g                       (elementwise, G = 0 before the first update)
        θ' = θ - lr g / sqrt(G' + eps)

    Attributes:
        lr: learning rate, > 0.   clip: max global norm, or None / inf for none.
        eps: added inside the square root, > 0.
    """

    lr: float
    clip: float | None = None
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_hyper(self.lr, self.clip)
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"eps: expected a positive number, got {self.eps!r}")

    def init(self, params: RNNParams) -> AdagradState:
        """The state before the first update: G = 0."""
        return AdagradState(step=0, sum_sq=RNNParams(**{n: np.zeros_like(a) for n, a in params.items()}))

    def update(self, params: RNNParams, grads: RNNParams, state: AdagradState) -> Update:
        """One step; pure: the arguments are not changed."""
        _check_same_structure(params, grads)
        _check_same_structure(params, state.sum_sq)
        g, norm = _clip_checked(grads, self.clip, state.step)
        new_G, new_p = {}, {}
        for (name, p), (_, g_), (_, G) in zip(params.items(), g.items(), state.sum_sq.items(), strict=True):
            G2 = np.multiply(g_, g_)
            G2 += G  # G' = G + g^2
            step = np.add(G2, self.eps)
            np.sqrt(step, out=step)
            np.divide(g_, step, out=step)
            step *= self.lr  # lr g / sqrt(G' + eps)
            new_G[name], new_p[name] = G2, np.subtract(p, step, out=step)  # θ' = θ - lr g / sqrt(G' + eps)
        new_state = AdagradState(step=state.step + 1, sum_sq=RNNParams(**new_G))
        return Update(RNNParams(**new_p), new_state, norm, g is not grads)


def make_optimizer(name: str, *, lr: float, clip: float | None) -> SGD | Adagrad:
    """The optimizer named ``name`` (one of OPTIMIZERS)."""
    if name == "adagrad":
        return Adagrad(lr=lr, clip=clip)
    if name == "sgd":
        return SGD(lr=lr, clip=clip)
    raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {name!r}")
