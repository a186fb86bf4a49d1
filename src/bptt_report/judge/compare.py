"""Comparing one array with a reference array, and saying where they differ: one ArrayCheck per
array, for both products. Three rules, all written so that they can never pass on NaN or on 0/0:

    against an oracle (float64):  max|a - r| <= rtol * max|r| + atol      rtol 1e-10, atol 1e-12
    against finite differences:   |a - n| <= atol + rtol * max(|a|, |n|)  rtol 1e-6, atol 1e-7
                                  (elementwise; the differences carry O(eps^2) + O(1e-16 / eps) error)
    check-module below float64:   max|a - r| <= FACTOR * max(base, UNIT[dtype] * max|r|) + atol,
                                  base = max|b - r| of the baseline b (torch's own module at the
                                  same dtype and device, on the same rounded values)

The first is norm-wise (scaled by the largest reference entry), the right scale for a
gradient: an entry that is tiny by cancellation is not held to a relative accuracy no float
computation could reach; check-module at float64 uses it too. The reported relative error is
max|a - r| / max|r|. The rules multiply instead of dividing, and a non-finite value in the
output under test always fails.

An all-zero reference (the true dW of one step from s0 = 0, say) has no relative error: it is
judged by the absolute tolerance alone, described as "expected exactly 0, got max |x| = ...",
and its rel_error, which ranks it among the others, is max|a| / (atol / rtol), the error
measured against the scale below which the absolute tolerance is the one that binds: at most
rtol exactly when it passes, and never a division by zero (it was 1e307).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The oracle tolerance, float64: max|a - r| <= RTOL * max|r| + ATOL (defined once, in manual_bptt.checking).
from manual_bptt.checking import ATOL, RTOL

#: Finite-difference tolerance, elementwise: |a - n| <= FD_ATOL + FD_RTOL * max(|a|, |n|).
FD_RTOL, FD_ATOL = 1e-6, 1e-7
#: check-module below float64: the module's error may be this many times the baseline's.
FACTOR = 16.0
#: Unit roundoff of each dtype (half the distance from 1 to the next number).
UNIT = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
#: Relative errors in this range, the loss failing too, look like single-precision rounding.
FLOAT32_BAND = (1e-10, 1e-4)
#: The arrays of a result, in report order: the loss, the parameter gradients (the Elman cell's
#: b; a gated cell's b_ih, b_hh), ds0 (the LSTM's as ds0.h and ds0.c) and dxs.
FIELDS = ("loss", "U", "W", "V", "b", "b_ih", "b_hh", "c", "ds0", "ds0.h", "ds0.c", "dxs")
#: Fields whose gradient flows through the recurrence (truncation changes them).
RECURRENT_FIELDS = ("U", "W", "b", "b_ih", "b_hh", "ds0", "ds0.h", "ds0.c", "dxs")


@dataclass(frozen=True)
class ArrayCheck:
    """One array of the result under test against the reference.

    Attributes:
        name: one of FIELDS (check-module: a torch name, weight_ih_l0, ..., x, h0).
        passed: whether it is within tolerance (and finite, and of the right shape).
        rel_error: max|a - r| / max|r|; against an all-zero reference max|a| / (atol / rtol)
            (see the module docstring); inf when not finite or not comparable.
        abs_error: max|a - r| (inf when not finite or not comparable).
        tolerance: the bound max|a - r| had to meet (for finite differences: at the worst entry).
        scale: max|r|.
        index: the worst element's index, () for the loss, None when not comparable.
        actual, expected: the values at ``index`` (None when not comparable).
        dtype: the dtype of the target's array, e.g. "float64" (check-module: the module's).
        note: why it failed when that is not just the size of the error (shape, NaN, float32,
            missing), else "".
        baseline: check-module below float64: the baseline's max|b - r| (inf without one);
            None otherwise.
        ratio: check-module: abs_error in the unit of its verdict (the tolerance at float64,
            else max(baseline, UNIT * scale): the number held against FACTOR); None otherwise.
    """

    name: str
    passed: bool
    rel_error: float
    abs_error: float
    tolerance: float
    scale: float
    index: tuple[int, ...] | None
    actual: float | None
    expected: float | None
    dtype: str
    note: str = ""
    baseline: float | None = None
    ratio: float | None = None

    @property
    def baseline_rel_error(self) -> float | None:
        """baseline / scale (0 for a zero reference), or None without a baseline."""
        if self.baseline is None:
            return None
        return self.baseline / self.scale if self.scale > 0 else 0.0

    @property
    def zero_reference(self) -> bool:
        """Whether the reference is exactly zero everywhere (so that no relative error exists)."""
        return self.index is not None and self.scale == 0

    def describe(self) -> str:
        """One line: the worst element, both values, the error and the tolerance (against an
        all-zero reference: what was expected, exactly 0, and the absolute tolerance)."""
        if self.index is None:
            return self.note
        where = "" if self.index == () else f" at index {self.index}"
        if self.zero_reference:
            text = (
                f"{self.name}: expected exactly 0, got max |x| = {self.abs_error:.3e}{where} "
                f"(actual {self.actual!r}); judged by the absolute tolerance {self.tolerance:.3e}"
            )
            return f"{text} ({self.note})" if self.note else text
        text = (
            f"{self.name}: max|actual - expected| = {self.abs_error:.3e}{where}: actual {self.actual!r}, "
            f"expected {self.expected!r}; relative error {self.rel_error:.3e}, tolerance {self.tolerance:.3e}"
        )
        return f"{text} ({self.note})" if self.note else text


def label(name: str) -> str:
    """How messages name a field: "the loss", "dW", "ds0"."""
    if name == "loss":
        return "the loss"
    return f"d{name}" if name in ("U", "W", "V", "b", "b_ih", "b_hh", "c") else name


def not_comparable(name: str, note: str, dtype: str = "") -> ArrayCheck:
    """A failed ArrayCheck for a value that cannot be compared; ``note`` says why."""
    return ArrayCheck(
        name=name,
        passed=False,
        rel_error=math.inf,
        abs_error=math.inf,
        tolerance=0.0,
        scale=0.0,
        index=None,
        actual=None,
        expected=None,
        dtype=dtype,
        note=note,
    )


def _as_real_array(name: str, value: Any) -> tuple[np.ndarray | None, ArrayCheck | None]:
    """(array, None) for a real numeric value, else (None, a failed ArrayCheck saying why)."""
    try:
        a = np.asarray(value)
    except Exception as exc:  # a target may return anything
        return None, not_comparable(name, f"{label(name)} cannot be read as an array: {exc}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        return None, not_comparable(
            name, f"{label(name)} has dtype {a.dtype}, not real numbers", str(a.dtype)
        )
    return a, None


def _precheck(name: str, actual: Any, expected: np.ndarray) -> tuple[np.ndarray | None, ArrayCheck | None]:
    """The target's array as float64 if it is comparable with ``expected``, else a failure."""
    if actual is None:
        return None, not_comparable(name, f"{label(name)} is missing (None) in the target's result")
    a, failed = _as_real_array(name, actual)
    if failed is not None:
        return None, failed
    dtype = str(a.dtype)
    if a.shape != expected.shape:
        hint = ": transposed?" if a.shape == expected.shape[::-1] and a.ndim == 2 else ""
        return None, not_comparable(
            name, f"{label(name)} has shape {a.shape}, expected {expected.shape}{hint}", dtype
        )
    if not np.all(np.isfinite(a)):
        bad = ~np.isfinite(a)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "NaN" if np.isnan(a[idx]) else ("inf" if a[idx] > 0 else "-inf")
        where = "" if idx == () else f" at {idx}"
        verb = "is" if idx == () else "contains"
        count = int(np.sum(bad))
        more = f" ({count} non-finite entries of {a.size})" if count > 1 else ""
        return None, not_comparable(name, f"{label(name)} {verb} {what}{where}{more}", dtype)
    return a.astype(np.float64), None


