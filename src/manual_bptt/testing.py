"""Test helpers for users of manual_bptt: strict float comparison and Hypothesis strategies.

Needs ``hypothesis`` (the ``test`` extra) besides numpy; never imports torch.

Comparison
    ``assert_close(actual, expected, name=...)`` is the check this project uses for float64
    gradients: ``max|a - b| <= rtol * max|expected| + atol`` with rtol 1e-10, atol 1e-12. It
    fails on NaN or inf in either array (unlike ``np.testing.assert_allclose``, which treats
    NaN == NaN as equal) and says which element is worst.

Random problems
    ``rnn_configs()`` draws an ``RNNConfig`` (sizes, input kind, activation, truncation,
    reduction, mask, initial state, weight scale, seed); ``make_problem(cfg)`` turns it into
    concrete arrays, deterministically from ``cfg.seed``. ``rnn_problems()`` does both::

        from hypothesis import given
        from manual_bptt.testing import rnn_problems

        @given(rnn_problems(max_T=20, max_H=10))
        def test_something(prob):
            r = manual_bptt.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())

Notation (as in the package): T steps, B sequences (None: unbatched), D inputs (the
vocabulary size for token inputs), H hidden units, K classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .activations import ACTIVATIONS
from .params import RNNParams

__all__ = [
    "S0_KINDS",
    "WEIGHT_SCALES",
    "Problem",
    "RNNConfig",
    "assert_close",
    "assert_results_close",
    "central_differences",
    "make_problem",
    "max_rel_error",
    "result_fields",
    "rnn_configs",
    "rnn_problems",
]

#: Spectral radius of W drawn by rnn_configs: vanishing (0.1, 0.5), marginal (1.0), exploding (1.5, 3.0).
WEIGHT_SCALES: tuple[float, ...] = (0.1, 0.5, 1.0, 1.5, 3.0)
#: None: no s0 (zeros); "shared": one (H,) state for every sequence; "per_row": (B, H), batched only.
S0_KINDS: tuple[str | None, ...] = (None, "shared", "per_row")
_REDUCTIONS = ("sum", "mean")


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------
def central_differences(
    loss_of: Callable[[np.ndarray], float], x: np.ndarray, *, eps: float = 1e-5
) -> np.ndarray:
    """(E(x + eps e_i) - E(x - eps e_i)) / (2 eps) for every entry i of x; float64, x's shape.

    ``loss_of`` receives a fresh float64 copy of x with one entry moved, never x itself.
    """
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        orig = x[i]
        x[i] = orig + eps
        up = loss_of(x.copy())
        x[i] = orig - eps
        down = loss_of(x.copy())
        x[i] = orig
        g[i] = (up - down) / (2 * eps)
    return g


def _first_nonfinite(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def assert_close(
    actual: object, expected: object, *, name: str, rtol: float = 1e-10, atol: float = 1e-12
) -> None:
    """Assert ``max|actual - expected| <= rtol * max|expected| + atol``, both finite.

    The tolerance is norm-wise (scaled by the largest entry of ``expected``), which is the
    right scale for a gradient: an entry that is tiny because of cancellation is not held
    to a relative accuracy that no float computation could reach.

    Args:
        actual: array-like (any shape, real), e.g. a gradient from manual_bptt.
        expected: array-like of the same shape, e.g. the oracle's gradient.
        name: what is compared (e.g. "grads.W"), used in the failure message.
        rtol, atol: the tolerance. The differences are taken in float64.

    Raises:
        AssertionError if the shapes differ, if either array holds NaN or inf, or if the
        tolerance is exceeded. The message names ``name``, the worst element's index, both
        values there, max|expected| and the tolerance.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} differs from expected shape {e.shape}")
    for label, arr in (("actual", a), ("expected", e)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise AssertionError(f"{name}: {label} has non-real dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            idx = _first_nonfinite(arr)
            raise AssertionError(f"{name}: {label} is not finite: {arr[idx]!r} at index {idx}")
    if a.size == 0:
        return
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    err = np.abs(a64 - e64)
    scale = float(np.max(np.abs(e64)))
    tol = rtol * scale + atol
    worst = float(np.max(err))
    if not worst <= tol:
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), err.shape))
        raise AssertionError(
            f"{name}: max|actual - expected| = {worst:.3e} at index {idx}: "
            f"actual {a64[idx]!r}, expected {e64[idx]!r}; "
            f"tolerance {tol:.3e} = rtol {rtol:g} * max|expected| {scale:.3e} + atol {atol:g} "
            f"(relative error {worst / max(scale, np.finfo(np.float64).tiny):.3e})"
        )


