"""The parameters of an Elman RNN with a softmax output layer.

    a_t = U x_t + W s_{t-1} + b        s_t = f(a_t)
    o_t = V s_t + c                    y_hat_t = softmax(o_t)

Shapes: U (H, D), W (H, H), V (K, H), b (H,) or None, c (K,) or None.
"""

from __future__ import annotations

import functools
import numbers
import operator
from dataclasses import dataclass, fields

import numpy as np

from .errors import all_finite, integer_arg

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def array_problem(value: object) -> str | None:
    """Why ``value`` must not be read as a plain array, or None.

    A numpy masked array would lose its mask in np.asarray; a tensor that requires grad
    cannot be converted (found by duck typing: this package never imports torch).
    """
    if isinstance(value, np.ma.MaskedArray):
        return (
            "a numpy masked array, whose mask would be silently dropped: pass the plain data "
            "(np.ma.getdata) and give which targets count as mask= (a bool array)"
        )
    if hasattr(value, "detach") and getattr(value, "requires_grad", False) is True:
        return f"a {type(value).__name__} that requires grad: pass value.detach().numpy()"
    return None


def _frozen_copy(name: str, value: object, dtype: np.dtype | None = None) -> np.ndarray:
    """A read-only copy of ``value`` as a real floating array (the caller's array is never kept)."""
    problem = array_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists, foreign array types, and the like
        raise ValueError(f"{name}: cannot be read as a numeric array ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "iuf":  # not bool, complex, timedelta64, datetime64, str or object
        raise ValueError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in _FLOAT_DTYPES else np.dtype(np.float64)
    out = np.array(arr, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """The names of the dataclass fields of ``cls`` in order (ClassVars excluded), read once."""
    return tuple(f.name for f in fields(cls))


@functools.cache
def _field_values(cls: type) -> operator.attrgetter:
    """A function of an instance of ``cls`` that returns its fields' values, in order (made once:
    the gradient functions read the parameters' arrays on every call)."""
    return operator.attrgetter(*_field_names(cls))


class ParamsArrays:
    """What every params type shares (RNNParams, GRUParams, LSTMParams): adopting computed arrays
    without a copy, and the sizes D and K and the dtype read from the fields U (. , D), V (K, H)."""

    @classmethod
    def _adopt(cls, **arrays: np.ndarray | None):
        """An instance that keeps the given float arrays instead of copying them.

        For arrays the library has just computed (bptt's gradients, in the shapes of the
        parameters) and keeps no other reference to: copying them would only cost time. They
        are made read-only here.
        """
        self = cls.__new__(cls)
        for name in _field_names(cls):
            value = arrays.get(name)
            if value is not None:
                value.flags.writeable = False
            object.__setattr__(self, name, value)
        return self

    def _nonfinite_names(self) -> list[str]:
        """The names of the arrays that hold NaN or inf, in field order; [] when every entry is finite.

        "Every entry is finite" is decided once per instance and remembered (the one exception to
        "no state": a fact about arrays that cannot change). The arrays are read-only, so the answer
        cannot change, and bptt and the other gradient functions ask it on every call. An array whose
        writeable flag was set back to True by hand is not trusted: while any array is writeable,
        the answer is computed afresh on every call, and what was remembered is forgotten (an
        array written and made read-only again between two calls is not noticed).
        """
        arrays = self.arrays()
        writeable = any(a.flags.writeable for a in arrays)
        if writeable:  # the arrays may have been written: forget what was remembered
            self.__dict__.pop("_all_finite", None)
        finite = self.__dict__.get("_all_finite")
        if finite is None:
            # finite entries near the largest float may sum to inf: all_finite decides, no warning
            with np.errstate(over="ignore", invalid="ignore"):
                finite = all_finite(*arrays)
            if not writeable:
                object.__setattr__(self, "_all_finite", finite)
        if finite:
            return []
        return [name for name, a in self.items() if not np.isfinite(a).all()]

    def items(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs of the non-None arrays, in field order (RNNParams: U, W, V, b, c;
        GRUParams, LSTMParams: U, W, b_ih, b_hh, V, c)."""
        pairs = ((name, getattr(self, name)) for name in _field_names(type(self)))
        return [(name, a) for name, a in pairs if a is not None]

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The non-None arrays, in field order (see items)."""
        return tuple([a for a in _field_values(type(self))(self) if a is not None])

    @property
    def input_size(self) -> int:
        """D: the input dimension (the vocabulary size for token inputs)."""
        return int(self.U.shape[1])

    @property
    def output_size(self) -> int:
        """K: the number of classes."""
        return int(self.V.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The common floating dtype of the arrays (float32 only if all are float32)."""
        return np.result_type(*self.arrays())


@dataclass(frozen=True, eq=False)
class RNNParams(ParamsArrays):
    """Parameters (or gradients, which live in the same space) of the RNN.

    Attributes:
        U: (H, D) input-to-hidden weights; for token inputs D is the vocabulary size.
        W: (H, H) hidden-to-hidden weights.
        V: (K, H) hidden-to-output weights.
        b: (H,) hidden bias, or None for no bias term.
        c: (K,) output bias, or None for no bias term.

    The arrays are read-only copies of what was passed in, so an RNNParams can never
    change after construction and never aliases a caller's array. Shapes are checked
    here; finiteness is checked by the functions that compute with the parameters
    (gradients may legitimately overflow, parameters may not).
    """

    U: np.ndarray
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray | None = None
    c: np.ndarray | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                if f.name in ("U", "W", "V"):
                    raise ValueError(f"{f.name}: required, got None")
                continue
            object.__setattr__(self, f.name, _frozen_copy(f.name, value))
        U, W, V, b, c = self.U, self.W, self.V, self.b, self.c
        if U.ndim != 2:
            raise ValueError(f"U: expected shape (H, D), got {U.shape}")
        H, D = U.shape
        if H == 0 or D == 0:
            raise ValueError(f"U: H and D must be at least 1, got shape {U.shape}")
        if W.shape != (H, H):
            raise ValueError(f"W: expected shape (H, H) = ({H}, {H}) to match U, got {W.shape}")
        if V.ndim != 2 or V.shape[1] != H or V.shape[0] == 0:
            raise ValueError(f"V: expected shape (K, H) with H = {H} to match U, got {V.shape}")
        if b is not None and b.shape != (H,):
            raise ValueError(f"b: expected shape (H,) = ({H},), got {b.shape}")
        if c is not None and c.shape != (V.shape[0],):
            raise ValueError(f"c: expected shape (K,) = ({V.shape[0]},), got {c.shape}")

    # -- sizes -----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        """H: the state dimension."""
        return int(self.U.shape[0])

    @property
    def bias_names(self) -> tuple[str, ...]:
        """The names of the cell's biases: ("b",), or () without b."""
        return () if self.b is None else ("b",)

    def astype(self, dtype: np.dtype | type) -> RNNParams:
        """A copy with every array cast to ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype)
        return RNNParams(**{name: a.astype(dt) for name, a in self.items()})

    def replace(self, **arrays: np.ndarray | None) -> RNNParams:
        """A copy with some arrays replaced, e.g. ``p.replace(W=W_new)``."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(arrays) - set(current)
        if unknown:
            raise ValueError(f"replace: unknown parameter names {sorted(unknown)}")
        current.update(arrays)
        return RNNParams(**current)

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
    ) -> RNNParams:
        """Random parameters: U, W, V ~ N(0, weight_scale^2 / fan_in), biases ~ N(0, 0.1^2).

        Args:
            input_size: D.  hidden_size: H.  output_size: K.  All at least 1.
            seed: seed of the numpy Generator, an integer >= 0 (None: fresh entropy).
            bias: include b (H,) and c (K,).
            weight_scale: multiplies every weight matrix; the spectral radius of W is close
                to ``weight_scale`` for large H, so values below 1 give vanishing and above
                1 exploding gradients. A finite real number >= 0.
            dtype: float32 or float64.
        """
        D = integer_arg("input_size", input_size, 1)
        H = integer_arg("hidden_size", hidden_size, 1)
        K = integer_arg("output_size", output_size, 1)
        seed, weight_scale, dt = init_args(seed, weight_scale, dtype)
        rng = np.random.default_rng(seed)
        p = cls(
            U=rng.standard_normal((H, D)) * (weight_scale / np.sqrt(D)),
            W=rng.standard_normal((H, H)) * (weight_scale / np.sqrt(H)),
            V=rng.standard_normal((K, H)) * (weight_scale / np.sqrt(H)),
            b=rng.standard_normal(H) * 0.1 if bias else None,
            c=rng.standard_normal(K) * 0.1 if bias else None,
        )
        return p.astype(dt)


def _float_dtype(dtype: object) -> np.dtype:
    """float32 or float64 as a numpy dtype; ValueError naming ``dtype`` otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def init_args(seed: object, weight_scale: object, dtype: object) -> tuple[int | None, float, np.dtype]:
    """The checked arguments every params type's ``init`` shares: (seed, weight_scale, dtype).

    seed: None or an integer >= 0 (not a bool); weight_scale: a finite real number >= 0 (not a
    bool); dtype: float32 or float64. Anything else is a ValueError naming the argument.
    """
    dt = _float_dtype(dtype)
    if seed is not None:
        seed = integer_arg("seed", seed, 0)
    if (
        isinstance(weight_scale, bool)
        or not isinstance(weight_scale, numbers.Real)
        or not np.isfinite(weight_scale)
        or weight_scale < 0
    ):
        raise ValueError(f"weight_scale: expected a finite real number >= 0, got {weight_scale!r}")
    return seed, float(weight_scale), dt
