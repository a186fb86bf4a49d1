"""Checking and normalizing the inputs shared by every gradient method.

Every public function (bptt, decompose, rtrl, ...) accepts the same input forms; this
module turns them into one time-major batch, raising ``ValueError`` that names the
argument for anything malformed. The caller's arrays are only read, never written.

Internal layout is time-major: tokens (T, B), dense inputs (T, B, D), labels (T, B).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np

from .activations import Activation, get_activation
from .gated_params import GRUParams, LSTMParams
from .params import RNNParams

REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True, eq=False)
class Batch:
    """Validated inputs in time-major layout.

    Attributes:
        batched: whether xs was given with a batch axis ((B, T) / (B, T, D)).
        T, B, D, H, K: sizes (B = 1 for unbatched input).
        tokens: (T, B) int64 token ids in [0, D), or None for dense input.
        X: (T, B, D) dense inputs in the compute dtype, or None for token input: the
            time-major view of the caller's array when that already has the compute dtype
            (never written to; see owned()), else of a converted copy.
        Y: (T, B) int64 labels in [0, K), or None when no labels were given.
        weight: (T, B) weight of E_t for each (t, batch row): mask / normalizer, so that
            E = sum_{t,b} weight[t, b] * CE[t, b]. None when no labels were given.
        s0: (B, H) initial state in the compute dtype (zeros when not given).
        s0_shape: the shape ds0 is returned in: s0's shape as given, else (H,) or (B, H).
        dtype: compute dtype, float32 only when every floating input is float32.
        act: the activation.
    """

    batched: bool
    T: int
    B: int
    D: int
    H: int
    K: int
    tokens: np.ndarray | None
    X: np.ndarray | None
    Y: np.ndarray | None
    weight: np.ndarray | None
    s0: np.ndarray
    s0_shape: tuple[int, ...]
    dtype: np.dtype
    act: Activation

    def owned(self) -> Batch:
        """This batch with arrays that share no memory with the caller's.

        For results that outlive the call and read the inputs later (decompose's lazy terms),
        so that changing xs or ys afterwards cannot change them.
        """
        copy = {name: getattr(self, name) for name in ("tokens", "X", "Y")}
        return replace(self, **{k: None if v is None else v.copy() for k, v in copy.items()})

    def to_batch_first(self, a: np.ndarray) -> np.ndarray:
        """(T, B, ...) -> the caller's layout: (B, T, ...) if batched, else (T, ...)."""
        return np.ascontiguousarray(a.swapaxes(0, 1)) if self.batched else a[:, 0]

    def fold_ds0(self, ds0: np.ndarray) -> np.ndarray:
        """(B, H) gradient of the per-row initial states -> the shape of s0 as given."""
        if self.s0_shape == (self.H,):
            return ds0.sum(axis=0) if self.batched else ds0[0]
        return ds0


def _check_finite(name: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def _as_array(name: str, value: object) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name}: required, got None")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: cannot be read as a numeric array (ragged or non-numeric)")
    return arr


