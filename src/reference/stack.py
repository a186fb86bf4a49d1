"""Plain, unrolled PyTorch-autograd oracle for every shape of torch's recurrent layers.

nn.RNN, nn.GRU and nn.LSTM with any num_layers L >= 1, one or two directions, the LSTM's
projection (proj_size), with or without biases, and variable sequence lengths, written from the
equations. B sequences, T steps, D inputs, H hidden units, H_out = proj_size or H (the size of
h_t), dirs = 2 if bidirectional else 1, sequence b of length n_b (1 <= n_b <= T; n_b = T when
lengths is None). Inputs are batch-first (B, T, D), or unbatched (T, D).

One step of each cell (direction d of layer l has its own parameters, named as torch names them,
weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l}, weight_hr_l{l}, with "_reverse"
appended for d = 1):

    Elman  h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        f = tanh or relu
    GRU    reference.gated.gru_step (gates r, z, n)
    LSTM   reference.gated.lstm_step (gates i, f, g, o); with a projection
           c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t      h_t = W_hr (o_t ⊙ tanh(c_t))    h_t (H_out,), c_t (H,)

The stack, for every layer l, every direction d and every sequence b:

    input of layer 0:  x_t                                        (D,)
    input of layer l:  [h_t of layer l-1 forward; h_t of layer l-1 reverse]   (dirs * H_out,)
    forward (d = 0):   t = 0, 1, ..., n_b - 1, starting from h0[l * dirs + 0, b] (and c0)
    reverse (d = 1):   t = n_b - 1, ..., 1, 0, starting from h0[l * dirs + 1, b] (and c0)
    outputs[b, t]   =  [h_t forward; h_t reverse] of layer L-1 for t < n_b, and 0 for t >= n_b
                       (the zeros torch.nn.utils.rnn.pad_packed_sequence fills in)
    h_n[l * dirs + d, b] = the last state that direction computed: at t = n_b - 1 going forward,
                       at t = 0 going in reverse (c_n likewise for the LSTM)

Steps t >= n_b are never computed, so they neither change a state nor receive gradient: each
sequence is run over its own valid steps (sliced, and walked backwards for the reverse
direction), one sequence at a time. With upstream gradients given, autograd differentiates

    L = sum_{b,t} <d_outputs[b, t], outputs[b, t]> + <d_h_n, h_n> + <d_c_n, c_n>

with respect to every parameter (by its torch name), x, h0 and c0. Every step is one iteration of
an explicit Python loop; nn.RNN / nn.GRU / nn.LSTM are never called here.

truncate=tau (one direction only) truncates every layer's own recurrence: the gradient arriving at
layer l's h_t (d_outputs for the top layer, the gradient of layer l+1's input at step t below it)
is carried back through layer l over the steps t - tau .. t only; between layers it passes at the
same step, untruncated (see truncated_backward).

    import reference as ref
    spec = ref.StackSpec("lstm", input_size=3, hidden_size=5, num_layers=2, bidirectional=True,
                         proj_size=2)
    r = ref.stack_backward(spec, params, x, h0=None, c0=None, lengths=None,
                           d_outputs=dy, d_h_n=dh, d_c_n=dc, truncate=None)
    r.outputs, r.h_n, r.c_n, r.grads["weight_hr_l1_reverse"], r.dx, r.dh0, r.dc0

`params` is a plain dict from torch's parameter names to float arrays (see StackSpec.param_shapes);
reference.torch_stack builds the native module from it and reads a module back into one.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import truncation
from .autograd import ACTIVATIONS, rnn_step
from .gated import gru_step, hidden_part, input_part, lstm_step

#: The cells and their number of stacked gate blocks G (weight_ih has G*H rows).
STACK_GATES: dict[str, int] = {"rnn": 1, "gru": 3, "lstm": 4}
#: The Elman cell's nonlinearities, as nn.RNN names them.
NONLINEARITIES = ("tanh", "relu")


def _positive_int(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    return int(value)


def param_name(kind: str, layer: int, direction: int) -> str:
    """torch's name of one parameter: kind "weight_ih", "weight_hh", "bias_ih", "bias_hh" or
    "weight_hr", layer l, direction 0 (forward) or 1 (reverse): e.g. "weight_hh_l1_reverse"."""
    return f"{kind}_l{layer}" + ("_reverse" if direction == 1 else "")


@dataclass(frozen=True)
class StackSpec:
    """The configuration of a recurrent layer, with the meaning of torch's constructor arguments.

    Attributes:
        cell: "rnn" (nn.RNN), "gru" (nn.GRU) or "lstm" (nn.LSTM).
        input_size: D.  hidden_size: H.  num_layers: L >= 1.
        bidirectional: two directions (outputs [forward, reverse]) or one.
        proj_size: the LSTM's projection P, 0 < P < H, or 0 for none (always 0 for the others).
        bias: whether every layer and direction has bias_ih and bias_hh.
        nonlinearity: the Elman cell's f, "tanh" or "relu"; "tanh" (unused) for the gated cells.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True
    nonlinearity: str = "tanh"

    def __post_init__(self) -> None:
        if self.cell not in STACK_GATES:
            raise ValueError(f"cell: expected one of {sorted(STACK_GATES)}, got {self.cell!r}")
        _positive_int("input_size", self.input_size, 1)
        _positive_int("hidden_size", self.hidden_size, 1)
        _positive_int("num_layers", self.num_layers, 1)
        _positive_int("proj_size", self.proj_size, 0)
        for name in ("bidirectional", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.proj_size and self.cell != "lstm":
            raise ValueError(
                f"proj_size: only the LSTM has a projection, got {self.proj_size} for {self.cell!r}"
            )
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size: expected 0 (no projection) or 0 < proj_size < hidden_size = {self.hidden_size}, "
                f"got {self.proj_size}"
            )
        if self.cell == "rnn" and self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise ValueError(
                f"nonlinearity: applies to the Elman cell ('rnn') only, got {self.nonlinearity!r}"
            )

    @property
    def directions(self) -> int:
        """dirs: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """H_out, the size of h_t: proj_size when there is a projection, else hidden_size."""
        return self.proj_size or self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        """The size of layer l's input: D for layer 0, dirs * H_out above it."""
        return self.input_size if layer == 0 else self.directions * self.out_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """torch's parameter names and shapes, in the order of the module's state_dict:

        weight_ih_l{l} (G*H, D_l), weight_hh_l{l} (G*H, H_out), bias_ih_l{l}, bias_hh_l{l} (G*H,),
        weight_hr_l{l} (H_out, H), each layer's forward direction before its "_reverse" one.
        """
        GH, H, H_out = STACK_GATES[self.cell] * self.hidden_size, self.hidden_size, self.out_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            for d in range(self.directions):
                shapes[param_name("weight_ih", layer, d)] = (GH, self.layer_input_size(layer))
                shapes[param_name("weight_hh", layer, d)] = (GH, H_out)
                if self.bias:
                    shapes[param_name("bias_ih", layer, d)] = (GH,)
                    shapes[param_name("bias_hh", layer, d)] = (GH,)
                if self.proj_size:
                    shapes[param_name("weight_hr", layer, d)] = (H_out, H)
        return shapes


