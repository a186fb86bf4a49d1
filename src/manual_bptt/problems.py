"""The plain problem model: a small random BPTT problem as a frozen configuration and its arrays.

``RNNConfig`` describes one problem (sizes, input kind, activation, truncation, reduction,
mask, initial state, weight scale, seed); ``make_problem(cfg)`` turns it into concrete
arrays, deterministically from ``cfg.seed``. Needs numpy only: the Hypothesis strategies
that draw configurations live in ``manual_bptt.testing``.

Notation (as in the package): T steps, B sequences (None: unbatched), D inputs (the
vocabulary size for token inputs), H hidden units, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .params import RNNParams

__all__ = ["REDUCTIONS", "S0_KINDS", "WEIGHT_SCALES", "Problem", "RNNConfig", "make_problem"]

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
        activation: a key of manual_bptt.ACTIVATIONS.
        truncate: None (full BPTT) or tau >= 0 (may exceed T - 1).
        reduction: "sum" or "mean".
        use_mask: pass a random bool mask (at least one target counted).
        s0_kind: None, "shared" ((H,)) or "per_row" ((B, H), only when batched).
        weight_scale: spectral radius given to W (+-10%; also the scale of U and V), see
            WEIGHT_SCALES.
        seed: seeds every array of the problem.
    """

    T: int
    B: int | None
    D: int
    H: int
    K: int
    tokens: bool
    bias: bool
    activation: str
    truncate: int | None
    reduction: str
    use_mask: bool
    s0_kind: str | None
    weight_scale: float
    seed: int

    def __post_init__(self) -> None:
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
        params: RNNParams, U (H, D), W (H, H), V (K, H), b (H,) / c (K,) or None.
        xs: int64 token ids (T,) / (B, T) in [0, D), or float64 dense (T, D) / (B, T, D).
        ys: int64 labels (T,) / (B, T) in [0, K).
        s0: None, (H,) or (B, H) float64.
        mask: None, or bool (T,) / (B, T) with at least one True.
    """

    cfg: RNNConfig
    params: RNNParams
    xs: np.ndarray
    ys: np.ndarray
    s0: np.ndarray | None
    mask: np.ndarray | None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of bptt (and the oracle): activation, s0, truncate, reduction, mask."""
        c = self.cfg
        return {
            "activation": c.activation,
            "s0": self.s0,
            "truncate": c.truncate,
            "reduction": c.reduction,
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
    """
    rng = np.random.default_rng(cfg.seed)
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
    return Problem(cfg=cfg, params=p, xs=xs, ys=ys, s0=s0, mask=mask)