def _float32_note(dtype: str) -> str:
    if dtype == "float32":
        return "float32 output checked at float64 tolerance: float32 arithmetic cannot reach rtol 1e-10"
    return ""


def relative_error(worst: float, scale: float, rtol: float, atol: float) -> float:
    """max|a - r| / max|r|; against an all-zero reference (scale 0), max|a| / (atol / rtol)."""
    return worst / scale if scale > 0 else worst * (rtol / atol)



def _argmax(values: np.ndarray) -> tuple[int, ...]:
    """The index of the largest entry."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))


def _empty(name: str, atol: float, dtype: str) -> ArrayCheck:
    """An empty array against an empty reference: it passes."""
    return ArrayCheck(name, True, 0.0, 0.0, atol, 0.0, (), 0.0, 0.0, dtype)


def _at(
    name: str, a: np.ndarray, r: np.ndarray, idx: tuple[int, ...], passed: bool, rel_error: float,
    abs_error: float, tolerance: float, scale: float, dtype: str,
) -> ArrayCheck:  # fmt: skip
    """The ArrayCheck of two comparable arrays, its worst entry at ``idx``."""
    return ArrayCheck(
        name=name,
        passed=passed,
        rel_error=rel_error,
        abs_error=abs_error,
        tolerance=tolerance,
        scale=scale,
        index=idx,
        actual=float(a[idx]),
        expected=float(r[idx]),
        dtype=dtype,
        note="" if passed else _float32_note(dtype),
    )


def compare_array(
    name: str, actual: Any, expected: Any, *, rtol: float = RTOL, atol: float = ATOL
) -> ArrayCheck:
    """Norm-wise check ``max|a - r| <= rtol * max|r| + atol`` of one array against a reference.

    Args:
        name: the field (see FIELDS).
        actual: the target's array (any shape; a scalar for the loss). Must be finite.
        expected: the reference array, same shape, finite (float64).
        rtol, atol: the tolerance.
    """
    r = np.asarray(expected, dtype=np.float64)
    a, failed = _precheck(name, actual, r)
    if failed is not None:
        return failed
    dtype = str(np.asarray(actual).dtype)
    if a.size == 0:
        return _empty(name, atol, dtype)
    err = np.abs(a - r)
    scale = float(np.max(np.abs(r)))
    worst = float(np.max(err))
    tol = rtol * scale + atol
    rel = relative_error(worst, scale, rtol, atol)
    return _at(name, a, r, _argmax(err), worst <= tol, rel, worst, tol, scale, dtype)


def compare_fd(
    name: str, analytic: Any, numeric: np.ndarray, *, rtol: float = FD_RTOL, atol: float = FD_ATOL
) -> ArrayCheck:
    """Elementwise check ``|a - n| <= atol + rtol * max(|a|, |n|)`` against central differences.

    Args:
        name: the field.  analytic: the target's gradient.  numeric: (same shape) finite differences.
    The worst element is the one with the largest ratio |a - n| / tolerance, so that
    ``abs_error / tolerance`` is the elementwise criterion itself (<= 1 exactly when it passes).
    """
    n = np.asarray(numeric, dtype=np.float64)
    a, failed = _precheck(name, analytic, n)
    if failed is not None:
        return failed
    dtype = str(np.asarray(analytic).dtype)
    if not np.all(np.isfinite(n)):
        return not_comparable(
            name, f"{label(name)}: finite differences of the target's loss are not finite", dtype
        )
    if a.size == 0:
        return _empty(name, atol, dtype)
    err = np.abs(a - n)
    tol = atol + rtol * np.maximum(np.abs(a), np.abs(n))
    idx = _argmax(err / tol)  # the entry that uses most of its own tolerance (tol >= atol > 0)
    scale = float(np.max(np.abs(n)))
    rel = relative_error(float(np.max(err)), scale, rtol, atol)
    return _at(name, a, n, idx, bool(np.all(err <= tol)), rel, float(err[idx]), float(tol[idx]), scale, dtype)


def compare_optional(name: str, actual: Any, expected: Any) -> ArrayCheck | None:
    """compare_array for a field that the reference may not have (b, c without bias).

    Returns None when neither side has the field. When the reference has none, the target
    may return None or zeros; anything else fails.
    """
    if expected is None:
        if actual is None:
            return None
        a, failed = _as_real_array(name, actual)
        if failed is not None:
            return failed
        if a.size and np.all(a == 0):
            return None
        return not_comparable(
            name, f"{label(name)} is returned for a parameter the model does not have", str(a.dtype)
        )
    if actual is None:
        return not_comparable(name, f"{label(name)} is missing (None) in the target's result")
    return compare_array(name, actual, expected)


def looks_like_float32(arrays: list[ArrayCheck]) -> bool:
    """Whether the failures look like single-precision arithmetic rather than a wrong term.

    True when a failing array is float32; or when the loss itself fails and every failing
    array is off by a relative error in FLOAT32_BAND (a wrong term of the backward pass
    leaves the loss exact; float32 arithmetic perturbs everything, the loss included).
    """
    failing = [a for a in arrays if not a.passed]
    if not failing:
        return False
    if any(a.dtype == "float32" for a in failing):
        return True
    lo, hi = FLOAT32_BAND
    return any(a.name == "loss" for a in failing) and all(lo <= a.rel_error <= hi for a in failing)


# ---------------------------------------------------------------------------------------------
# check-module: a recurrent layer's arrays (float64 copies of what it computed at its dtype)
# ---------------------------------------------------------------------------------------------
def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b|; inf for NaN/inf anywhere or a shape mismatch; 0 for empty arrays."""
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    d = np.abs(a - b)
    return float(d.max()) if np.isfinite(d).all() else math.inf


