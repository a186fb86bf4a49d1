"""The LSTM cell, torch.nn.LSTM's exact math, as a spec that reads like the math. numpy only.

Gate blocks in torch's order i, f, g, o (G = 4). The state of the interface is the pair
s_t = [h_t; c_t] (P = 2, S = 2H): h_t the output, c_t the cell state. With
a = gi + gh = U x_t + b_ih + W h_{t-1} + b_hh split into its blocks of H:

    gate_i = σ(a_i)    gate_f = σ(a_f)    gate_g = tanh(a_g)    gate_o = σ(a_o)
    c_t = gate_f ⊙ c_{t-1} + gate_i ⊙ gate_g
    m_t = gate_o ⊙ tanh(c_t)
    h_t = W_hr m_t          with a projection (torch's proj_size, weight_hr (H_out, H)), else h_t = m_t

With a projection h_t has H_out < H numbers: s_t = [h_t (H_out); c_t (H)] and W is (4H, H_out)
(see cells.base). The backward starts with dE/dm_t = W_hr^T dE/dh_t and is then the unprojected
one with dE/dm_t in place of dE/dh_t.

Names: gate_o is the output *gate* and c_t the *cell state* (c_t, c_prev, dc_t: never a bare c);
the seed's logits o_t = V h_t + c and output bias c (a parameter) are something else, and never
appear in this module.
Every array is (B, H) per block, (B, 4H) stacked, (B, H_out + H) for the state (2H unprojected).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..activations import ACTIVATIONS
from .base import Cell, StepWeights, recurrent_term

_sigmoid = ACTIVATIONS["sigmoid"]


class LSTMCache(NamedTuple):
    """What the backward step needs: the gates (B, 4H) [i, f, g, o], c_{t-1} and tanh(c_t) (B, H)."""

    gates: np.ndarray
    c_prev: np.ndarray
    tanh_c: np.ndarray


def forward(w: StepWeights, gi: np.ndarray, s_prev: np.ndarray) -> tuple[np.ndarray, LSTMCache]:
    """One step: gi = U x_t + b_ih (B, 4H), s_prev = [h_{t-1}; c_{t-1}] (B, H_out + H) -> [h_t; c_t]."""
    H, H_out = w.H, w.H_out
    h_prev, c_prev = s_prev[:, :H_out], s_prev[:, H_out:]
    gates = recurrent_term(w, h_prev)  # gh = W h_{t-1} + b_hh, one (B, 4H) product
    gates += gi  # a = gi + gh, turned into the gates in place
    _sigmoid.f(gates[:, : 2 * H], out=gates[:, : 2 * H])  # gate_i = σ(a_i), gate_f = σ(a_f)
    np.tanh(gates[:, 2 * H : 3 * H], out=gates[:, 2 * H : 3 * H])  # gate_g = tanh(a_g)
    _sigmoid.f(gates[:, 3 * H :], out=gates[:, 3 * H :])  # gate_o = σ(a_o)
    gate_i, gate_f, gate_g, gate_o = (gates[:, j * H : (j + 1) * H] for j in range(4))
    s = np.empty_like(s_prev)
    c_t = s[:, H_out:]
    np.multiply(gate_f, c_prev, out=c_t)  # c_t = gate_f ⊙ c_{t-1} ...
    c_t += gate_i * gate_g  # ... + gate_i ⊙ gate_g
    tanh_c = np.tanh(c_t)
    if w.W_hr is None:
        np.multiply(gate_o, tanh_c, out=s[:, :H])  # h_t = m_t = gate_o ⊙ tanh(c_t)
    else:
        m = gate_o * tanh_c  # m_t = gate_o ⊙ tanh(c_t)
        np.matmul(m, w.W_hrT, out=s[:, :H_out])  # h_t = W_hr m_t
    return s, LSTMCache(gates, c_prev, tanh_c)


def backward(w: StepWeights, ds: np.ndarray, cache: LSTMCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dE/ds_t = [dE/dh_t; dE/dc_t] (B, H_out + H) -> (dE/ds_{t-1}, dE/dgi_t, dE/dgh_t (B, 4H)).

    dE/dgi_t = dE/dgh_t = dE/da_t: the two terms enter every gate as a sum.
    """
    H, H_out = w.H, w.H_out
    gates, c_prev, tanh_c = cache
    gate_i, gate_f, gate_g, gate_o = (gates[:, j * H : (j + 1) * H] for j in range(4))
    dh, dc_in = ds[:, :H_out], ds[:, H_out:]  # dE/dh_t; what arrives at c_t itself (from step t + 1)
    dm = dh if w.W_hr is None else dh @ w.W_hr  # dE/dm_t = W_hr^T dE/dh_t (dE/dh_t without W_hr)
    da = np.empty_like(gates)
    dc_t = dc_in + dm * gate_o * (1 - tanh_c * tanh_c)  # dE/dc_t, total: direct + through m_t
    da[:, :H] = dc_t * gate_g * _sigmoid.prime(gate_i)  # dE/da_i = dE/dc_t ⊙ gate_g ⊙ σ'
    da[:, H : 2 * H] = dc_t * c_prev * _sigmoid.prime(gate_f)  # dE/da_f = dE/dc_t ⊙ c_{t-1} ⊙ σ'
    da[:, 2 * H : 3 * H] = dc_t * gate_i * (1 - gate_g * gate_g)  # dE/da_g = dE/dc_t ⊙ gate_i ⊙ tanh'
    da[:, 3 * H :] = dm * tanh_c * _sigmoid.prime(gate_o)  # dE/da_o = dE/dm_t ⊙ tanh(c_t) ⊙ σ'
    ds_prev = np.empty_like(ds)
    np.matmul(da, w.W, out=ds_prev[:, :H_out])  # dE/dh_{t-1} = W^T dE/da_t
    np.multiply(dc_t, gate_f, out=ds_prev[:, H_out:])  # dE/dc_{t-1} = dE/dc_t ⊙ gate_f
    return ds_prev, da, da