def _is_int(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_


def check_params(p: RNNParams) -> None:
    """Raise ValueError if ``p`` is not an RNNParams or holds NaN or inf."""
    if not isinstance(p, (RNNParams, GRUParams, LSTMParams)):
        raise ValueError(f"p: expected manual_bptt.RNNParams, got {type(p).__name__}")
    for name, a in p.items():
        _check_finite(f"p.{name}", a)


def check_truncate(truncate: object) -> int | None:
    """None, or a non-negative int tau."""
    if truncate is None:
        return None
    if isinstance(truncate, bool) or not isinstance(truncate, numbers.Integral):
        raise ValueError(f"truncate: expected None or an integer >= 0, got {truncate!r}")
    if truncate < 0:
        raise ValueError(f"truncate: expected None or an integer >= 0, got {truncate}")
    return int(truncate)


def check_max_bytes(max_bytes: object) -> int:
    """A non-negative int size limit in bytes."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) or max_bytes < 0:
        raise ValueError(f"max_bytes: expected a non-negative integer, got {max_bytes!r}")
    return int(max_bytes)


def check_reduction(reduction: object) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def prepare(
    p: RNNParams,
    xs: object,
    ys: object | None,
    *,
    activation: str,
    s0: object | None,
    reduction: str = "sum",
    mask: object | None = None,
    labels_required: bool = True,
) -> Batch:
    """Validate every input and return a time-major Batch.

    Args:
        p: RNNParams with U (H, D), W (H, H), V (K, H), b (H,)|None, c (K,)|None.
        xs: token ids, int (T,) or (B, T), each in [0, D); or dense float (T, D) or (B, T, D).
        ys: int labels in [0, K), same shape as the token-id view of xs ((T,) or (B, T));
            None to run without a loss (forward-only uses).
        activation: one of "tanh", "sigmoid", "relu", "identity".
        s0: None (zeros), (H,), or (B, H) when xs is batched. An (H,) s0 with batched xs is
            shared by every sequence.
        reduction: "sum" or "mean" (mean over the counted targets).
        mask: None or bool, same shape as ys; False targets contribute nothing.
        labels_required: when True (every gradient function), ys=None is an error.
    """
    act = get_activation(activation)
    if ys is None and labels_required:
        raise ValueError("ys: required (integer labels in [0, K)), got None")
    check_params(p)
    reduction = check_reduction(reduction)
    H, D, K = p.hidden_size, p.input_size, p.output_size

    xs_arr = _as_array("xs", xs)
    if _is_int(xs_arr):
        if xs_arr.ndim not in (1, 2):
            raise ValueError(f"xs: token ids must have shape (T,) or (B, T), got {xs_arr.shape}")
        batched = xs_arr.ndim == 2
        seq_shape = xs_arr.shape
    elif np.issubdtype(xs_arr.dtype, np.floating):
        if xs_arr.ndim not in (2, 3):
            raise ValueError(f"xs: dense inputs must have shape (T, D) or (B, T, D), got {xs_arr.shape}")
        if xs_arr.shape[-1] != D:
            raise ValueError(f"xs: last axis is {xs_arr.shape[-1]} but U has D = {D} columns")
        batched = xs_arr.ndim == 3
        seq_shape = xs_arr.shape[:-1]
    else:
        raise ValueError(
            f"xs: expected integer token ids or floating dense vectors, got dtype {xs_arr.dtype}"
        )
    B, T = seq_shape if batched else (1, seq_shape[0])
    if T == 0:
        raise ValueError("xs: empty sequence (T = 0)")
    if B == 0:
        raise ValueError("xs: empty batch (B = 0)")

    floats = [p.dtype]
    if not _is_int(xs_arr):
        floats.append(xs_arr.dtype)

    # s0
    s0_arr = None
    if s0 is not None:
        s0_arr = _as_array("s0", s0)
        if not (np.issubdtype(s0_arr.dtype, np.floating) or _is_int(s0_arr)):
            raise ValueError(f"s0: expected a real numeric array, got dtype {s0_arr.dtype}")
        allowed = [(H,)] + ([(B, H)] if batched else [])
        if s0_arr.shape not in allowed:
            want = " or ".join(str(s) for s in allowed)
            raise ValueError(f"s0: expected shape {want} (H = {H}), got {s0_arr.shape}")
        _check_finite("s0", s0_arr)
        if np.issubdtype(s0_arr.dtype, np.floating):
            floats.append(s0_arr.dtype)
    dtype = np.result_type(*floats)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)

    tokens = X = None
    if _is_int(xs_arr):
        if xs_arr.min() < 0 or xs_arr.max() >= D:
            bad = np.argwhere((xs_arr < 0) | (xs_arr >= D))[0]
            raise ValueError(
                f"xs: token id {int(xs_arr[tuple(bad)])} at index {tuple(int(i) for i in bad)} "
                f"is outside [0, D) with D = {D}"
            )
        tok = xs_arr if batched else xs_arr[None, :]
        tokens = np.ascontiguousarray(tok.T, dtype=np.int64)
    else:
        _check_finite("xs", xs_arr)
        dense = xs_arr if batched else xs_arr[None]
        X = np.asarray(dense, dtype=dtype).swapaxes(0, 1)  # a view when no conversion is needed

    if s0_arr is None:
        s0_bh = np.zeros((B, H), dtype=dtype)
        s0_shape = (B, H) if batched else (H,)
    else:
        s0_bh = np.array(np.broadcast_to(s0_arr, (B, H)), dtype=dtype)
        s0_shape = s0_arr.shape

    Y = weight = None
    if ys is not None:
        ys_arr = _as_array("ys", ys)
        if not _is_int(ys_arr):
            raise ValueError(f"ys: expected integer class labels, got dtype {ys_arr.dtype}")
        expect = (B, T) if batched else (T,)
        if ys_arr.shape != expect:
            raise ValueError(f"ys: expected shape {expect} to match xs, got {ys_arr.shape}")
        if ys_arr.min() < 0 or ys_arr.max() >= K:
            bad = np.argwhere((ys_arr < 0) | (ys_arr >= K))[0]
            raise ValueError(
                f"ys: label {int(ys_arr[tuple(bad)])} at index {tuple(int(i) for i in bad)} "
                f"is outside [0, K) with K = {K}"
            )
        Y = np.ascontiguousarray((ys_arr if batched else ys_arr[None]).T, dtype=np.int64)
        if mask is None:
            counted = np.ones((T, B), dtype=bool)
        else:
            mask_arr = _as_array("mask", mask)
            if mask_arr.dtype != np.bool_:
                raise ValueError(f"mask: expected a bool array, got dtype {mask_arr.dtype}")
            if mask_arr.shape != expect:
                raise ValueError(f"mask: expected shape {expect} to match ys, got {mask_arr.shape}")
            counted = (mask_arr if batched else mask_arr[None]).T
        n = int(counted.sum())
        if reduction == "mean" and n == 0:
            raise ValueError("mask: no target is counted, so reduction='mean' is undefined")
        weight = counted.astype(dtype)
        if reduction == "mean":
            weight /= n
    elif mask is not None:
        raise ValueError("mask: given without ys")

    return Batch(
        batched=batched,
        T=T,
        B=B,
        D=D,
        H=H,
        K=K,
        tokens=tokens,
        X=X,
        Y=Y,
        weight=weight,
        s0=s0_bh,
        s0_shape=tuple(s0_shape),
        dtype=np.dtype(dtype),
        act=act,
    )