def check_stack_params(spec: StackSpec, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """params checked against spec: exactly spec.param_shapes()'s names, each a real array of its
    shape. Returns float64 copies in torch's order; the caller's arrays are not kept.

    Raises ValueError naming the missing or unexpected names, or the parameter of the wrong shape.
    """
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params: expected a dict from torch's parameter names to arrays, got {type(params).__name__}"
        )
    shapes = spec.param_shapes()
    missing = [name for name in shapes if name not in params]
    unexpected = sorted(str(name) for name in params if name not in shapes)
    if missing or unexpected:
        raise ValueError(
            f"params: do not match {spec}: "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"unexpected {unexpected}" if unexpected else "",
                )
                if part
            )
        )
    out = {}
    for name, shape in shapes.items():
        arr = np.asarray(params[name])
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"params[{name!r}]: expected a real numeric array, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"params[{name!r}]: expected shape {shape}, got {arr.shape}")
        out[name] = np.array(arr, dtype=np.float64, copy=True)
    return out


def spec_from_params(cell: str, params: Mapping[str, Any], *, nonlinearity: str = "tanh") -> StackSpec:
    """The StackSpec that params (torch's names, any layer count) belong to, read from the names
    (num_layers, bidirectional, bias, projection) and the shapes of layer 0 (D, H, proj_size).

    Raises ValueError when the names are not those of one torch layer of `cell`.
    """
    if cell not in STACK_GATES:
        raise ValueError(f"cell: expected one of {sorted(STACK_GATES)}, got {cell!r}")
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if name not in params:
            raise ValueError(
                f"params: no {name!r}; the names must be torch's (weight_ih_l0, weight_hh_l0, ...)"
            )
    w_ih, w_hh = np.shape(params["weight_ih_l0"]), np.shape(params["weight_hh_l0"])
    if len(w_ih) != 2 or len(w_hh) != 2:
        raise ValueError(f"params: weight_ih_l0 {w_ih} and weight_hh_l0 {w_hh} must be matrices")
    G = STACK_GATES[cell]
    if "weight_hr_l0" in params:
        w_hr = np.shape(params["weight_hr_l0"])
        if len(w_hr) != 2:
            raise ValueError(f"params: weight_hr_l0 {w_hr} must be a matrix (proj_size, hidden_size)")
        proj_size, H = w_hr
    else:
        proj_size, H = 0, w_hh[0] // G
    num_layers = 0
    while f"weight_ih_l{num_layers}" in params:
        num_layers += 1
    spec = StackSpec(
        cell=cell,
        input_size=int(w_ih[1]),
        hidden_size=int(H),
        num_layers=num_layers,
        bidirectional="weight_ih_l0_reverse" in params,
        proj_size=int(proj_size),
        bias="bias_ih_l0" in params,
        nonlinearity=nonlinearity,
    )
    check_stack_params(spec, params)
    return spec