def partials(w: StepWeights, cache: LSTMCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ji = Jh = ∂s_t/∂a_t (B, S, 4H) and Js = ∂s_t/∂s_{t-1} (B, S, S), with gi, gh held fixed
    (S = H_out + H; 2H unprojected).

    Each block is diagonal: with tc' = 1 - tanh(c_t)², the rows of c_t (that is, ∂c_t/∂a) are
        [diag(gate_g σ'_i), diag(c_{t-1} σ'_f), diag(gate_i tanh'_g), 0]
    the rows of m_t are gate_o tc' times those, plus diag(tanh(c_t) σ'_o) in the o block; and
        Js = [[0, ∂h_t/∂c_{t-1}], [0, diag(gate_f)]]   (h_{t-1} enters only through gh)
    with ∂m_t/∂c_{t-1} = diag(gate_o tc' gate_f). Without a projection h_t = m_t; with one, the
    rows of h_t are W_hr times those of m_t (dense).
    """
    H, H_out, W_hr = w.H, w.H_out, w.W_hr
    gates, c_prev, tanh_c = cache
    gate_i, gate_f, gate_g, gate_o = (gates[:, j * H : (j + 1) * H] for j in range(4))
    B, dt = gates.shape[0], gates.dtype
    S = H_out + H
    eye = np.eye(H, dtype=dt)
    dm_dc = gate_o * (1 - tanh_c * tanh_c)  # ∂m_t/∂c_t
    dc_da = (  # ∂c_t/∂a for the blocks i, f, g
        gate_g * _sigmoid.prime(gate_i),
        c_prev * _sigmoid.prime(gate_f),
        gate_i * (1 - gate_g * gate_g),
    )
    J = np.zeros((B, S, 4 * H), dtype=dt)
    Jm = J[:, :H] if W_hr is None else np.zeros((B, H, 4 * H), dtype=dt)  # ∂m_t/∂a
    for j, d in enumerate(dc_da):
        J[:, H_out:, j * H : (j + 1) * H] = d[:, :, None] * eye  # ∂c_t/∂a_j
        Jm[:, :, j * H : (j + 1) * H] = (dm_dc * d)[:, :, None] * eye  # ∂m_t/∂a_j = ∂m_t/∂c_t ∂c_t/∂a_j
    Jm[:, :, 3 * H :] = (tanh_c * _sigmoid.prime(gate_o))[:, :, None] * eye  # ∂m_t/∂a_o
    if W_hr is not None:
        J[:, :H_out] = W_hr @ Jm  # ∂h_t/∂a = W_hr ∂m_t/∂a
    Js = np.zeros((B, S, S), dtype=dt)
    dm_dc_prev = dm_dc * gate_f  # ∂m_t/∂c_{t-1} (diagonal)
    if W_hr is None:
        Js[:, :H, H:] = dm_dc_prev[:, :, None] * eye  # ∂h_t/∂c_{t-1}
    else:
        Js[:, :H_out, H_out:] = W_hr * dm_dc_prev[:, None, :]  # ∂h_t/∂c_{t-1} = W_hr diag(∂m_t/∂c_{t-1})
    Js[:, H_out:, H_out:] = gate_f[:, :, None] * eye  # ∂c_t/∂c_{t-1}
    return J, J, Js


def output_input(cache: LSTMCache) -> np.ndarray:
    """m_t = gate_o ⊙ tanh(c_t), (B, H): what the projection W_hr multiplies (h_t = W_hr m_t)."""
    H = cache.tanh_c.shape[1]
    return cache.gates[:, 3 * H :] * cache.tanh_c  # m_t = gate_o ⊙ tanh(c_t)


LSTM = Cell(
    name="lstm",
    gates=4,
    parts=2,
    forward=forward,
    backward=backward,
    partials=partials,
    cache_width=6,
    output_input=output_input,
)
