"""The GRU cell, torch.nn.GRU's exact math, as a spec that reads like the math. numpy only.

Gate blocks in torch's order r, z, n (G = 3, P = 1: the interface's state s_t is h_t).
With gi = U x_t + b_ih and gh = W h_{t-1} + b_hh, each split into its r, z, n blocks of H:

    r_t = σ(gi_r + gh_r)                 reset gate
    z_t = σ(gi_z + gh_z)                 update gate
    n_t = tanh(gi_n + r_t ⊙ gh_n)        candidate: the reset gate multiplies W_n h_{t-1} + b_hn,
                                         *after* the product (as nn.GRU and cuDNN compute it)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Here z_t is torch's update gate, and nothing else: the interface's state (cells.base) is s_t = h_t.

Every array is (B, H) per block, (B, 3H) stacked.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..activations import ACTIVATIONS
from .base import Cell, StepWeights, recurrent_term

_sigmoid = ACTIVATIONS["sigmoid"]


class GRUCache(NamedTuple):
    """What the backward step needs, each (B, H): h_{t-1}, the gates r_t, z_t, n_t, and gh_n."""

    h_prev: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    gh_n: np.ndarray


def forward(w: StepWeights, gi: np.ndarray, h_prev: np.ndarray) -> tuple[np.ndarray, GRUCache]:
    """One step: gi = U x_t + b_ih (B, 3H), h_prev (B, H) -> h_t (B, H)."""
    H = w.H
    gh = recurrent_term(w, h_prev)  # gh = W h_{t-1} + b_hh, one (B, 3H) product
    rz = gh[:, : 2 * H]  # blocks r, z, overwritten in place (gh_n stays)
    rz += gi[:, : 2 * H]  # gi_r + gh_r, gi_z + gh_z
    _sigmoid.f(rz, out=rz)  # r_t = σ(gi_r + gh_r);  z_t = σ(gi_z + gh_z)
    r, z = rz[:, :H], rz[:, H:]
    gh_n = gh[:, 2 * H :]
    n = np.tanh(gi[:, 2 * H :] + r * gh_n)  # n_t = tanh(gi_n + r_t ⊙ gh_n)
    h = n + z * (h_prev - n)  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    return h, GRUCache(h_prev, r, z, n, gh_n)


def backward(w: StepWeights, dh: np.ndarray, cache: GRUCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dE/dh_t (B, H) -> (dE/dh_{t-1} (B, H), dE/dgi_t (B, 3H), dE/dgh_t (B, 3H))."""
    H = w.H
    h_prev, r, z, n, gh_n = cache
    dgi = np.empty((dh.shape[0], 3 * H), dtype=dh.dtype)
    dn = dh * (1 - z)  # dE/dn_t = dE/dh_t ⊙ (1 - z_t)
    dz = dh * (h_prev - n)  # dE/dz_t = dE/dh_t ⊙ (h_{t-1} - n_t)
    dgi[:, 2 * H :] = dn * (1 - n * n)  # dE/dgi_n = dE/dn_t ⊙ (1 - n_t²)
    dr = dgi[:, 2 * H :] * gh_n  # dE/dr_t = dE/dgi_n ⊙ gh_n
    dgi[:, :H] = dr * _sigmoid.prime(r)  # dE/dgi_r = dE/dr_t ⊙ r_t (1 - r_t)
    dgi[:, H : 2 * H] = dz * _sigmoid.prime(z)  # dE/dgi_z = dE/dz_t ⊙ z_t (1 - z_t)
    dgh = dgi.copy()  # r and z blocks: gi and gh enter as a sum
    dgh[:, 2 * H :] *= r  # dE/dgh_n = dE/dgi_n ⊙ r_t
    dh_prev = dh * z + dgh @ w.W  # dE/dh_{t-1} = dE/dh_t ⊙ z_t + W^T dE/dgh_t
    return dh_prev, dgi, dgh


def partials(w: StepWeights, cache: GRUCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ji = ∂h_t/∂gi_t, Jh = ∂h_t/∂gh_t (B, H, 3H) and Js = ∂h_t/∂h_{t-1} (B, H, H), gi, gh held fixed.

    Each block is diagonal: with n' = 1 - n_t², r' = r_t (1 - r_t), z' = z_t (1 - z_t),
        Ji = [diag((1 - z) n' gh_n r'), diag((h_{t-1} - n) z'), diag((1 - z) n')]
        Jh = [the same r and z blocks,                          diag((1 - z) n' r)]
        Js = diag(z_t)
    """
    H = w.H
    h_prev, r, z, n, gh_n = cache
    eye = np.eye(H, dtype=r.dtype)
    dn_da = (1 - z) * (1 - n * n)  # ∂h_t/∂(gi_n + r ⊙ gh_n)
    blocks_i = (dn_da * gh_n * _sigmoid.prime(r), (h_prev - n) * _sigmoid.prime(z), dn_da)
    blocks_h = (blocks_i[0], blocks_i[1], dn_da * r)
    Ji = np.concatenate([d[:, :, None] * eye for d in blocks_i], axis=2)
    Jh = np.concatenate([d[:, :, None] * eye for d in blocks_h], axis=2)
    Js = z[:, :, None] * eye  # ∂h_t/∂h_{t-1} = diag(z_t)
    return Ji, Jh, Js


GRU = Cell(
    name="gru", gates=3, parts=1, forward=forward, backward=backward, partials=partials, cache_width=5
)
