"""Activations f and their derivatives f'(a_t), each expressed through s_t = f(a_t) alone.

tanh' = 1 - s_t^2, sigmoid' = s_t (1 - s_t), relu' = [a_t > 0] = [s_t > 0] (0 at a_t = 0,
as in PyTorch), identity' = 1. Needing only s_t, the backward pass computes f'(a_t) one step
at a time from the states it keeps anyway, with no array of pre-activations or derivatives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid 1 / (1 + exp(-a)), accurate to a few ulp in both tails. Any shape.

    With e = exp(-|a|), in (0, 1] (never overflows):
        sigmoid(a) = 1 / (1 + e)   for a >= 0,      sigmoid(a) = e / (1 + e)   for a < 0,
    so the negative tail keeps its relative accuracy down to the smallest subnormal
    (1.9287e-22 at a = -50), where (1 + tanh(a/2)) / 2 cancels to 0 below a = -37.
    """
    e = np.exp(-np.abs(a))  # exp(-|a|)
    numerator = np.where(a >= 0, 1.0, e).astype(e.dtype, copy=False)  # a is read before out is written
    return np.divide(numerator, 1.0 + e, out=out)


def _relu(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(a, 0, out=out)


def _identity(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return a.copy()
    out[...] = a
    return out


def _tanh_prime(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(s, s, out=out)  # 1 - s^2
    return np.subtract(1.0, out, out=out)


def _sigmoid_prime(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.subtract(1.0, s, out=out)  # s (1 - s)
    return np.multiply(s, out, out=out)


def _relu_prime(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # [a > 0] = [s > 0], since s = max(a, 0)
    if out is None:
        return (s > 0).astype(s.dtype)
    np.copyto(out, s > 0)
    return out


def _identity_prime(s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ones_like(s)
    out.fill(1.0)
    return out


@dataclass(frozen=True)
class Activation:
    """An elementwise activation f with its derivative.

    Attributes:
        name: one of ACTIVATIONS.
        f: f(a, out=None) -> s, any shape; writes into ``out`` when given.
        prime: prime(s, out=None) -> f'(a), same shape and dtype as s, where s = f(a);
            writes into ``out`` when given.
    """

    name: str
    f: Callable[..., np.ndarray]
    prime: Callable[..., np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", np.tanh, _tanh_prime),  # the ufunc itself: no wrapper call per step
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_prime),
    "relu": Activation("relu", _relu, _relu_prime),
    "identity": Activation("identity", _identity, _identity_prime),
}


def get_activation(activation: str) -> Activation:
    """The Activation named ``activation``; ValueError naming the choices otherwise."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]
