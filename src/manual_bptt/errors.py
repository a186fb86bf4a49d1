"""The errors of manual_bptt and the argument checks shared by every module. numpy only.

    TooLargeError      an allocation over ``max_bytes`` was refused before it was made
    NonFiniteError     a state, logit or gradient stopped being finite (overflow), at a named step
    check_bytes        refuse an array of a given shape and item size over ``max_bytes``
    integer_arg        one home for "an integer >= least" arguments (bool refused)
    check_max_bytes    a non-negative integer byte limit

A size is checked *before* the array is allocated, and the message carries the byte count,
the limit and the name of the argument that raises it (``max_bytes``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Default limit, in bytes, of any single array a call may allocate (1 GiB).
DEFAULT_MAX_BYTES = 1 << 30


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
