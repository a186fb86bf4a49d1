"""The plain problem model: a small random BPTT problem as a frozen configuration and its arrays.

``RNNConfig`` describes one problem (the cell, sizes, input kind, activation, truncation,
reduction, mask, initial state, weight scale, seed); ``make_problem(cfg)`` turns it into
concrete arrays, deterministically from ``cfg.seed``. The cell is the Elman RNN ("rnn",
RNNParams), the GRU ("gru", GRUParams) or the LSTM ("lstm", LSTMParams, whose initial state
is an LSTMState(h, c)); the activation belongs to the Elman cell only. Needs numpy only: the
Hypothesis strategies that draw configurations live in ``manual_bptt.testing``.

Notation (as in the package): T steps, B sequences (None: unbatched), D inputs (the
vocabulary size for token inputs), H hidden units, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .gated_params import GRUParams, LSTMParams, LSTMState
from .params import RNNParams

__all__ = [
    "CELLS",
    "GATED_SCALE",
    "REDUCTIONS",
    "S0_KINDS",
    "WEIGHT_SCALES",
    "Problem",
    "RNNConfig",
    "make_problem",
]

#: The cells: the Elman RNN, the GRU and the LSTM.
CELLS: tuple[str, ...] = ("rnn", "gru", "lstm")
#: A gated cell's weights and biases are U(-k, k), k = GATED_SCALE * weight_scale / sqrt(H):
#: weight_scale 0.1 keeps every gate near its linear middle, 3.0 drives most of them into
#: saturation (sigmoid near 0 or 1, tanh near -1 or 1), the values between mix both.
GATED_SCALE = 2.0

#: Spectral radius of W drawn by rnn_configs: vanishing (0.1, 0.5), marginal (1.0), exploding (1.5, 3.0).
WEIGHT_SCALES: tuple[float, ...] = (0.1, 0.5, 1.0, 1.5, 3.0)
#: None: no s0 (zeros); "shared": one (H,) state for every sequence; "per_row": (B, H), batched only.
S0_KINDS: tuple[str | None, ...] = (None, "shared", "per_row")
#: The loss reductions of bptt.
REDUCTIONS: tuple[str, ...] = ("sum", "mean")


@dataclass(frozen=True)
class RNNConfig:
    """One randomly drawn BPTT problem, small enough to print.

    Attributes:
        T: sequence length (>= 1).
        B: batch size, or None for unbatched inputs ((T,) / (T, D)).
        D: input size; the vocabulary size when ``tokens``.
        H: hidden size.  K: number of classes.
        tokens: int token ids (T,) / (B, T) if True, dense float (T, D) / (B, T, D) if False.
        bias: whether the parameters have b (H,) and c (K,).
        activation: a key of manual_bptt.ACTIVATIONS for the Elman cell; None for a gated cell.
        truncate: None (full BPTT) or tau >= 0 (may exceed T - 1).
        reduction: "sum" or "mean".
        use_mask: pass a random bool mask (at least one target counted).
        s0_kind: None, "shared" ((H,)) or "per_row" ((B, H), only when batched).
        weight_scale: Elman cell: spectral radius given to W (+-10%; also the scale of U and
            V), see WEIGHT_SCALES. Gated cells: the scale of the uniform init, see GATED_SCALE.
        seed: seeds every array of the problem.
        cell: "rnn" (the default: RNNParams), "gru" (GRUParams) or "lstm" (LSTMParams).
    """

    T: int
    B: int | None
    D: int
    H: int
    K: int
    tokens: bool
    bias: bool
    activation: str | None
    truncate: int | None
    reduction: str
    use_mask: bool
    s0_kind: str | None
    weight_scale: float
    seed: int
    cell: str = "rnn"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {CELLS}, got {self.cell!r}")
        if self.cell == "rnn" and not isinstance(self.activation, str):
            raise ValueError(f"activation: the Elman cell needs a name, got {self.activation!r}")
        if self.cell != "rnn" and self.activation is not None:
            raise ValueError(
                f"activation: applies to the Elman cell only; expected None for {self.cell!r}, "
                f"got {self.activation!r}"
            )
        if self.s0_kind not in S0_KINDS:
            raise ValueError(f"s0_kind: expected one of {S0_KINDS}, got {self.s0_kind!r}")
        if self.s0_kind == "per_row" and self.B is None:
            raise ValueError("s0_kind: 'per_row' needs a batched config (B is None)")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {self.reduction!r}")


@dataclass(frozen=True, eq=False)
class Problem:
    """Concrete arrays for an RNNConfig (see make_problem).

    Attributes:
        cfg: the configuration.
        params: "rnn": RNNParams, U (H, D), W (H, H), V (K, H), b (H,) / c (K,) or None.
            "gru" / "lstm": GRUParams / LSTMParams, U (G*H, D), W (G*H, H), b_ih and b_hh
            (G*H,) or both None, V (K, H), c (K,) or None; G = 3 (GRU) or 4 (LSTM).
        xs: int64 token ids (T,) / (B, T) in [0, D), or float64 dense (T, D) / (B, T, D).
        ys: int64 labels (T,) / (B, T) in [0, K).
        s0: None, or float64 (H,) / (B, H); for the LSTM an LSTMState(h, c) of two such arrays.
        mask: None, or bool (T,) / (B, T) with at least one True.
    """

    cfg: RNNConfig
    params: Any
    xs: np.ndarray
    ys: np.ndarray
    s0: Any
    mask: np.ndarray | None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of bptt (and the oracle): activation (the Elman cell only), s0,
        truncate, reduction, mask."""
        cfg = self.cfg
        head = {"activation": cfg.activation} if cfg.cell == "rnn" else {}
        return {
            **head,
            "s0": self.s0,
            "truncate": cfg.truncate,
            "reduction": cfg.reduction,
            "mask": self.mask,
        }

    def __repr__(self) -> str:
        return f"make_problem({self.cfg!r})"