@dataclass(frozen=True, eq=False)
class StackResult:
    """What a recurrent layer computes, and the gradients of L (see the module docstring).

    Batched (x (B, T, D)); unbatched x (T, D) drops the B axis from every array:
        outputs: (B, T, dirs * H_out), [forward, reverse] of the top layer; 0 past each length.
        h_n:     (L * dirs, B, H_out), row l * dirs + d for layer l, direction d.
        c_n:     (L * dirs, B, H) for the LSTM, else None.
        grads:   dict torch name -> dL/dθ in the parameter's shape; None when no upstream gradient
                 was given (then dx, dh0 and dc0 are None too).
        dx:      dL/dx, (B, T, D) (zero at steps past a sequence's length).
        dh0:     dL/dh0, (L * dirs, B, H_out).   dc0: dL/dc0, (L * dirs, B, H) for the LSTM, else None.
    """

    outputs: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None
    grads: dict[str, np.ndarray] | None
    dx: np.ndarray | None
    dh0: np.ndarray | None
    dc0: np.ndarray | None


@dataclass(frozen=True, eq=False)
class StackInputs:
    """The inputs of one call, checked (numpy, batch axis always present; `batched` says whether
    the caller gave one). lengths (B,) int64, T everywhere when the caller gave None (`packed`
    says whether lengths were given). The upstream arrays are None when not given."""

    x: np.ndarray  # (B, T, D)
    h0: np.ndarray | None  # (L * dirs, B, H_out)
    c0: np.ndarray | None  # (L * dirs, B, H)
    lengths: np.ndarray  # (B,)
    packed: bool
    batched: bool
    d_outputs: np.ndarray | None  # (B, T, dirs * H_out)
    d_h_n: np.ndarray | None  # (L * dirs, B, H_out)
    d_c_n: np.ndarray | None  # (L * dirs, B, H)

    @property
    def wants_backward(self) -> bool:
        return any(a is not None for a in (self.d_outputs, self.d_h_n, self.d_c_n))


