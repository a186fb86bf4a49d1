"""Strict float comparison of gradients and BPTT results, and central finite differences (numpy only).

``assert_close(actual, expected, name=...)`` is the check this project uses for float64
gradients: ``max|a - b| <= RTOL * max|expected| + ATOL`` with RTOL = 1e-10, ATOL = 1e-12 (the
one place these constants are defined). It fails on NaN or inf in either array (unlike
``np.testing.assert_allclose``, which treats NaN == NaN as equal) and says which element is
worst. ``assert_results_close`` applies it to every field of two BPTT results;
``central_differences`` gives the numerical gradient of a scalar function of an array.

Needs numpy only; also available as ``manual_bptt.testing.*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ATOL",
    "RTOL",
    "assert_close",
    "assert_results_close",
    "central_differences",
    "max_rel_error",
    "result_fields",
]

#: Relative part of the norm-wise tolerance between two float64 analytic gradients.
RTOL = 1e-10
#: Absolute floor of that tolerance.
ATOL = 1e-12


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
    actual: object, expected: object, *, name: str, rtol: float = RTOL, atol: float = ATOL
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
    actual: Any, expected: Any, *, rtol: float = RTOL, atol: float = ATOL, context: str = ""
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
