"""The cell interface: what a recurrent cell gives the drivers. numpy only.

Every cell here has torch's layer-0 layout: the input and the previous output enter through
two stacked products of G gate blocks of H rows each,

    gi_t = U x_t + b_ih          (B, G*H)   the input term: U = weight_ih (G*H, D), b_ih (G*H,)
    gh_t = W h_{t-1} + b_hh      (B, G*H)   the recurrent term: W = weight_hh (G*H, H), b_hh (G*H,)
    s_t  = cell(gi_t, gh_t, s_{t-1})        the state, (B, S); its first H columns are h_t

and the state s_t is one flat vector of S = P*H numbers: P = 1 part (the Elman cell's s_t, the
GRU's h_t) or P = 2 parts ([h_t; c_t] for the LSTM). The output layer reads h_t = s_t[:, :H].
(The GRU's update gate is z_t, as torch names it; no other z appears here.)

The LSTM may project its output (torch's proj_size): with W_hr (H_out, H) in the step weights,
h_t = W_hr m_t, m_t = gate_o ⊙ tanh(c_t), so h_t has H_out < H numbers. The contract then reads
with H_out for the h part: s_t = [h_t (H_out); c_t (H)], S = H_out + (P-1)*H, h_{t-1} =
s_{t-1}[:, :H_out], and W = weight_hh is (G*H, H_out). Without W_hr, H_out = H and nothing changes
(the Elman cell and the GRU never have one).

Because the parameters enter only through gi_t and gh_t, a cell needs to say just three things,
and the drivers (full and truncated BPTT, the explicit sum over k, state Jacobians, RTRL) are
written once over them:

    forward(w, gi_t, s_prev)   -> (s_t, cache)          one step; cache: what backward needs
    backward(w, ds_t, cache)   -> (ds_prev, dgi_t, dgh_t)
                                  the vector-Jacobian product through one step: given dE/ds_t
                                  (B, S), return dE/ds_{t-1} (B, S) and dE/dgi_t, dE/dgh_t (B, G*H)
    partials(w, cache)         -> (Ji, Jh, Js)          the step's Jacobians, for the decomposition
                                  and RTRL: Ji = ∂s_t/∂gi_t, Jh = ∂s_t/∂gh_t (B, S, G*H) and
                                  Js = ∂s_t/∂s_{t-1} (B, S, S) with gi_t and gh_t held fixed
    output_input(cache)        -> m_t (B, H)            optional (None for cells without an output
                                  product): what W_hr multiplies, for dE/dW_hr = sum_t dE/dh_t^T m_t

From these, with h_{t-1} = s_{t-1}[:, :H_out] and E the loss:

    dE/dU = sum_t dgi_t^T x_t      dE/db_ih = sum_t dgi_t      dE/dx_t = dgi_t U
    dE/dW = sum_t dgh_t^T h_{t-1}  dE/db_hh = sum_t dgh_t
    ds_t/ds_{t-1} = Js + Jh W [I_H_out 0]            (the full step Jacobian, (B, S, S))
    dE/dW_hr = sum_t dE/dh_t^T m_t                   (the projection's, dE/dh_t the total at h_t)
    ∂s_k/∂W[m, n] = Jh[:, :, m] h_{k-1}[n]           (immediate: s_{k-1} held fixed)

The Elman cell has a single bias b; it is its b_ih (and it has no b_hh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import Activation


@dataclass(frozen=True, eq=False)
class StepWeights:
    """The recurrent weights one step uses, in the compute dtype.

    Attributes:
        W: (G*H, H_out) recurrent weights (weight_hh).  WT: W.T, C-contiguous, (H_out, G*H).
        b_hh: (G*H,) recurrent bias, or None.
        H: hidden size.  act: the Elman cell's activation (None for gated cells).
        W_hr: (H_out, H) the LSTM's projection (weight_hr), or None (H_out = H).
        W_hrT: W_hr.T, C-contiguous, (H, H_out), or None.
    """

    W: np.ndarray
    WT: np.ndarray
    b_hh: np.ndarray | None
    H: int
    act: Activation | None = None
    W_hr: np.ndarray | None = None
    W_hrT: np.ndarray | None = None

    @property
    def H_out(self) -> int:
        """The size of h_t: W_hr's rows with a projection, else H."""
        return self.H if self.W_hr is None else int(self.W_hr.shape[0])


@dataclass(frozen=True)
class Cell:
    """A recurrent cell for the drivers (see the module docstring for the contract).

    Attributes:
        name: "rnn", "gru" or "lstm".
        gates: G, the number of stacked gate blocks of H rows in U, W, b_ih, b_hh.
        parts: P, the number of H-sized parts of the state (1, or 2 for the LSTM's (h, c)).
        forward: (w, gi_t (B, G*H), s_prev (B, S)) -> (s_t (B, S), cache).
        backward: (w, ds_t (B, S), cache) -> (ds_prev (B, S), dgi_t (B, G*H), dgh_t (B, G*H)).
        partials: (w, cache) -> (Ji (B, S, G*H), Jh (B, S, G*H), Js (B, S, S)).
        cache_width: the numbers one row of a step's cache holds, in units of H (the Elman
            cell 1, the GRU 5, the LSTM 6): for the size checks, which refuse a call from the
            shapes before it allocates anything (tests/core/test_library_edges.py checks it).
        output_input: (cache) -> m_t (B, H), what the projection W_hr multiplies (the LSTM's);
            None for a cell without an output product.
    """

    name: str
    gates: int
    parts: int
    forward: Callable[[StepWeights, np.ndarray, np.ndarray], tuple[np.ndarray, Any]]
    backward: Callable[[StepWeights, np.ndarray, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]
    partials: Callable[[StepWeights, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]
    cache_width: int
    output_input: Callable[[Any], np.ndarray] | None = None


def recurrent_term(w: StepWeights, h_prev: np.ndarray) -> np.ndarray:
    """gh_t = W h_{t-1} + b_hh, (B, G*H), one stacked product for every gate."""
    gh = h_prev @ w.WT
    if w.b_hh is not None:
        gh += w.b_hh
    return gh
