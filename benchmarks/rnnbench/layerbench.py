"""The recurrent layer alone: mb.backward against a torch layer's backward, and peak memory per cell.

layer_backward: for every cell (rnn, gru, lstm) at the given sizes, manual_bptt.backward(p, xs,
dhs) (forward and the vector-Jacobian product of the layer, from numpy arrays) against
torch.nn.RNN / nn.GRU / nn.LSTM run forward and then torch.autograd.grad of its outputs with the
same upstream gradients dhs (grad_outputs), for the same outputs: every weight and bias, the
inputs and the initial state. Round-robin as the groups are; medians of the per-round ratios.

cell_memory: peak traced memory of one bptt call against T for every cell, with what the
backward must keep per step: the states (h_t; the LSTM's c_t), the gates the backward reads
(GRU r, z, n and gh_n; LSTM i, f, g, o and tanh(c_t)) and the returned dE/dx_t.
"""

from __future__ import annotations

import numpy as np
import torch

import manual_bptt as mb

from .config import Config, Size
from .gated import gated_inputs, ours_params
from .harness import Contender, median, round_robin
from .scaling import fit_exponent, traced_peak

_TORCH = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Numbers per (t, b) row, in units of H, that the backward of each cell must keep.
KEPT_H = {"rnn": 1, "gru": 5, "lstm": 7}


def layer_problem(cell: str, s: Size, dtype: str, seed: int = 0):
    """(p, xs (B, T, D), dhs (B, T, H), torch weights in layer-0 order) for one cell."""
    if cell == "rnn":
        p = mb.RNNParams.init(s.D, s.H, s.K, seed=seed, dtype=dtype)
        weights = [p.U, p.W, p.b, np.zeros_like(p.b)]
    else:
        w, _, _ = gated_inputs(cell, s, dtype, seed)
        p = ours_params(cell, w)
        weights = [w.U, w.W, w.b_ih, w.b_hh]
    rng = np.random.default_rng(seed + 1)
    xs = rng.standard_normal((s.B, s.T, s.D)).astype(dtype)
    dhs = rng.standard_normal((s.B, s.T, s.H)).astype(dtype)
    return p, xs, dhs, weights


def torch_layer_backward(cell: str, weights, xs: np.ndarray, dhs: np.ndarray):
    """A function of no argument: the torch layer forward, then autograd.grad with grad_outputs=dhs."""
    tdtype = _TORCH_DTYPES[str(xs.dtype)]
    B, _, D = xs.shape
    H = weights[1].shape[1]
    rnn = _TORCH[cell](D, H, batch_first=True, dtype=tdtype)
    with torch.no_grad():
        layer0 = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        for dst, src in zip(layer0, weights, strict=True):
            dst.copy_(torch.tensor(src))
    x = torch.tensor(xs, requires_grad=True)
    up = torch.tensor(dhs)
    n_states = 2 if cell == "lstm" else 1  # h0 (and c0), (1, B, H)
    states = [torch.zeros((1, B, H), dtype=tdtype, requires_grad=True) for _ in range(n_states)]
    leaves = [*rnn.parameters(), *states, x]

    def call():
        out, _ = rnn(x, tuple(states) if cell == "lstm" else states[0])
        return torch.autograd.grad(out, leaves, grad_outputs=up)

    return call


def layer_backward(sizes: list[Size], cells: list[str], dtype: str, rounds: int, slot_s: float) -> list[dict]:
    """mb.backward against the torch layer's backward, one row per (cell, size)."""
    rows = []
    for s in sizes:
        for cell in cells:
            p, xs, dhs, weights = layer_problem(cell, s, dtype)
            torch_call = torch_layer_backward(cell, weights, xs, dhs)
            ours = Contender("manual_bptt.backward", lambda p=p, xs=xs, dhs=dhs: mb.backward(p, xs, dhs), 0.0)
            theirs = Contender(f"{_TORCH[cell].__name__} backward", torch_call, 0.0)
            samples, _ = round_robin([ours, theirs], rounds, slot_s)
            a, b = samples[ours.name], samples[theirs.name]
            per_round = [a[r] / b[r] for r in a if r in b]
            rows.append(
                {
                    "cell": cell,
                    "size": s.name,
                    "dtype": dtype,
                    "torch": theirs.name,
                    "ours_ms": 1e3 * median(a),
                    "torch_ms": 1e3 * median(b),
                    "ratio": float(np.median(per_round)),
                }
            )
    return rows


#: The size limit of the memory runs: the LSTM's step caches at T = 8192 (B = 8, H = 128) are one
#: array of 1.4 GB, over bptt's default limit of 1 GiB (this machine has 24 GiB).
MEMORY_MAX_BYTES = 8 << 30


def cell_memory(cfg: Config, cells: list[str]) -> dict:
    """Peak traced memory of one bptt call against T for every cell (dense inputs)."""
    B, D, H, K = cfg.memory_dims
    rng = np.random.default_rng(0)
    s = Size("memory", B=B, T=1, D=D, H=H, K=K, tokens=False, rounds=1, gemm_every=1)
    out = {}
    for cell in cells:
        if cell == "rnn":
            p = mb.RNNParams.init(D, H, K, seed=0)
        else:
            p = ours_params(cell, gated_inputs(cell, s, "float64")[0])
        peaks = []
        for T in cfg.memory_T:
            xs, ys = rng.standard_normal((B, T, D)), rng.integers(0, K, size=(B, T))
            call = lambda p=p, xs=xs, ys=ys: mb.bptt(p, xs, ys, max_bytes=MEMORY_MAX_BYTES)  # noqa: E731
            peaks.append(traced_peak(call))
        Ts = list(cfg.memory_T)
        n_fit = min(4, len(Ts))
        per_step, offset = np.polyfit(Ts[-n_fit:], peaks[-n_fit:], 1)
        out[cell] = {
            "T": Ts,
            "peak_bytes": peaks,
            "exponent": fit_exponent(Ts[-n_fit:], peaks[-n_fit:]),
            "bytes_per_step": float(per_step),
            "offset_bytes": float(offset),
            "kept_bytes_per_step": (KEPT_H[cell] * H + D) * B * 8,
        }
    return out
