"""Adapters both ways between our gated-cell parameters and the native `nn.GRU` / `nn.LSTM` + `nn.Linear`.

The layout is PyTorch's, unchanged: U = weight_ih_l0 (G*H, D), W = weight_hh_l0 (G*H, H),
b_ih = bias_ih_l0 (G*H,), b_hh = bias_hh_l0 (G*H,), V = linear.weight (K, H), c = linear.bias (K,).
Only single-layer, unidirectional, batch_first=True modules without projections are supported.
`torch_gru_bptt` / `torch_lstm_bptt` run the native module, the linear layer and F.cross_entropy:
the comparison that the hand-written oracle in `reference.gated` is checked against.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import torch_rnn
from .gated import (
    GATES,
    GatedGrads,
    GatedParamsLike,
    GatedResult,
    LSTMState,
    check_gated_params,
    split_lstm_state,
)

_MODULES: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


def _make(cell: str, D: int, H: int, K: int, bias: bool, seed: int, dtype: torch.dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _MODULES[cell](D, H, num_layers=1, bias=bias, batch_first=True, dtype=dtype)
        linear = nn.Linear(H, K, bias=bias, dtype=dtype)
    return module, linear


def make_torch_gru(
    D: int, H: int, K: int, *, bias: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[nn.GRU, nn.Linear]:
    """A seeded single-layer batch_first nn.GRU (D -> H) and output nn.Linear (H -> K).

    bias: whether both modules have biases. The global torch RNG is left untouched (forked).
    """
    return _make("gru", D, H, K, bias, seed, dtype)


def make_torch_lstm(
    D: int, H: int, K: int, *, bias: bool = True, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[nn.LSTM, nn.Linear]:
    """A seeded single-layer batch_first nn.LSTM (D -> H) and output nn.Linear (H -> K).

    bias: whether both modules have biases. The global torch RNG is left untouched (forked).
    """
    return _make("lstm", D, H, K, bias, seed, dtype)


def cell_of(module: nn.Module) -> str:
    """"gru" for an nn.GRU, "lstm" for an nn.LSTM; ValueError for anything else or an unsupported
    configuration (more than one layer, bidirectional, batch_first=False, LSTM projections)."""
    if isinstance(module, nn.GRU):
        cell = "gru"
    elif isinstance(module, nn.LSTM):
        cell = "lstm"
    else:
        raise ValueError(f"module must be an nn.GRU or nn.LSTM, got {type(module).__name__}")
    if module.num_layers != 1 or module.bidirectional or not module.batch_first:
        raise ValueError("module must have num_layers=1, bidirectional=False and batch_first=True")
    if cell == "lstm" and module.proj_size:
        raise ValueError("module: an nn.LSTM with proj_size > 0 is not supported")
    return cell


def params_from_torch(module: nn.Module, linear: nn.Linear) -> SimpleNamespace:
    """Float64 numpy copies of the modules' parameters.

    nn.GRU / nn.LSTM: U (G*H, D), W (G*H, H), b_ih (G*H,) or None, b_hh (G*H,) or None, V (K, H),
    c (K,) or None, in PyTorch's layout unchanged.
    nn.RNN: the Elman layout of `reference.torch_rnn.params_from_torch` (U, W, V, b = b_ih + b_hh, c).
    """
    if isinstance(module, nn.RNN):
        return torch_rnn.params_from_torch(module, linear)
    cell_of(module)

    def np_(x: torch.Tensor) -> np.ndarray:
        return x.detach().to(torch.float64).numpy().copy()

    return SimpleNamespace(
        U=np_(module.weight_ih_l0),  # (G*H, D)
        W=np_(module.weight_hh_l0),  # (G*H, H)
        b_ih=np_(module.bias_ih_l0) if module.bias else None,  # (G*H,)
        b_hh=np_(module.bias_hh_l0) if module.bias else None,  # (G*H,)
        V=np_(linear.weight),  # (K, H)
        c=None if linear.bias is None else np_(linear.bias),  # (K,)
    )


def to_torch(
    p: GatedParamsLike, cell: str | None = None, *, dtype: torch.dtype = torch.float64
) -> tuple[nn.RNNBase, nn.Linear]:
    """An nn.GRU / nn.LSTM (batch_first=True, one layer) and nn.Linear holding copies of p's arrays.

    p:    U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or both None, V (K, H), c (K,) or None.
    cell: "gru" or "lstm"; None infers it from G = p.W.shape[0] / p.W.shape[1] (3 or 4).
    The module has biases iff p.b_ih is not None; the linear layer iff p.c is not None.
    """
    if cell is None:
        W = np.asarray(p.W)
        G = W.shape[0] // W.shape[1] if W.ndim == 2 and W.shape[1] and W.shape[0] % W.shape[1] == 0 else 0
        cells = [name for name, g in GATES.items() if g == G]
        if not cells:
            raise ValueError(f"p.W {W.shape} is not (3H, H) or (4H, H): cannot tell the cell; pass cell=")
        cell = cells[0]
    D, H, K = check_gated_params(cell, p)
    has_b = p.b_ih is not None
    module = _MODULES[cell](D, H, num_layers=1, bias=has_b, batch_first=True, dtype=dtype)
    linear = nn.Linear(H, K, bias=p.c is not None, dtype=dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.as_tensor(np.asarray(p.U), dtype=dtype))
        module.weight_hh_l0.copy_(torch.as_tensor(np.asarray(p.W), dtype=dtype))
        if has_b:
            module.bias_ih_l0.copy_(torch.as_tensor(np.asarray(p.b_ih), dtype=dtype))
            module.bias_hh_l0.copy_(torch.as_tensor(np.asarray(p.b_hh), dtype=dtype))
        linear.weight.copy_(torch.as_tensor(np.asarray(p.V), dtype=dtype))
        if p.c is not None:
            linear.bias.copy_(torch.as_tensor(np.asarray(p.c), dtype=dtype))
    return module, linear


def torch_gated_bptt(
    module: nn.GRU | nn.LSTM,
    linear: nn.Linear,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: Any = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
) -> GatedResult:
    """Loss and gradients from the native nn.GRU / nn.LSTM, nn.Linear and F.cross_entropy.

    xs: token ids (T,) / (B, T) (one-hot encoded to D = module.input_size) or dense (T, D) / (B, T, D).
    ys: int labels (T,) / (B, T). mask: bool, shape of ys, or None.
    s0: GRU None, (H,) or (B, H); LSTM None or (h0, c0), each (H,) or (B, H).
    Returns GatedResult, shaped as `reference.gated.gated_bptt` returns it (no truncation here).
    The modules' .grad fields are not touched.
    """
    cell = cell_of(module)
    dtype = module.weight_ih_l0.dtype
    D, H = module.input_size, module.hidden_size
    x, xs_leaf, ys_t, batched, B = torch_rnn.native_inputs(xs, ys, D, dtype)

    # Initial state, each part shaped as given; the module wants (1, B, H) batched or (1, H) unbatched.
    parts = (s0,) if cell == "gru" else split_lstm_state(s0)
    s0_leaves = []
    for part in parts:
        if part is None:
            s0_leaves.append(torch.zeros((B, H) if batched else (H,), dtype=dtype, requires_grad=True))
        else:
            s0_leaves.append(torch.tensor(np.asarray(part), dtype=dtype, requires_grad=True))
    hx = tuple(leaf.expand(B, H)[None] if batched else leaf[None] for leaf in s0_leaves)

    out, h_n = module(x, hx[0] if cell == "gru" else hx)  # out: h_t for all t, (B, T, H) or (T, H)
    logits = linear(out)  # o_t, (B, T, K) or (T, K)
    K = logits.shape[-1]
    E_all = F.cross_entropy(logits.reshape(-1, K), ys_t.reshape(-1), reduction="none")
    E_all = E_all.reshape(ys_t.shape)  # E_t per sequence and time, (B, T) or (T,)
    if mask is None:
        m = torch.ones(ys_t.shape, dtype=torch.bool)
    else:
        m = torch.tensor(np.asarray(mask), dtype=torch.bool)
    E = torch.where(m, E_all, 0.0).sum()  # masked targets contribute nothing
    if reduction == "mean":
        E = E / m.sum()
    elif reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")

    # Leaves to differentiate, by name in our notation.
    leaves = {"U": module.weight_ih_l0, "W": module.weight_hh_l0, "V": linear.weight}
    if module.bias:
        leaves["b_ih"] = module.bias_ih_l0
        leaves["b_hh"] = module.bias_hh_l0
    if linear.bias is not None:
        leaves["c"] = linear.bias
    if xs_leaf is not None:
        leaves["xs"] = xs_leaf
    for i, leaf in enumerate(s0_leaves):
        leaves[f"s0_{i}"] = leaf
    dE = torch.autograd.grad(E, list(leaves.values()))
    g = {name: d.numpy() for name, d in zip(leaves, dE, strict=True)}  # name -> dE/d(leaf)

    grads = GatedGrads(U=g["U"], W=g["W"], b_ih=g.get("b_ih"), b_hh=g.get("b_hh"), V=g["V"], c=g.get("c"))
    finals = (h_n,) if cell == "gru" else h_n  # each (1, B, H) or (1, H)
    final_np = tuple(part[0].detach().numpy() for part in finals)
    if cell == "gru":
        ds0, final_state = g["s0_0"], final_np[0]
    else:
        ds0, final_state = LSTMState(g["s0_0"], g["s0_1"]), LSTMState(*final_np)
    return GatedResult(loss=E.item(), grads=grads, ds0=ds0, dxs=g.get("xs"), final_state=final_state)


def torch_gru_bptt(
    module: nn.GRU, linear: nn.Linear, xs: np.ndarray, ys: np.ndarray, **kwargs: Any
) -> GatedResult:
    """torch_gated_bptt for an nn.GRU: s0 None, (H,) or (B, H); ds0 and final_state are arrays."""
    if not isinstance(module, nn.GRU):
        raise ValueError(f"module must be an nn.GRU, got {type(module).__name__}")
    return torch_gated_bptt(module, linear, xs, ys, **kwargs)


def torch_lstm_bptt(
    module: nn.LSTM, linear: nn.Linear, xs: np.ndarray, ys: np.ndarray, **kwargs: Any
) -> GatedResult:
    """torch_gated_bptt for an nn.LSTM: s0 None or (h0, c0); ds0, final_state are LSTMState pairs."""
    if not isinstance(module, nn.LSTM):
        raise ValueError(f"module must be an nn.LSTM, got {type(module).__name__}")
    return torch_gated_bptt(module, linear, xs, ys, **kwargs)
