"""Adapters both ways between reference.stack's parameter dicts and the native nn.RNN / nn.GRU / nn.LSTM.

Any num_layers, bidirectional, proj_size, bias, nonlinearity and batch_first. The parameters are
a plain dict from torch's names (weight_ih_l{l}[_reverse], weight_hh_l{l}..., bias_ih_l{l}...,
bias_hh_l{l}..., weight_hr_l{l}...) to float64 numpy arrays, the module's state_dict unchanged:

    module = make_torch_stack(spec, params, batch_first=True, dtype=torch.float64)
    params = stack_params_from_torch(module)       # float64 copies of module.state_dict()
    spec = spec_of_module(module)                  # its StackSpec, read from its attributes
    r = torch_stack_backward(module, x, h0=..., c0=..., lengths=..., d_outputs=..., d_h_n=..., d_c_n=...)

torch_stack_backward runs the native module (variable lengths through
torch.nn.utils.rnn.pack_padded_sequence(..., enforce_sorted=False) and pad_packed_sequence) and
returns a reference.stack.StackResult, so that the oracle, the native module and other code are
compared in one format: the comparison reference.stack_backward is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .stack import StackResult, StackSpec, check_stack_inputs, check_stack_params

MODULES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def spec_of_module(module: nn.Module) -> StackSpec:
    """The StackSpec of an nn.RNN, nn.GRU or nn.LSTM, read from its attributes (input_size,
    hidden_size, num_layers, bidirectional, proj_size, bias, and nn.RNN's nonlinearity)."""
    cells = [cell for cell, cls in MODULES.items() if type(module) is cls]
    if not cells:
        raise ValueError(f"module: expected an nn.RNN, nn.GRU or nn.LSTM, got {type(module).__name__}")
    cell = cells[0]
    return StackSpec(
        cell=cell,
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=bool(module.bidirectional),
        proj_size=module.proj_size if cell == "lstm" else 0,
        bias=bool(module.bias),
        nonlinearity=module.nonlinearity if cell == "rnn" else "tanh",
    )


def stack_params_from_torch(module: nn.Module) -> dict[str, np.ndarray]:
    """float64 numpy copies of module.state_dict(), keyed and ordered by torch's names (exact:
    a float32 or float64 module converts without loss)."""
    spec = spec_of_module(module)
    params = {name: t.detach().to(torch.float64).numpy().copy() for name, t in module.state_dict().items()}
    check_stack_params(spec, params)
    return params


def make_torch_stack(
    spec: StackSpec,
    params: Mapping[str, Any] | None = None,
    *,
    batch_first: bool = True,
    dtype: torch.dtype = torch.float64,
    seed: int | None = None,
) -> nn.RNNBase:
    """The nn.RNN / nn.GRU / nn.LSTM of spec, holding copies of params (torch's names).

    params: None keeps torch's own initialisation (seeded by `seed` when given; the global torch
    RNG is left untouched). The module's arrays are params cast to `dtype` (exact for float64,
    and for float32 values read from a float32 module).
    """
    if not isinstance(spec, StackSpec):
        raise ValueError(f"spec: expected a reference.StackSpec, got {type(spec).__name__}")
    kwargs: dict[str, Any] = {
        "num_layers": spec.num_layers,
        "bias": spec.bias,
        "batch_first": batch_first,
        "bidirectional": spec.bidirectional,
        "dtype": dtype,
    }
    if spec.cell == "rnn":
        kwargs["nonlinearity"] = spec.nonlinearity
    if spec.cell == "lstm":
        kwargs["proj_size"] = spec.proj_size
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        module = MODULES[spec.cell](spec.input_size, spec.hidden_size, **kwargs)
    if params is not None:
        checked = check_stack_params(spec, params)
        state = {name: torch.as_tensor(a).to(dtype) for name, a in checked.items()}
        module.load_state_dict(state, strict=True)
    return module


def torch_stack_backward(
    module: nn.RNNBase,
    x: Any,
    *,
    h0: Any = None,
    c0: Any = None,
    lengths: Any = None,
    d_outputs: Any = None,
    d_h_n: Any = None,
    d_c_n: Any = None,
) -> StackResult:
    """reference.stack_backward's result, computed by the native module (in its dtype).

    The arguments and the result are those of reference.stack_backward, batch-first whatever the
    module's batch_first (the adapter transposes). With lengths, the module is fed
    pack_padded_sequence(x, lengths, enforce_sorted=False) and its output unpacked by
    pad_packed_sequence(..., total_length=T) (zeros past each length). The module's .grad fields
    are not touched.
    """
    spec = spec_of_module(module)
    inp = check_stack_inputs(
        spec, x, h0=h0, c0=c0, lengths=lengths, d_outputs=d_outputs, d_h_n=d_h_n, d_c_n=d_c_n
    )
    named = list(module.named_parameters())
    names = [name for name, _ in named]
    dtype = next(module.parameters()).dtype
    LD, B, T = spec.num_layers * spec.directions, inp.x.shape[0], inp.x.shape[1]
    lstm = spec.cell == "lstm"

    def leaf(arr: np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor:
        if arr is None:
            return torch.zeros(shape, dtype=dtype, requires_grad=True)
        return torch.tensor(arr, dtype=dtype, requires_grad=True)

    x_leaf = torch.tensor(inp.x, dtype=dtype, requires_grad=True)  # (B, T, D)
    h0_leaf = leaf(inp.h0, (LD, B, spec.out_size))
    c0_leaf = leaf(inp.c0, (LD, B, spec.hidden_size)) if lstm else None
    if inp.batched:
        x_in = x_leaf if module.batch_first else x_leaf.transpose(0, 1)
        hx = (h0_leaf, c0_leaf) if lstm else h0_leaf
    else:  # the module's unbatched form: x (T, D), states (L * dirs, .)
        x_in = x_leaf[0]
        hx = (h0_leaf[:, 0], c0_leaf[:, 0]) if lstm else h0_leaf[:, 0]
    if inp.packed:
        packed = pack_padded_sequence(
            x_in, torch.as_tensor(inp.lengths), batch_first=module.batch_first, enforce_sorted=False
        )
        y_packed, final = module(packed, hx)
        y, _ = pad_packed_sequence(y_packed, batch_first=module.batch_first, total_length=T)
    else:
        y, final = module(x_in, hx)
    if not inp.batched:
        y, final = y[None], tuple(part[:, None] for part in final) if lstm else final[:, None]
    elif not module.batch_first:
        y = y.transpose(0, 1)  # (B, T, dirs * H_out)
    h_n, c_n = final if lstm else (final, None)

    grads = dx = dh0 = dc0 = None
    if inp.wants_backward:
        objective = torch.zeros((), dtype=dtype)
        for upstream, value in ((inp.d_outputs, y), (inp.d_h_n, h_n), (inp.d_c_n, c_n)):
            if upstream is not None:
                objective = objective + (torch.tensor(upstream, dtype=dtype) * value).sum()  # <d, value>
        leaves = [param for _, param in named] + [x_leaf, h0_leaf]
        leaves += [c0_leaf] if lstm else []
        found = torch.autograd.grad(objective, leaves, allow_unused=True)
        arrays = [
            (torch.zeros_like(leaf) if g is None else g).detach().numpy()
            for leaf, g in zip(leaves, found, strict=True)
        ]
        grads = dict(zip(names, arrays[: len(names)], strict=True))
        dx, dh0 = arrays[len(names)], arrays[len(names) + 1]
        dc0 = arrays[len(names) + 2] if lstm else None

    def out(a: torch.Tensor | np.ndarray | None, batch_axis: int) -> np.ndarray | None:
        if a is None:
            return None
        a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
        return a if inp.batched else np.take(a, 0, axis=batch_axis)

    return StackResult(
        outputs=out(y, 0),
        h_n=out(h_n, 1),
        c_n=out(c_n, 1),
        grads=grads,
        dx=out(dx, 0),
        dh0=out(dh0, 1),
        dc0=out(dc0, 1),
    )
