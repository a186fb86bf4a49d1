"""Adapter: the same loss and gradients computed by the native `torch.nn.RNN` + `nn.Linear`.

nn.RNN computes s_t = f(W_ih x_t + b_ih + W_hh s_{t-1} + b_hh), so in our notation
U = weight_ih_l0, W = weight_hh_l0, b = bias_ih_l0 + bias_hh_l0, V = linear.weight,
c = linear.bias. Only a single-layer, batch_first=True RNN (tanh or relu) is supported.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .autograd import RefGrads, RefResult


def make_torch_rnn(
    D: int,
    H: int,
    K: int,
    *,
    nonlinearity: str,
    bias: bool,
    seed: int,
    dtype: torch.dtype = torch.float64,
) -> tuple[nn.RNN, nn.Linear]:
    """A seeded single-layer batch_first nn.RNN (D -> H) and output nn.Linear (H -> K).

    nonlinearity: "tanh" or "relu". bias: whether both modules have biases.
    The global torch RNG is left untouched (forked).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = nn.RNN(D, H, num_layers=1, nonlinearity=nonlinearity, bias=bias, batch_first=True, dtype=dtype)
        linear = nn.Linear(H, K, bias=bias, dtype=dtype)
    return rnn, linear


def params_from_torch(rnn: nn.RNN, linear: nn.Linear) -> SimpleNamespace:
    """Numpy copies U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None of the modules."""

    def np_(x: torch.Tensor) -> np.ndarray:
        return x.detach().numpy().copy()

    return SimpleNamespace(
        U=np_(rnn.weight_ih_l0),  # (H, D)
        W=np_(rnn.weight_hh_l0),  # (H, H)
        V=np_(linear.weight),  # (K, H)
        b=np_(rnn.bias_ih_l0 + rnn.bias_hh_l0) if rnn.bias else None,  # (H,)
        c=None if linear.bias is None else np_(linear.bias),  # (K,)
    )


def native_inputs(xs: np.ndarray, ys: np.ndarray, D: int, dtype: torch.dtype) -> tuple:
    """The inputs of a native torch module, batch-first as given: (x, the leaf of dense xs or None,
    the labels as int64, batched?, B). Token ids become one-hot rows of D (and have no leaf)."""
    xs = np.asarray(xs)
    tokens = bool(np.issubdtype(xs.dtype, np.integer))
    batched = xs.ndim == (2 if tokens else 3)
    if tokens:
        xs_leaf = None
        x = F.one_hot(torch.tensor(xs, dtype=torch.int64), D).to(dtype)  # (T, D) or (B, T, D)
    else:
        xs_leaf = torch.tensor(xs, dtype=dtype, requires_grad=True)  # (T, D) or (B, T, D)
        x = xs_leaf
    ys_t = torch.tensor(np.asarray(ys), dtype=torch.int64)  # (T,) or (B, T)
    B = ys_t.shape[0] if batched else 1
    return x, xs_leaf, ys_t, batched, B


def torch_rnn_bptt(
    rnn: nn.RNN,
    linear: nn.Linear,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    s0: np.ndarray | None = None,
    reduction: str = "sum",
    mask: np.ndarray | None = None,
) -> RefResult:
    """Loss and gradients from the native nn.RNN, nn.Linear and F.cross_entropy.

    xs: token ids (T,) / (B, T) (one-hot encoded to D = rnn.input_size) or dense (T, D) / (B, T, D).
    ys: int labels (T,) / (B, T). mask: bool, shape of ys, or None. s0: None, (H,) or (B, H).
    Returns RefResult: grads.U (H, D), W (H, H), V (K, H), b (H,) = d/d(bias_ih + bias_hh)
    (equal to bias_ih.grad and to bias_hh.grad), c (K,); ds0 shaped as in `reference.bptt`;
    dxs shaped like dense xs, None for tokens; final_state (H,) or (B, H).
    The modules' .grad fields are not touched.
    """
    if not rnn.batch_first or rnn.num_layers != 1:
        raise ValueError("need a single-layer nn.RNN with batch_first=True")
    dtype = rnn.weight_ih_l0.dtype
    D, H = rnn.input_size, rnn.hidden_size
    x, xs_leaf, ys_t, batched, B = native_inputs(xs, ys, D, dtype)

    # Initial state s0, shaped as given; nn.RNN wants (1, B, H) batched or (1, H) unbatched.
    if s0 is None:
        s0_leaf = torch.zeros((B, H) if batched else (H,), dtype=dtype, requires_grad=True)
    else:
        s0_leaf = torch.tensor(np.asarray(s0), dtype=dtype, requires_grad=True)
    h0 = s0_leaf.expand(B, H)[None] if batched else s0_leaf[None]

    out, h_n = rnn(x, h0)  # out: s_t for all t, (B, T, H) or (T, H); h_n: (1, B, H) or (1, H)
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
    leaves = {"U": rnn.weight_ih_l0, "W": rnn.weight_hh_l0, "V": linear.weight, "s0": s0_leaf}
    if rnn.bias:
        leaves["b"] = rnn.bias_ih_l0  # d/d(bias_ih + bias_hh) = bias_ih.grad = bias_hh.grad
    if linear.bias is not None:
        leaves["c"] = linear.bias
    if xs_leaf is not None:
        leaves["xs"] = xs_leaf
    dE = torch.autograd.grad(E, list(leaves.values()))
    g = {name: d.numpy() for name, d in zip(leaves, dE, strict=True)}  # name -> dE/d(leaf)

    grads = RefGrads(U=g["U"], W=g["W"], V=g["V"], b=g.get("b"), c=g.get("c"))
    return RefResult(
        loss=E.item(),
        grads=grads,
        ds0=g["s0"],
        dxs=g.get("xs"),
        final_state=h_n[0].detach().numpy(),
    )
