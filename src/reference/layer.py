"""Plain, unrolled PyTorch-autograd oracle for the backward pass of a recurrent layer alone.

No output layer, no labels: given upstream gradients dhs_t for every output h_t and d_final for
the final state z_{T-1}, the objective is

    L = sum_t <dhs_t, h_t> + <d_final, z_{T-1}>

with h_t = s_t and z = s for the Elman cell (s_t = f(U x_t + W s_{t-1} + b)), z = h for the GRU
and z = (h, cell) for the LSTM (the step functions of reference.gated, PyTorch's layer-0 layout).
Autograd differentiates L with respect to U, W, the biases, dense xs and s0.

truncate=tau: for each t, <dhs_t, h_t> differentiated through the steps max(0, t - tau) .. t
only (the state entering them a constant unless the window reaches s0); d_final is part of the
upstream of step T - 1, so it belongs to the window of t = T - 1 (reference.truncation, which
stacks the windows of different t along the batch axis). Every step is one iteration of an
explicit Python loop; nn.RNN / nn.GRU / nn.LSTM are never called.

    import reference as ref
    r = ref.layer_backward("rnn" | "gru" | "lstm", p, xs, dhs, s0=None, d_final=None,
                           truncate=None, activation="tanh")
    r.grads (dict: "U", "W", "b" or "b_ih", "b_hh"), r.dxs, r.ds0, r.hs, r.final_state
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import truncation
from .autograd import ACTIVATIONS, initial_state, prepare_xs, rnn_step, to_tensor
from .gated import STEPS, LSTMState, check_gated_params, initial_leaves


@dataclass(frozen=True)
class LayerRef:
    """The oracle's vector-Jacobian product of a layer.

    grads:       dict name -> dL/dθ as numpy, the parameter's shape: "U", "W" and "b" (Elman)
                 or "b_ih", "b_hh" (gated); a bias the parameters lack is absent.
    dxs:         dL/dxs for dense xs ((T, D) or (B, T, D)); None for token ids.
    ds0:         dL/ds0 in the shape s0 was given ((H,) or (B, H) when None);
                 LSTMState(dh0, dcell0) for the LSTM.
    hs:          the outputs h_t, (T, H) or (B, T, H).
    final_state: (H,) or (B, H); LSTMState(h_{T-1}, cell_{T-1}) for the LSTM.
    """

    grads: dict[str, np.ndarray]
    dxs: np.ndarray | None
    ds0: Any
    hs: np.ndarray
    final_state: Any


def _numpy(x: Tensor | None) -> np.ndarray | None:
    return None if x is None else x.detach().numpy()


def layer_backward(
    cell: str,
    p: Any,
    xs: np.ndarray,
    dhs: np.ndarray,
    *,
    s0: Any = None,
    d_final: Any = None,
    truncate: int | None = None,
    activation: str = "tanh",
    dtype: torch.dtype = torch.float64,
) -> LayerRef:
    """dL/dθ of L = sum_t <dhs_t, h_t> + <d_final, z_{T-1}> by autograd through an unrolled loop.

    cell: "rnn" (p with U (H, D), W (H, H), b (H,) or None), "gru" or "lstm" (p with
          U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None). V and c are not used.
    xs:   token ids (T,) / (B, T) (integer dtype) or dense inputs (T, D) / (B, T, D).
    dhs:  (T, H) or (B, T, H), the upstream gradient of every output h_t.
    s0:   None, (H,) or (B, H); for the LSTM None or a pair (h0, cell0).
    d_final: None, (H,) / (B, H); for the LSTM a pair (dh, dcell) of such arrays.
    truncate: None or tau >= 0 (see the module docstring).
    activation: the Elman cell's f (unused by the gated cells).
    """
    if cell not in ("rnn", "gru", "lstm"):
        raise ValueError(f"cell must be 'rnn', 'gru' or 'lstm', got {cell!r}")
    tokens, batched, xs_leaf, xs_b = prepare_xs(xs, dtype, requires_grad=True)
    B, T = xs_b.shape[0], xs_b.shape[1]
    U, W = to_tensor(p.U, dtype, True), to_tensor(p.W, dtype, True)
    H = W.shape[1]
    bias_names = ("b",) if cell == "rnn" else ("b_ih", "b_hh")
    biases = {name: to_tensor(getattr(p, name), dtype, True) for name in bias_names}
    if cell == "rnn":
        f = ACTIVATIONS[activation]
        s0_leaves = (initial_state(s0, H, B, batched, dtype, requires_grad=True),)

        def step(x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return (rnn_step(U, W, biases["b"], x_t, state[0], f, tokens),)  # s_t = f(U x_t + W s_{t-1} + b)
    else:
        check_gated_params(cell, p)
        s0_leaves = initial_leaves(cell, s0, H, B, batched, dtype, requires_grad=True)
        cell_step = STEPS[cell]

        def step(x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return cell_step(U, W, biases["b_ih"], biases["b_hh"], x_t, state, tokens)

    dh = torch.tensor(np.asarray(dhs), dtype=dtype)
    dh_b = dh if batched else dh.unsqueeze(0)  # (B, T, H)
    if d_final is None:
        d_fin = None
    else:
        parts = tuple(d_final) if cell == "lstm" else (d_final,)
        d_fin = tuple(torch.tensor(np.asarray(a), dtype=dtype).expand(B, H) for a in parts)

    def start_state() -> tuple[Tensor, ...]:
        return tuple(leaf.expand(B, H) for leaf in s0_leaves)

    def final_term(state: tuple[Tensor, ...]) -> Tensor:
        """<d_final, z_{T-1}> over every part of the state."""
        return sum((d * part).sum() for d, part in zip(d_fin, state, strict=True))

    with torch.no_grad():  # the states, without a graph
        states = []
        state = start_state()
        for t in range(T):
            state = step(xs_b[:, t], state)
            states.append(state)
    if truncate is None or truncation.keeps_every_term(truncate, T):
        # Full BPTT (a window tau >= T - 1 keeps every term): one unrolled forward, one backward.
        state = start_state()
        L = torch.zeros((), dtype=dtype)
        for t in range(T):
            state = step(xs_b[:, t], state)  # the state at t
            L = L + (dh_b[:, t] * state[0]).sum()  # <dhs_t, h_t>
        if d_fin is not None:
            L = L + final_term(state)  # <d_final, z_{T-1}>
        L.backward()
    else:
        # Truncated, tau < T - 1 (reference.truncation): each <dhs_t, h_t> differentiated through the
        # steps max(0, t - tau) .. t only; <d_final, z_{T-1}> belongs to t = T - 1.
        def L_t(state: tuple[Tensor, ...], targets_t: tuple[Tensor]) -> Tensor:
            return (targets_t[0] * state[0]).sum()  # <dhs_t, h_t>

        truncation.truncated_windows(
            step, start_state, states, xs_b, (dh_b,), truncate, L_t, None if d_fin is None else final_term
        )

    def grad_of(leaf: Tensor) -> np.ndarray:
        return np.zeros(tuple(leaf.shape)) if leaf.grad is None else _numpy(leaf.grad)

    grads = {"U": grad_of(U), "W": grad_of(W)}
    grads.update({name: grad_of(b) for name, b in biases.items() if b is not None})
    hs = torch.stack([s[0] for s in states], dim=1)  # (B, T, H)
    final = tuple(_numpy(part if batched else part[0]) for part in states[-1])
    ds0 = tuple(grad_of(leaf) for leaf in s0_leaves)
    return LayerRef(
        grads=grads,
        dxs=None if xs_leaf is None else grad_of(xs_leaf),
        ds0=LSTMState(*ds0) if cell == "lstm" else ds0[0],
        hs=_numpy(hs if batched else hs[0]),
        final_state=LSTMState(*final) if cell == "lstm" else final[0],
    )