def _spectral_radius(W: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(W))))


def make_problem(cfg: RNNConfig) -> Problem:
    """Build the arrays of ``cfg``, deterministically from ``cfg.seed`` (numpy Generator).

    Parameters: RNNParams.init(D, H, K, weight_scale=cfg.weight_scale, bias=cfg.bias), then W
    rescaled so that its spectral radius is ``weight_scale`` within +-10% (for the small H
    drawn here the radius of a Gaussian matrix is far from its large-H limit, so without
    this the scales would not separate the vanishing and exploding regimes; the random
    +-10% keeps W away from exact values like [[-1.0]] that make pre-activations cancel to
    exactly 0, where relu' is ambiguous).
    Data: token ids / labels uniform; dense inputs N(0, 1); s0 N(0, 0.5^2); mask True with
    probability 0.7, with one random target forced True so that at least one is counted.

    Gated cells: GRUParams / LSTMParams.init(D, H, K, weight_scale=GATED_SCALE * weight_scale),
    so b_ih and b_hh are random, nonzero and different; the LSTM's s0 is LSTMState(h, c), both
    parts N(0, 0.5^2), shared (H,) or per row (B, H). The data is drawn as for the Elman cell.
    An Elman configuration's arrays do not depend on this field (the same as before it existed).
    """
    rng = np.random.default_rng(cfg.seed)
    if cfg.cell != "rnn":
        return _gated_problem(cfg, rng)
    p = RNNParams.init(
        cfg.D, cfg.H, cfg.K, seed=int(rng.integers(2**63)), bias=cfg.bias, weight_scale=cfg.weight_scale
    )
    rho = _spectral_radius(p.W)
    if rho > 0:
        # radius weight_scale * u, u ~ U(0.9, 1.1): never a round number, since e.g. H = 1
        # would give W = [[-1.0]] exactly, and relu / identity then cancel exactly
        # (a_t = 0.0 on the kink) on repeated tokens
        # (drawn from its own stream, so that the data below does not depend on it)
        jitter = np.random.default_rng([cfg.seed, 1]).uniform(0.9, 1.1)
        p = p.replace(W=p.W * (cfg.weight_scale * jitter / rho))
    xs, ys, s0, mask = _data(cfg, rng)
    return Problem(cfg=cfg, params=p, xs=xs, ys=ys, s0=s0, mask=mask)


def _gated_problem(cfg: RNNConfig, rng: np.random.Generator) -> Problem:
    cls = GRUParams if cfg.cell == "gru" else LSTMParams
    p = cls.init(
        cfg.D,
        cfg.H,
        cfg.K,
        seed=int(rng.integers(2**63)),
        bias=cfg.bias,
        weight_scale=GATED_SCALE * cfg.weight_scale,
    )
    xs, ys, s0, mask = _data(cfg, rng)
    if cfg.cell == "lstm" and s0 is not None:
        s0 = LSTMState(s0, 0.5 * rng.standard_normal(s0.shape))
    return Problem(cfg=cfg, params=p, xs=xs, ys=ys, s0=s0, mask=mask)


def _data(cfg: RNNConfig, rng: np.random.Generator) -> tuple[Any, Any, Any, Any]:
    """xs, ys, s0 (the h part), mask, drawn from ``rng`` in this order."""
    seq = (cfg.T,) if cfg.B is None else (cfg.B, cfg.T)
    if cfg.tokens:
        xs = rng.integers(0, cfg.D, size=seq, dtype=np.int64)
    else:
        xs = rng.standard_normal((*seq, cfg.D))
    ys = rng.integers(0, cfg.K, size=seq, dtype=np.int64)
    if cfg.s0_kind is None:
        s0 = None
    elif cfg.s0_kind == "shared":
        s0 = 0.5 * rng.standard_normal(cfg.H)
    else:
        assert cfg.B is not None
        s0 = 0.5 * rng.standard_normal((cfg.B, cfg.H))
    mask = None
    if cfg.use_mask:
        mask = rng.random(seq) < 0.7
        mask[np.unravel_index(int(rng.integers(mask.size)), mask.shape)] = True
    return xs, ys, s0, mask
