"""Activations f and their derivatives f'(a_t), expressed through a_t and s_t = f(a_t).

Each derivative is computed from whichever of a_t, s_t gives it exactly and cheaply:
tanh' = 1 - s_t^2, sigmoid' = s_t (1 - s_t), relu' = [a_t > 0] (0 at a_t = 0, as in
PyTorch), identity' = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid 1 / (1 + exp(-a)), overflow-free for large |a|. Any shape."""
    # sigmoid(a) = (1 + tanh(a/2)) / 2 is exact in real arithmetic and never overflows.
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _tanh(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(a, out=out)


def _relu(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(a, 0, out=out)


def _identity(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return a.copy()
    out[...] = a
    return out


def _tanh_prime(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    return 1.0 - s * s


def _sigmoid_prime(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    return s * (1.0 - s)


def _relu_prime(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (a > 0).astype(a.dtype)


def _identity_prime(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.ones_like(a)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation f with its derivative.

    Attributes:
        name: one of ACTIVATIONS.
        f: f(a, out=None) -> s, any shape; writes into ``out`` when given.
        prime: prime(a, s) -> f'(a), same shape as a, where s = f(a).
    """

    name: str
    f: Callable[..., np.ndarray]
    prime: Callable[[np.ndarray, np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", _tanh, _tanh_prime),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_prime),
    "relu": Activation("relu", _relu, _relu_prime),
    "identity": Activation("identity", _identity, _identity_prime),
}


def get_activation(activation: str) -> Activation:
    """The Activation named ``activation``; ValueError naming the choices otherwise."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]