def _real(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr


def check_stack_inputs(
    spec: StackSpec,
    x: Any,
    *,
    h0: Any = None,
    c0: Any = None,
    lengths: Any = None,
    d_outputs: Any = None,
    d_h_n: Any = None,
    d_c_n: Any = None,
) -> StackInputs:
    """Check the inputs of one call against spec; ValueError naming the argument.

    x: (B, T, D) batched or (T, D) unbatched, dense floats, T >= 1, B >= 1.
    h0, d_h_n: (L * dirs, B, H_out) ((L * dirs, H_out) unbatched).  c0, d_c_n: (L * dirs, B, H),
    the LSTM's only.  lengths: None or (B,) integers 1 <= n_b <= T, in any order (batched only).
    d_outputs: (B, T, dirs * H_out) ((T, dirs * H_out) unbatched).
    """
    x = _real("x", x)
    if x.ndim not in (2, 3) or x.shape[-1] != spec.input_size or 0 in x.shape:
        raise ValueError(
            f"x: expected shape (B, T, D) or (T, D) with D = input_size = {spec.input_size} and B, T >= 1, "
            f"got {x.shape}"
        )
    batched = x.ndim == 3
    xb = x if batched else x[None]
    B, T = xb.shape[:2]
    LD, H, H_out = spec.num_layers * spec.directions, spec.hidden_size, spec.out_size
    lead = "L * dirs" + (", B" if batched else "")

    def state(name: str, value: Any, size: int, what: str) -> np.ndarray | None:
        if value is None:
            return None
        arr = _real(name, value)
        want = (LD, B, size) if batched else (LD, size)
        if arr.shape != want:
            raise ValueError(
                f"{name}: expected shape ({lead}, {what}) = {want} (L = {spec.num_layers} layers x "
                f"{spec.directions} direction{'s' if spec.directions > 1 else ''}), got {arr.shape}"
            )
        return arr if batched else arr[:, None]

    if spec.cell != "lstm":
        for name, value in (("c0", c0), ("d_c_n", d_c_n)):
            if value is not None:
                raise ValueError(f"{name}: only the LSTM has a cell state, got an array for {spec.cell!r}")
    if lengths is None:
        n = np.full(B, T, dtype=np.int64)
    else:
        if not batched:
            raise ValueError(
                "lengths: only for batched x (B, T, D); an unbatched x is one sequence of T steps"
            )
        n = np.asarray(lengths)
        if n.dtype.kind not in "iu":
            raise ValueError(f"lengths: expected integers, got dtype {n.dtype}")
        if n.shape != (B,):
            raise ValueError(f"lengths: expected shape (B,) = ({B},), one length per sequence, got {n.shape}")
        bad = np.flatnonzero((n < 1) | (n > T))
        if bad.size:
            raise ValueError(
                f"lengths: every length must be in 1..T = 1..{T}, got lengths[{bad[0]}] = {n[bad[0]]}"
            )
        n = n.astype(np.int64)
    d_out = None
    if d_outputs is not None:
        d_out = _real("d_outputs", d_outputs)
        want = (B, T, spec.directions * H_out) if batched else (T, spec.directions * H_out)
        if d_out.shape != want:
            raise ValueError(f"d_outputs: expected the outputs' shape {want}, got {d_out.shape}")
        d_out = d_out if batched else d_out[None]
    return StackInputs(
        x=xb,
        h0=state("h0", h0, H_out, "H_out"),
        c0=state("c0", c0, H, "H"),
        lengths=n,
        packed=lengths is not None,
        batched=batched,
        d_outputs=d_out,
        d_h_n=state("d_h_n", d_h_n, H_out, "H_out"),
        d_c_n=state("d_c_n", d_c_n, H, "H"),
    )


def lstm_projected_step(
    U: Tensor,
    W: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    W_hr: Tensor,
    x_t: Tensor,
    state: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor]:
    """One LSTM step with a projection. state = (h_{t-1} (B, H_out), cell_{t-1} (B, H)).

    U (4H, D), W (4H, H_out), b_ih, b_hh (4H,) or None, W_hr (H_out, H); x_t (B, D).
    Returns (h_t (B, H_out), cell_t (B, H)).
    """
    h_prev, cell_prev = state
    H = cell_prev.shape[1]
    gates = input_part(U, b_ih, x_t, False) + hidden_part(W, b_hh, h_prev)  # (B, 4H)
    a_i, a_f, a_g, a_o = gates.split(H, dim=1)  # blocks i, f, g, o, each (B, H)
    i_t = torch.sigmoid(a_i)  # input gate
    f_t = torch.sigmoid(a_f)  # forget gate
    g_t = torch.tanh(a_g)  # candidate
    out_gate_t = torch.sigmoid(a_o)  # output gate
    cell_t = f_t * cell_prev + i_t * g_t  # cell_t = f_t ⊙ cell_{t-1} + i_t ⊙ g_t
    h_t = (out_gate_t * torch.tanh(cell_t)) @ W_hr.T  # h_t = W_hr (out_gate_t ⊙ tanh(cell_t))
    return (h_t, cell_t)


def direction_step(
    spec: StackSpec, leaves: Mapping[str, Tensor], layer: int, direction: int
) -> Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, ...]]:
    """One step of layer l, direction d, over its own parameters: (x_t (1, D_l), state) -> state.
    The state is (h,) for the Elman cell and the GRU, (h, cell) for the LSTM."""

    def p(kind: str) -> Tensor | None:
        return leaves.get(param_name(kind, layer, direction))

    U, W, b_ih, b_hh = p("weight_ih"), p("weight_hh"), p("bias_ih"), p("bias_hh")
    if spec.cell == "rnn":
        f = ACTIVATIONS[spec.nonlinearity]

        def step(x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            # h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh): both biases enter one sum
            b = None if b_ih is None else b_ih + b_hh
            return (rnn_step(U, W, b, x_t, state[0], f, False),)

        return step
    if spec.cell == "gru":
        return lambda x_t, state: gru_step(U, W, b_ih, b_hh, x_t, state, False)
    if spec.proj_size:
        W_hr = p("weight_hr")
        return lambda x_t, state: lstm_projected_step(U, W, b_ih, b_hh, W_hr, x_t, state)
    return lambda x_t, state: lstm_step(U, W, b_ih, b_hh, x_t, state, False)


def _leaf(arr: np.ndarray | None, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A leaf tensor that requires grad: a copy of arr, or zeros of `shape` when arr is None."""
    if arr is None:
        return torch.zeros(shape, dtype=dtype, requires_grad=True)
    return torch.tensor(arr, dtype=dtype, requires_grad=True)


def stack_backward(
    spec: StackSpec,
    params: Mapping[str, Any],
    x: Any,
    *,
    h0: Any = None,
    c0: Any = None,
    lengths: Any = None,
    d_outputs: Any = None,
    d_h_n: Any = None,
    d_c_n: Any = None,
    truncate: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> StackResult:
    """The layer's outputs and final states, and (when any upstream gradient is given) the
    gradients of L = sum <d_outputs, outputs> + <d_h_n, h_n> + <d_c_n, c_n>, by autograd through
    the unrolled loops of the module docstring (truncated: see truncated_backward).

    spec:   the configuration (StackSpec).  params: torch's names -> arrays (spec.param_shapes()).
    x:      (B, T, D) batch-first or (T, D) unbatched, dense floats.
    h0:     None (zeros) or (L * dirs, B, H_out) ((L * dirs, H_out) unbatched).
    c0:     the LSTM's: None (zeros) or (L * dirs, B, H).
    lengths: None (every sequence T steps) or (B,) integers in 1..T, in any order.
    d_outputs, d_h_n, d_c_n: None (zero) or arrays of the shapes of outputs, h_n, c_n.
    truncate: None (full) or tau >= 0, one direction only: every layer's recurrence truncated
          at tau (truncated_backward); the outputs and final states are unchanged.
    Returns StackResult (see its docstring for the shapes); nothing the caller passed is modified.
    """
    if not isinstance(spec, StackSpec):
        raise ValueError(f"spec: expected a reference.StackSpec, got {type(spec).__name__}")
    checked = check_stack_params(spec, params)
    inp = check_stack_inputs(
        spec, x, h0=h0, c0=c0, lengths=lengths, d_outputs=d_outputs, d_h_n=d_h_n, d_c_n=d_c_n
    )
    if truncate is not None:
        if isinstance(truncate, bool) or not isinstance(truncate, numbers.Integral) or truncate < 0:
            raise ValueError(f"truncate: expected None or an integer >= 0, got {truncate!r}")
        if spec.bidirectional:
            raise ValueError("truncate: only for one-direction stacks (bidirectional=False)")
    L, dirs, H, H_out = spec.num_layers, spec.directions, spec.hidden_size, spec.out_size
    B, T = inp.x.shape[:2]
    lstm = spec.cell == "lstm"
    leaves = {name: torch.tensor(a, dtype=dtype, requires_grad=True) for name, a in checked.items()}
    x_leaf = torch.tensor(inp.x, dtype=dtype, requires_grad=True)  # (B, T, D)
    h0_leaf = _leaf(inp.h0, (L * dirs, B, H_out), dtype)  # (L * dirs, B, H_out)
    c0_leaf = _leaf(inp.c0, (L * dirs, B, H), dtype) if lstm else None  # (L * dirs, B, H)
    zero_h = torch.zeros(H_out, dtype=dtype)

    layer_input = x_leaf  # (B, T, D_l): x for layer 0, the previous layer's outputs above it
    h_n, c_n = [], []  # row l * dirs + d, each (B, H_out) / (B, H)
    for layer in range(L):
        direction_outputs = []  # per direction, (B, T, H_out)
        for d in range(dirs):
            step = direction_step(spec, leaves, layer, d)
            k = layer * dirs + d  # the row of h0, c0, h_n, c_n
            rows, finals = [], []
            for b in range(B):
                n_b = int(inp.lengths[b])
                steps = range(n_b) if d == 0 else range(n_b - 1, -1, -1)  # this sequence's own steps
                state = (h0_leaf[k, b : b + 1],) + ((c0_leaf[k, b : b + 1],) if lstm else ())
                h_at = {}
                for t in steps:
                    state = step(layer_input[b : b + 1, t], state)  # the state at t, each part (1, .)
                    h_at[t] = state[0][0]
                finals.append(state)
                rows.append(torch.stack([h_at.get(t, zero_h) for t in range(T)]))  # (T, H_out), 0 past n_b
            direction_outputs.append(torch.stack(rows))  # (B, T, H_out)
            h_n.append(torch.cat([f[0] for f in finals]))  # (B, H_out)
            if lstm:
                c_n.append(torch.cat([f[1] for f in finals]))  # (B, H)
        layer_input = torch.cat(direction_outputs, dim=2)  # (B, T, dirs * H_out): [forward, reverse]
    outputs = layer_input
    h_n_t = torch.stack(h_n)  # (L * dirs, B, H_out)
    c_n_t = torch.stack(c_n) if lstm else None  # (L * dirs, B, H)

    grads = dx = dh0 = dc0 = None
    if inp.wants_backward:
        if truncate is None:
            objective = torch.zeros((), dtype=dtype)
            for upstream, value in ((inp.d_outputs, outputs), (inp.d_h_n, h_n_t), (inp.d_c_n, c_n_t)):
                if upstream is not None:
                    objective = objective + (torch.tensor(upstream, dtype=dtype) * value).sum()  # <d, value>
            objective.backward()
        else:
            truncated_backward(spec, leaves, inp, x_leaf, h0_leaf, c0_leaf, int(truncate))

        def grad_of(leaf: Tensor) -> np.ndarray:
            return (torch.zeros_like(leaf) if leaf.grad is None else leaf.grad).detach().numpy()

        grads = {name: grad_of(leaf) for name, leaf in leaves.items()}
        dx, dh0 = grad_of(x_leaf), grad_of(h0_leaf)
        dc0 = grad_of(c0_leaf) if lstm else None

    def out(a: Tensor | np.ndarray | None, batch_axis: int) -> np.ndarray | None:
        if a is None:
            return None
        a = a.detach().numpy() if isinstance(a, Tensor) else a
        return a if inp.batched else np.take(a, 0, axis=batch_axis)

    return StackResult(
        outputs=out(outputs, 0),
        h_n=out(h_n_t, 1),
        c_n=out(c_n_t, 1),
        grads=grads,
        dx=out(dx, 0),
        dh0=out(dh0, 1),
        dc0=out(dc0, 1),
    )


def truncated_backward(
    spec: StackSpec,
    leaves: Mapping[str, Tensor],
    inp: StackInputs,
    x_leaf: Tensor,
    h0_leaf: Tensor,
    c0_leaf: Tensor | None,
    tau: int,
) -> None:
    """Truncated BPTT of a one-direction stack: accumulates into the .grad of every leaf.

    Every layer's own recurrence is truncated at tau; the gradient passes from a layer to the one
    below at the same step, untruncated. Layer by layer, the top one first:

        up_l[b, t] = d_outputs[b, t] for the top layer, dL/d(input of layer l+1)[b, t] below it
        for every sequence b and t = 0 .. n_b - 1: <up_l[b, t], h_t> differentiated through the
            steps max(0, t - tau) .. t of layer l only (the state entering them a constant unless
            the window reaches h0), from the layer's input held as a leaf (+ <d_h_n[l, b], h_t> +
            <d_c_n[l, b], c_t> at t = n_b - 1: the final state's gradient belongs to the
            sequence's own last step); reference.truncation over the sequence's own n_b steps
        up_{l-1} = the gradient of layer l's input leaf

    For one layer this is reference.layer_backward's truncation; with tau >= T - 1 it is full BPTT.
    """
    L, B, T, H_out = spec.num_layers, inp.x.shape[0], inp.x.shape[1], spec.out_size
    lstm, dtype = spec.cell == "lstm", x_leaf.dtype

    def start_state(layer: int, b: int) -> tuple[Tensor, ...]:
        return (h0_leaf[layer, b : b + 1],) + ((c0_leaf[layer, b : b + 1],) if lstm else ())

    with torch.no_grad():  # every layer's input and every state, without a graph
        inputs = [x_leaf.detach()]  # inputs[l]: the input of layer l, (B, T, D_l)
        states = []  # states[l][b][t]: the state of layer l, sequence b, at step t < n_b
        for layer in range(L):
            step = direction_step(spec, leaves, layer, 0)
            out = torch.zeros((B, T, H_out), dtype=dtype)  # 0 past each length
            rows = []
            for b in range(B):
                state, row = start_state(layer, b), []
                for t in range(int(inp.lengths[b])):
                    state = step(inputs[layer][b : b + 1, t], state)
                    row.append(state)
                    out[b, t] = state[0][0]
                rows.append(row)
            states.append(rows)
            inputs.append(out)

    def upstream(a: np.ndarray | None, shape: tuple[int, ...]) -> Tensor:
        return torch.zeros(shape, dtype=dtype) if a is None else torch.tensor(a, dtype=dtype)

    up = upstream(inp.d_outputs, (B, T, H_out))
    d_h = upstream(inp.d_h_n, (L, B, H_out))
    d_c = upstream(inp.d_c_n, (L, B, spec.hidden_size)) if lstm else None

    def final_term(layer: int, b: int) -> Callable[[tuple[Tensor, ...]], Tensor]:
        """<d_h_n[l, b], h> (+ <d_c_n[l, b], c>) of the state at sequence b's own last step."""

        def term(state: tuple[Tensor, ...]) -> Tensor:
            out = (d_h[layer, b] * state[0][0]).sum()
            return out + (d_c[layer, b] * state[1][0]).sum() if lstm else out

        return term

    def h_term(state: tuple[Tensor, ...], targets_t: tuple[Tensor]) -> Tensor:
        return (targets_t[0] * state[0]).sum()  # <up_l[b, t], h_t>

    for layer in reversed(range(L)):
        x_l = x_leaf if layer == 0 else inputs[layer].clone().requires_grad_(True)  # the input, a leaf
        step = direction_step(spec, leaves, layer, 0)
        for b in range(B):
            n_b = int(inp.lengths[b])  # sequence b's own steps 0 .. n_b - 1 (reference.truncation)
            truncation.truncated_windows(
                step,
                functools.partial(start_state, layer, b),  # h0 (and c0), in the graph
                states[layer][b],
                x_l[b : b + 1, :n_b],
                (up[b : b + 1, :n_b],),
                tau,
                h_term,
                final_term(layer, b),
            )
        if layer > 0:
            up = torch.zeros_like(x_l) if x_l.grad is None else x_l.grad  # dL/d(outputs of layer l - 1)
