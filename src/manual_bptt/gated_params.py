"""The parameters of the gated cells (GRU, LSTM) with a softmax output layer, in torch's layout.

Layer-0 layout of torch.nn.GRU / torch.nn.LSTM, G stacked gate blocks of H rows each:

    U    (G*H, D)  weight_ih_l0       W    (G*H, H)  weight_hh_l0
    b_ih (G*H,)    bias_ih_l0         b_hh (G*H,)    bias_hh_l0      (both None, or both arrays)
    V    (K, H)    the output layer   c    (K,)      its bias, or None

GRU: G = 3, blocks r, z, n.  LSTM: G = 4, blocks i, f, g, o.  Then o_t = V h_t + c and
y_hat_t = softmax(o_t), as for the Elman cell. The LSTM's state is the pair LSTMState(h, c):
that c is the cell state c_t, not the output bias (a field of the parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

import numpy as np

from .errors import integer_arg
from .params import ParamsArrays, _float_dtype, _frozen_copy, init_args


class LSTMState(NamedTuple):
    """The LSTM's state (h_t, c_t): output h_t and cell state c_t, each (H,) or (B, H).

    Also the type of the LSTM's ds0 = (dE/dh0, dE/dc0) and final_state = (h_{T-1}, c_{T-1}).
    """

    h: np.ndarray
    c: np.ndarray


@dataclass(frozen=True, eq=False, kw_only=True)
class _GatedParams(ParamsArrays):
    """Parameters (or gradients, which live in the same space) of a gated cell.

    Attributes:
        U: (G*H, D) input weights, the G gate blocks stacked (weight_ih_l0).
        W: (G*H, H) recurrent weights, stacked the same way (weight_hh_l0).
        b_ih: (G*H,) input bias (bias_ih_l0), or None.
        b_hh: (G*H,) recurrent bias (bias_hh_l0), or None; None exactly when b_ih is None.
        V: (K, H) output weights.  c: (K,) output bias, or None.

    The arrays are read-only copies of what was passed in; shapes are checked here.
    """

    GATES: ClassVar[int] = 0
    GATE_NAMES: ClassVar[tuple[str, ...]] = ()

    U: np.ndarray
    W: np.ndarray
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None
    V: np.ndarray
    c: np.ndarray | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.name in ("U", "W", "V"):
                    raise ValueError(f"{f.name}: required, got None")
                continue
            object.__setattr__(self, f.name, _frozen_copy(f.name, value))
        self._check_shapes()

    def _check_shapes(self) -> None:
        G, blocks = self.GATES, "/".join(self.GATE_NAMES)
        U, W, V = self.U, self.W, self.V
        if W.ndim != 2 or W.shape[1] == 0:
            raise ValueError(f"W: expected shape (G*H, H) with G = {G} ({blocks}), got {W.shape}")
        H = W.shape[1]
        if W.shape[0] != G * H:
            raise ValueError(
                f"W: expected shape (G*H, H) = ({G * H}, {H}) with G = {G} ({blocks}), got {W.shape}: "
                f"{W.shape[0]} rows is not {G} blocks of H = {H}"
            )
        if U.ndim != 2 or U.shape[0] != G * H or U.shape[1] == 0:
            raise ValueError(f"U: expected shape (G*H, D) = ({G * H}, D) with D >= 1, got {U.shape}")
        if (self.b_ih is None) != (self.b_hh is None):
            given, missing = ("b_ih", "b_hh") if self.b_hh is None else ("b_hh", "b_ih")
            raise ValueError(f"{given}: given without {missing} (both are None, or both arrays)")
        for name in ("b_ih", "b_hh"):
            b = getattr(self, name)
            if b is not None and b.shape != (G * H,):
                raise ValueError(f"{name}: expected shape (G*H,) = ({G * H},), got {b.shape}")
        if V.ndim != 2 or V.shape[1] != H or V.shape[0] == 0:
            raise ValueError(f"V: expected shape (K, H) with H = {H} to match W, got {V.shape}")
        if self.c is not None and self.c.shape != (V.shape[0],):
            raise ValueError(f"c: expected shape (K,) = ({V.shape[0]},), got {self.c.shape}")

    # -- sizes -----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        """H: the size of h_t (and of the LSTM's c_t)."""
        return int(self.W.shape[1])

    @property
    def bias_names(self) -> tuple[str, ...]:
        """The names of the cell's biases: ("b_ih", "b_hh"), or () without them."""
        return () if self.b_ih is None else ("b_ih", "b_hh")

    def gate(self, name: str, block: str) -> np.ndarray | None:
        """The H rows of gate ``block`` (e.g. "n") of the stacked field ``name`` (U, W, b_ih, b_hh)."""
        if block not in self.GATE_NAMES:
            raise ValueError(f"block: expected one of {list(self.GATE_NAMES)}, got {block!r}")
        if name not in ("U", "W", "b_ih", "b_hh"):
            raise ValueError(f"name: expected one of U, W, b_ih, b_hh, got {name!r}")
        H, j = self.hidden_size, self.GATE_NAMES.index(block)
        a = getattr(self, name)
        return None if a is None else a[j * H : (j + 1) * H]

    def astype(self, dtype: np.dtype | type):
        """A copy with every array cast to ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype)
        return type(self)(**{name: a.astype(dt) for name, a in self.items()})

    def replace(self, **arrays: np.ndarray | None):
        """A copy with some arrays replaced, e.g. ``p.replace(b_hh=None, b_ih=None)``."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(arrays) - set(current)
        if unknown:
            raise ValueError(f"replace: unknown parameter names {sorted(unknown)}")
        current.update(arrays)
        return type(self)(**current)

    @classmethod
    def init(
        cls,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        seed: int | None = None,
        bias: bool = True,
        weight_scale: float = 1.0,
        dtype: np.dtype | type = np.float64,
    ):
        """Random parameters as torch initializes them: every entry ~ U(-k, k), k = weight_scale / sqrt(H).

        Args:
            input_size: D.  hidden_size: H.  output_size: K.  All at least 1.
            seed: seed of the numpy Generator, an integer >= 0 (None: fresh entropy).
            bias: include b_ih, b_hh (G*H,) and c (K,).
            weight_scale: multiplies k (1 is torch's init; larger values drive the gates
                into saturation). A finite real number >= 0.
            dtype: float32 or float64.

        The arguments are checked as RNNParams.init checks them (params.init_args): a ValueError
        names the first one that is wrong.
        """
        D = integer_arg("input_size", input_size, 1)
        H = integer_arg("hidden_size", hidden_size, 1)
        K = integer_arg("output_size", output_size, 1)
        seed, weight_scale, dt = init_args(seed, weight_scale, dtype)
        rng = np.random.default_rng(seed)
        k = weight_scale / np.sqrt(H)
        GH = cls.GATES * H

        def uniform(*shape: int) -> np.ndarray:
            return rng.uniform(-k, k, size=shape)

        p = cls(
            U=uniform(GH, D),
            W=uniform(GH, H),
            b_ih=uniform(GH) if bias else None,
            b_hh=uniform(GH) if bias else None,
            V=uniform(K, H),
            c=uniform(K) if bias else None,
        )
        return p.astype(dt)


@dataclass(frozen=True, eq=False)
class GRUParams(_GatedParams):
    """Parameters of a GRU (torch.nn.GRU's layer 0) and its output layer; G = 3 blocks r, z, n.

        r_t = σ(U_r x_t + b_ir + W_r h_{t-1} + b_hr)     z_t = σ(U_z x_t + b_iz + W_z h_{t-1} + b_hz)
        n_t = tanh(U_n x_t + b_in + r_t ⊙ (W_n h_{t-1} + b_hn))
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Fields (see the module docstring): U (3H, D), W (3H, H), b_ih (3H,), b_hh (3H,), V (K, H), c (K,).
    """

    GATES: ClassVar[int] = 3
    GATE_NAMES: ClassVar[tuple[str, ...]] = ("r", "z", "n")


@dataclass(frozen=True, eq=False)
class LSTMParams(_GatedParams):
    """Parameters of an LSTM (torch.nn.LSTM's layer 0) and its output layer; G = 4 blocks i, f, g, o.

        gate_i, gate_f, gate_o = σ(·), gate_g = tanh(·) of the blocks of U x_t + b_ih + W h_{t-1} + b_hh
        c_t = gate_f ⊙ c_{t-1} + gate_i ⊙ gate_g       h_t = gate_o ⊙ tanh(c_t)

    Fields (see the module docstring): U (4H, D), W (4H, H), b_ih (4H,), b_hh (4H,), V (K, H), c (K,).
    The field c is the output bias; the cell state c_t lives in LSTMState, never here.
    """

    GATES: ClassVar[int] = 4
    GATE_NAMES: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o")
