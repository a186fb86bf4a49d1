"""The errors of manual_bptt and the argument checks shared by every module. numpy only.

    TooLargeError      an allocation over ``max_bytes`` was refused before it was made
    NonFiniteError     a state, logit or gradient stopped being finite (overflow), at a named step
    check_bytes        refuse an array of a given shape and item size over ``max_bytes``
    integer_arg        one home for "an integer >= least" arguments (bool refused)
    check_max_bytes    a non-negative integer byte limit
    QUIET              the np.errstate under which every computation runs: overflow is found by
                       the checks below, never reported as a numpy warning
    all_finite         whether arrays hold NaN or inf, by one sum per array
    first_nonfinite    the one check for a sequence of steps: the first (or last) step not finite
    check_steps_finite, check_grads_finite    NonFiniteError naming that step, or that gradient

A size is checked *before* the array is allocated, and the message carries the byte count,
the limit and the name of the argument that raises it (``max_bytes``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Default limit, in bytes, of any single array a call may allocate (1 GiB).
DEFAULT_MAX_BYTES = 1 << 30
#: Floating-point conditions that numpy would only warn about. Every computation runs under
#: ``np.errstate(**QUIET)``: a state, logit or error signal that stops being finite is found by
#: the checks below and named by NonFiniteError instead. (exp(-a) of a saturated gate overflows
#: to inf, and 1 / (1 + inf) = 0 is the right sigmoid: no error at all.)
QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


class TooLargeError(ValueError):
    """An array would exceed the size limit (``max_bytes``); nothing was allocated."""


class NonFiniteError(FloatingPointError):
    """A value that must be finite is not: the computation overflowed.

    Attributes:
        what: the quantity, e.g. "s_t" (the state), "o_t" (the logits), "dE/da_t".
        step: the first time step t at which it is not finite (None when not per step).
    """

    def __init__(self, message: str, *, what: str, step: int | None) -> None:
        super().__init__(message)
        self.what = what
        self.step = step


def integer_arg(name: str, value: object, least: int = 0) -> int:
    """``value`` as an int when it is an integer (not a bool) >= ``least``.

    Anything else raises ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {int(value)}")
    return int(value)


def check_max_bytes(max_bytes: object) -> int:
    """A non-negative int size limit in bytes."""
    return integer_arg("max_bytes", max_bytes, 0)


def nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes of an array of ``shape`` and ``itemsize``, as an exact Python int (no overflow)."""
    return math.prod(map(int, shape)) * int(itemsize)


def check_bytes(what: str, shape: tuple[int, ...], dtype: object, max_bytes: int, hint: str = "") -> None:
    """Raise TooLargeError when an array of ``shape`` and ``dtype`` would take more than ``max_bytes``.

    Args:
        what: what the array is, for the message (e.g. "bptt: the states s_t, (T + 1, B, H)").
        shape: its shape.  dtype: its dtype (anything np.dtype accepts).
        max_bytes: the limit.  hint: what the caller can do instead (appended to the message).
    """
    size = nbytes(shape, np.dtype(dtype).itemsize)
    if size > max_bytes:
        raise TooLargeError(
            f"{what}: an array of shape {tuple(int(n) for n in shape)} would take {size} bytes "
            f"({size / 2**20:.1f} MiB), over the limit of {max_bytes} bytes ({max_bytes / 2**20:.1f} MiB, "
            f"max_bytes); nothing was allocated" + (f". {hint}" if hint else "")
        )


def all_finite(*arrays: np.ndarray | None) -> bool:
    """True when no array (None is skipped) holds NaN or inf; exact, and one sum per array.

    A NaN or an infinity anywhere makes the sum NaN or infinite, so a finite sum of the sums
    proves every entry finite; only a sum that overflowed although every entry is finite
    needs the exact elementwise test, which then decides. The sums cost no temporary array,
    unlike np.isfinite(a).all(). Call it inside np.errstate(over="ignore"): finite entries near
    the largest float may sum to inf, which numpy would report as a RuntimeWarning.
    """
    total = 0.0
    for a in arrays:
        if a is not None:
            total += float(np.add.reduce(a, axis=None))
    if math.isfinite(total):
        return True
    return all(a is None or bool(np.isfinite(a).all()) for a in arrays)


def first_nonfinite(steps: np.ndarray, *, last: bool = False) -> int | None:
    """The first index t (the last one, with ``last``) at which steps (n, ...) holds NaN or inf,
    or None when every entry is finite.

    One sum over the array decides (all_finite); the search for the step runs only when it
    fails. Call it inside ``np.errstate(**QUIET)`` (see all_finite).
    """
    if all_finite(steps):
        return None
    bad = np.flatnonzero(~np.isfinite(steps).reshape(len(steps), -1).all(axis=1))
    return int(bad[-1] if last else bad[0])


def check_steps_finite(what: str, block: np.ndarray, start: int, *, last_first: bool = False) -> None:
    """Raise NonFiniteError naming the first step of ``block`` that holds NaN or inf.

    Args:
        what: the quantity, e.g. "s_t" (the states), "o_t" (the logits), "dE/da_t".
        block: (n, ...) the values of the steps start, ..., start + n - 1.
        start: the step of block[0].
        last_first: the block was computed from its last step down (the backward pass):
            name the highest bad step, the first one reached.
    """
    if all_finite(block):  # the common case, at once (first_nonfinite decides the same)
        return
    t = start + first_nonfinite(block, last=last_first)
    order = "the first reached by the backward pass, which runs from t = T - 1 down" if last_first else (
        "the first such step"
    )
    raise NonFiniteError(
        f"{what}: not finite (NaN or inf) at step t = {t} ({order}): the computation overflowed in "
        f"{block.dtype}. The recursion grows without bound over these steps (e.g. the identity or relu "
        f"activation with W of spectral radius above 1); use shorter sequences (truncate=, or chunks "
        f"carried by s0=), smaller weights, or float64",
        what=what,
        step=t,
    )


def check_grads_finite(arrays: dict[str, np.ndarray | None]) -> None:
    """Raise NonFiniteError naming the first gradient (e.g. "dE/dW") that holds NaN or inf.

    One sum per array unless one is not finite; call it inside ``np.errstate(**QUIET)``.
    """
    if all_finite(*arrays.values()):
        return
    for name, a in arrays.items():
        if a is not None and not np.isfinite(a).all():
            raise NonFiniteError(
                f"{name}: not finite (NaN or inf): the sum over the steps overflowed in {a.dtype}; "
                "use shorter sequences, smaller weights, or float64",
                what=name,
                step=None,
            )