def compare_module_array(
    name: str, a: np.ndarray | None, ref: np.ndarray, base: np.ndarray | None, dtype: str
) -> ArrayCheck:
    """One array of a module computed at ``dtype`` against the float64 reference: the norm-wise
    rule at float64, the baseline rule below (see the module docstring). ``base`` is the
    baseline's array (None at float64, or when it has none)."""
    note = ""
    if a is None:
        a, note = np.full(ref.shape, np.nan), "not returned"
    elif a.shape != ref.shape:
        note = f"shape {a.shape}, expected {ref.shape}"
    err = max_abs_diff(a, ref)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    baseline: float | None = None
    if dtype == "float64":
        allowed = RTOL * scale + ATOL
        ratio = err / allowed
    else:
        baseline = max_abs_diff(base, ref) if base is not None else math.inf
        floor = max(baseline, UNIT[dtype] * scale)
        allowed = FACTOR * floor + ATOL
        ratio = err / floor if floor > 0 else (0.0 if err == 0 else math.inf)
    idx = _argmax(np.abs(a - ref)) if math.isfinite(err) and ref.size else None
    return ArrayCheck(
        name=name,
        passed=err <= allowed,
        rel_error=rel,
        abs_error=err,
        tolerance=allowed,
        scale=scale,
        index=idx,
        actual=None if idx is None else float(a[idx]),
        expected=None if idx is None else float(ref[idx]),
        dtype=dtype,
        note=note,
        baseline=baseline,
        ratio=ratio,
    )


def compare_module_arrays(
    arrays: dict[str, np.ndarray], ref: dict[str, np.ndarray], base: dict[str, np.ndarray] | None, dtype: str
) -> list[ArrayCheck]:
    """Every reference array of a module judged (compare_module_array), in the reference's order
    (the forward first)."""
    return [
        compare_module_array(n, arrays.get(n), r, None if base is None else base.get(n), dtype)
        for n, r in ref.items()
    ]
