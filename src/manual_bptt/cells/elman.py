"""The Elman cell, as a spec that reads like the math: one line per equation. numpy only.

    a_t = gi_t + gh_t = (U x_t + b) + W s_{t-1}        s_t = f(a_t)         (G = 1, P = 1)

This is the statement of the step; manual_bptt.fast.elman holds the blocked fast path of the same
recursion, property-tested against the generic driver over this spec.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Cell, StepWeights, recurrent_term


class ElmanCache(NamedTuple):
    """What the backward step needs: s_t (B, H), the state itself (f'(a_t) comes from it)."""

    s: np.ndarray


def forward(w: StepWeights, gi: np.ndarray, s_prev: np.ndarray) -> tuple[np.ndarray, ElmanCache]:
    """One step: s_prev (B, H), gi = U x_t + b (B, H) -> s_t (B, H)."""
    a = gi + recurrent_term(w, s_prev)  # a_t = U x_t + b + W s_{t-1}
    s = w.act.f(a)  # s_t = f(a_t)
    return s, ElmanCache(s)


def backward(w: StepWeights, ds: np.ndarray, cache: ElmanCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dE/ds_t (B, H) -> (dE/ds_{t-1}, dE/dgi_t, dE/dgh_t), each (B, H)."""
    da = ds * w.act.prime(cache.s)  # dE/da_t = dE/ds_t * f'(a_t)
    ds_prev = da @ w.W  # dE/ds_{t-1} = W^T dE/da_t
    return ds_prev, da, da  # a_t = gi_t + gh_t: both receive dE/da_t


def partials(w: StepWeights, cache: ElmanCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ji = Jh = diag(f'(a_t)) (B, H, H); Js = 0 (s_{t-1} enters only through gh_t)."""
    fp = w.act.prime(cache.s)  # f'(a_t), (B, H)
    J = fp[:, :, None] * np.eye(w.H, dtype=fp.dtype)  # ∂s_t/∂a_t = diag(f'(a_t))
    return J, J, np.zeros_like(J)


ELMAN = Cell(
    name="rnn", gates=1, parts=1, forward=forward, backward=backward, partials=partials, cache_width=1
)