def max_rel_error(actual: object, expected: object) -> float:
    """max|actual - expected| / max(max|expected|, tiny), in float64; inf if either is not finite.

    The norm-wise relative error that ``assert_close`` bounds by ``rtol`` (ignoring atol).
    0.0 for empty arrays. Raises ValueError if the shapes differ.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"max_rel_error: shapes differ, {a.shape} vs {e.shape}")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        return math.inf
    scale = max(float(np.max(np.abs(e))), float(np.finfo(np.float64).tiny))
    return float(np.max(np.abs(a - e))) / scale


def result_fields(r: Any) -> list[tuple[str, np.ndarray | None]]:
    """(name, value) of every compared field of a BPTT result, duck-typed.

    ``r`` needs .loss, .grads.{U,W,V,b,c}, .ds0, .dxs, .final_state (manual_bptt.BPTTResult
    and the oracle's result both qualify). The loss is returned as a 0-d float64 array.
    """
    out: list[tuple[str, np.ndarray | None]] = [("loss", np.asarray(r.loss, dtype=np.float64))]
    for n in ("U", "W", "V", "b", "c"):
        g = getattr(r.grads, n)
        out.append((f"grads.{n}", None if g is None else np.asarray(g)))
    out.append(("ds0", np.asarray(r.ds0)))
    out.append(("dxs", None if r.dxs is None else np.asarray(r.dxs)))
    out.append(("final_state", np.asarray(r.final_state)))
    return out


def assert_results_close(
    actual: Any, expected: Any, *, rtol: float = 1e-10, atol: float = 1e-12, context: str = ""
) -> dict[str, float]:
    """Compare two BPTT results field by field with ``assert_close``.

    Fields: loss (a scalar), grads.U/W/V/b/c (None in one must be None in the other), ds0,
    dxs (None for token inputs, in both) and final_state.

    Args:
        actual, expected: objects with .loss, .grads.{U,W,V,b,c}, .ds0, .dxs, .final_state.
        rtol, atol: as in assert_close.
        context: appended to every failure message (e.g. the configuration).

    Returns:
        {field: max_rel_error} for every field present in both, for reporting.
    """
    suffix = f" [{context}]" if context else ""
    errors: dict[str, float] = {}
    for (name, a), (_, e) in zip(result_fields(actual), result_fields(expected), strict=True):
        if (a is None) != (e is None):
            raise AssertionError(
                f"{name}: actual is {'None' if a is None else 'present'} but expected is "
                f"{'None' if e is None else 'present'}{suffix}"
            )
        if a is None:
            continue
        assert_close(a, e, name=name + suffix, rtol=rtol, atol=atol)
        errors[name] = max_rel_error(a, e)
    return errors


# ---------------------------------------------------------------------------------------------
# Random problems
# ---------------------------------------------------------------------------------------------
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
        if self.reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {self.reduction!r}")


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


def _bool_or(value: bool | None) -> st.SearchStrategy[bool]:
    return st.booleans() if value is None else st.just(bool(value))


def _check_range(name: str, lo: int, hi: int, least: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)) or lo < least or hi < lo:
        raise InvalidArgument(f"{name}: need integers {least} <= min <= max, got min={lo}, max={hi}")


@st.composite
def rnn_configs(
    draw: st.DrawFn,
    *,
    min_T: int = 1,
    max_T: int = 8,
    min_B: int = 1,
    max_B: int = 4,
    min_D: int = 1,
    max_D: int = 6,
    min_H: int = 1,
    max_H: int = 6,
    min_K: int = 2,
    max_K: int = 6,
    batched: bool | None = None,
    tokens: bool | None = None,
    bias: bool | None = None,
    activations: Sequence[str] | None = None,
    truncation: bool = True,
    reductions: Sequence[str] = _REDUCTIONS,
    masks: bool | None = None,
    s0_kinds: Sequence[str | None] = S0_KINDS,
    weight_scales: Sequence[float] = WEIGHT_SCALES,
    distinct_sizes: bool = True,
) -> RNNConfig:
    """Strategy for RNNConfig.

    Args:
        min_*/max_*: inclusive size ranges for T, B, D, H, K (K >= 2 by default: with one
            class the loss and every gradient are identically zero).
        batched, tokens, bias, masks: fix the choice (True/False) or draw it (None).
        activations: names to draw from (default: all of manual_bptt.ACTIVATIONS).
        truncation: if True, truncate is None or an int in 0..T+2; if False, always None.
        reductions, s0_kinds, weight_scales: the values to draw from ("per_row" is only drawn
            for batched configs).
        distinct_sizes: draw T, D, H, K (and B when batched) pairwise different, so that a
            transposed or mis-indexed array shows up as a shape or value error. The ranges
            must leave room for that.
    """
    _check_range("T", min_T, max_T, 1)
    _check_range("B", min_B, max_B, 1)
    _check_range("D", min_D, max_D, 1)
    _check_range("H", min_H, max_H, 1)
    _check_range("K", min_K, max_K, 1)
    used: list[int] = []

    def size(name: str, lo: int, hi: int) -> int:
        choices = [v for v in range(lo, hi + 1) if not (distinct_sizes and v in used)]
        if not choices:
            raise InvalidArgument(
                f"{name}: range {lo}..{hi} leaves no size distinct from {used}; widen it or "
                "pass distinct_sizes=False"
            )
        v = draw(st.sampled_from(choices))
        used.append(v)
        return v

    is_batched = draw(_bool_or(batched))
    B = size("B", min_B, max_B) if is_batched else None  # the smallest range goes first
    K = size("K", min_K, max_K)
    H = size("H", min_H, max_H)
    D = size("D", min_D, max_D)
    T = size("T", min_T, max_T)
    names = sorted(ACTIVATIONS) if activations is None else list(activations)
    activation = draw(st.sampled_from(names))
    truncate = draw(st.none() | st.integers(0, T + 2)) if truncation else None
    kinds = [k for k in s0_kinds if B is not None or k != "per_row"]
    return RNNConfig(
        T=T,
        B=B,
        D=D,
        H=H,
        K=K,
        tokens=draw(_bool_or(tokens)),
        bias=draw(_bool_or(bias)),
        activation=activation,
        truncate=truncate,
        reduction=draw(st.sampled_from(list(reductions))),
        use_mask=draw(_bool_or(masks)),
        s0_kind=draw(st.sampled_from(kinds)),
        weight_scale=draw(st.sampled_from(list(weight_scales))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def rnn_problems(**kwargs: Any) -> st.SearchStrategy[Problem]:
    """Strategy for Problem: ``rnn_configs(**kwargs).map(make_problem)``."""
    return rnn_configs(**kwargs).map(make_problem)
