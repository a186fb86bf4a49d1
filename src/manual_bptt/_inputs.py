"""Checking and normalizing the inputs shared by every gradient method.

Every public function (bptt, decompose, rtrl, ...) accepts the same input forms; this
module turns them into one time-major batch, raising ``ValueError`` that names the
argument for anything malformed. The caller's arrays are only read, never written.

Internal layout is time-major: tokens (T, B), dense inputs (T, B, D), labels (T, B).

prepare reads the inputs in two passes: first their shapes and dtypes alone (cheap, so that
a call too large for ``max_bytes`` is refused before any value is scanned or copied), then
their values (ranges, finiteness, the mask).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import errors
from .activations import Activation, get_activation
from .gated_params import GRUParams, LSTMParams
from .params import RNNParams, array_problem

REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class Sizes:
    """The sizes of a call, known from the shapes and dtypes of its inputs alone.

    Attributes:
        T, B, D, H, K: sizes (B = 1 for unbatched input).
        batched: whether xs has a batch axis.  tokens: whether xs holds token ids.
        dtype: the compute dtype (float32 only when every floating input is float32).
    """

    T: int
    B: int
    D: int
    H: int
    K: int
    batched: bool
    tokens: bool
    dtype: np.dtype


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
        Y: (T, B) int64 labels in [0, K), or None when no labels were given. A label where
            the mask is False (padding, any integer) is stored as 0: its weight is 0.
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

    def state_out(self, s: np.ndarray) -> np.ndarray:
        """A state (B, H) in the caller's layout, a copy: (B, H) if batched, else (H,)."""
        return s.copy() if self.batched else s[0].copy()


def check_finite_array(name: str, a: np.ndarray) -> None:
    """ValueError naming ``name`` and the index of its first NaN or inf, if ``a`` holds one."""
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def _as_array(name: str, value: object) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name}: required, got None")
    problem = array_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists, tensors that require grad, and the like
        raise ValueError(f"{name}: cannot be read as an array ({type(exc).__name__}: {exc})") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: cannot be read as a numeric array (ragged or non-numeric)")
    return arr


def real_array(name: str, value: object) -> np.ndarray:
    """``value`` as a real numeric array, read only: integers or floats (not bool, complex,
    timedelta64, datetime64, strings or objects). A masked array (whose mask np.asarray would
    drop), a tensor that requires grad, or anything numpy cannot read is a ValueError naming
    ``name``, in the words the other inputs' checks use."""
    problem = array_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name}: cannot be read as a numeric array ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return arr


def _is_int(a: np.ndarray) -> bool:
    """Signed or unsigned integers (not bool, and not timedelta64, which numpy files under integer)."""
    return a.dtype.kind in "iu"


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def check_params(p: RNNParams | GRUParams | LSTMParams) -> None:
    """Raise ValueError naming the first array of ``p`` that holds NaN or inf.

    ``p`` is one of the params types (the callers found its row in manual_bptt.kinds)."""
    bad = p._nonfinite_names()
    if bad:
        check_finite_array(f"p.{bad[0]}", getattr(p, bad[0]))


def check_truncate(truncate: object) -> int | None:
    """None, or a non-negative int tau."""
    if truncate is None:
        return None
    try:
        return errors.integer_arg("truncate", truncate, 0)
    except ValueError:
        raise ValueError(f"truncate: expected None or an integer >= 0, got {truncate!r}") from None


def check_max_bytes(max_bytes: object) -> int:
    """A non-negative int size limit in bytes (see errors.check_max_bytes)."""
    return errors.check_max_bytes(max_bytes)


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
    size_check: Callable[[Sizes], None] | None = None,
) -> Batch:
    """Validate every input and return a time-major Batch.

    Args:
        p: RNNParams with U (H, D), W (H, H), V (K, H), b (H,)|None, c (K,)|None.
        xs: token ids, int (T,) or (B, T), each in [0, D); or dense float (T, D) or (B, T, D).
        ys: int labels, same shape as the token-id view of xs ((T,) or (B, T)), in [0, K)
            where the mask is True; any integer where it is False (padding such as -100).
            None to run without a loss (forward-only uses).
        activation: one of "tanh", "sigmoid", "relu", "identity".
        s0: None (zeros), (H,), or (B, H) when xs is batched. An (H,) s0 with batched xs is
            shared by every sequence.
        reduction: "sum" or "mean" (mean over the counted targets).
        mask: None or bool, same shape as ys; False targets contribute nothing.
        labels_required: when True (every gradient function), ys=None is an error.
        size_check: called with the Sizes once the shapes are read, before any value of the
            inputs is scanned or copied: where a call too large to run is refused.
    """
    act = get_activation(activation)
    if ys is None and labels_required:
        raise ValueError("ys: required (integer labels in [0, K)), got None")
    check_params(p)
    reduction = check_reduction(reduction)
    xs_arr, batched, B, T = _read_xs(p, xs)
    s0_arr = _read_s0(s0, p.hidden_size, B, batched)
    floats = [p.dtype] + [a.dtype for a in (xs_arr, s0_arr) if a is not None and _is_float(a)]
    dtype = np.dtype(np.result_type(*floats))
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    sizes = Sizes(T=T, B=B, D=p.input_size, H=p.hidden_size, K=p.output_size, batched=batched,
                  tokens=_is_int(xs_arr), dtype=dtype)
    if size_check is not None:
        size_check(sizes)
    tokens, X = _scan_xs(xs_arr, sizes)
    s0_bh, s0_shape = _initial_state(s0_arr, sizes)
    Y = weight = None
    if ys is not None:
        Y, weight = _targets(ys, mask, reduction, sizes, xs_arr)
    elif mask is not None:
        raise ValueError("mask: given without ys")
    return Batch(
        batched=batched,
        T=T,
        B=B,
        D=sizes.D,
        H=sizes.H,
        K=sizes.K,
        tokens=tokens,
        X=X,
        Y=Y,
        weight=weight,
        s0=s0_bh,
        s0_shape=tuple(s0_shape),
        dtype=dtype,
        act=act,
    )


def _read_xs(p: RNNParams, xs: object) -> tuple[np.ndarray, bool, int, int]:
    """xs as an array, from its shape and dtype alone: (xs, batched, B, T)."""
    D = p.input_size
    xs_arr = _as_array("xs", xs)
    if _is_int(xs_arr):
        if xs_arr.ndim not in (1, 2):
            raise ValueError(f"xs: token ids must have shape (T,) or (B, T), got {xs_arr.shape}")
        batched = xs_arr.ndim == 2
        seq_shape = xs_arr.shape
    elif _is_float(xs_arr):
        if xs_arr.ndim not in (2, 3):
            raise ValueError(
                f"xs: dense inputs must have shape (T, D) or (B, T, D), got {xs_arr.shape}"
                + (f"; token ids must be an integer array (e.g. xs.astype(np.int64)){_TOKEN_IDS}"
                   if xs_arr.ndim == 1 else "")
            )
        if xs_arr.shape[-1] != D:
            hint = ""
            if xs_arr.ndim == 2 and _whole_numbers(xs_arr):
                hint = f"; a float array is read as dense vectors: pass token ids as integers{_TOKEN_IDS}"
            raise ValueError(f"xs: last axis is {xs_arr.shape[-1]} but U has D = {D} columns{hint}")
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
    return xs_arr, batched, int(B), int(T)


_TOKEN_IDS = " (shape (T,) or (B, T), values in [0, D))"


def _whole_numbers(a: np.ndarray) -> bool:
    """Every entry of the float array ``a`` is a whole number (it may hold token ids)."""
    return bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))


def _one_hot_rows(a: np.ndarray) -> bool:
    """Every row (last axis) of the integer array ``a`` holds one 1 and otherwise 0s."""
    return bool(np.all((a == 0) | (a == 1)) and np.all(a.sum(axis=-1) == 1))


def _misread_xs(xs_arr: np.ndarray, ys_arr: np.ndarray, sizes: Sizes) -> str | None:
    """Why xs, not ys, is to blame for a ys of the wrong shape, or None.

    Only for a ys whose shape does not match xs as read, but matches another reading of xs:
    - float xs of shape (B, T) (read as dense (T, D)) with ys of that same shape: token ids
      passed as floats;
    - integer xs of shape (T, D) with D = U's columns and one-hot rows (read as (B, T) token
      ids) with ys of shape (T,): one-hot vectors passed as integers.
    Genuine (B, T) token ids come with (B, T) labels, so they never reach here.
    """
    shape = xs_arr.shape
    if not sizes.tokens and xs_arr.ndim == 2 and ys_arr.shape == shape:
        return (
            f"xs: a float array of shape {shape} is read as dense vectors (T, D) = {shape}, which "
            f"needs ys of shape ({shape[0]},), but ys has the shape of xs, as for token ids: "
            f"pass token ids as an integer array (e.g. xs.astype(np.int64)){_TOKEN_IDS}"
        )
    if (sizes.tokens and xs_arr.ndim == 2 and shape[1] == sizes.D and ys_arr.shape == (shape[0],)
            and _one_hot_rows(xs_arr)):
        return (
            f"xs: an integer array of shape {shape} is read as (B, T) token ids, but its shape is "
            f"(T, D) with D = {sizes.D} (U's columns), every row is one-hot (0/1 entries, a single 1) "
            f"and ys has shape ({shape[0]},): to pass one-hot vectors, give them as float dense "
            f"input (xs.astype(np.float64)), or as token ids (xs.argmax(axis=-1))"
        )
    return None


def _read_s0(s0: object | None, H: int, B: int, batched: bool) -> np.ndarray | None:
    """s0 as an array of an allowed shape ((H,), or (B, H) for batched xs), or None."""
    if s0 is None:
        return None
    s0_arr = _as_array("s0", s0)
    if not (_is_float(s0_arr) or _is_int(s0_arr)):
        raise ValueError(f"s0: expected a real numeric array, got dtype {s0_arr.dtype}")
    allowed = [(H,)] + ([(B, H)] if batched else [])
    if s0_arr.shape not in allowed:
        want = " or ".join(str(s) for s in allowed)
        raise ValueError(f"s0: expected shape {want} (H = {H}), got {s0_arr.shape}")
    return s0_arr


def _scan_xs(xs_arr: np.ndarray, sizes: Sizes) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(tokens (T, B) int64, None) for token ids in [0, D), or (None, X (T, B, D)) for finite dense input."""
    D = sizes.D
    if sizes.tokens:
        if not _all_in_range(xs_arr, D):
            bad = np.argwhere((xs_arr < 0) | (xs_arr >= D))[0]
            raise ValueError(
                f"xs: token id {int(xs_arr[tuple(bad)])} at index {tuple(int(i) for i in bad)} "
                f"is outside [0, D) with D = {D}"
            )
        tok = xs_arr if sizes.batched else xs_arr[None, :]
        return np.ascontiguousarray(tok.T, dtype=np.int64), None
    check_finite_array("xs", xs_arr)
    dense = xs_arr if sizes.batched else xs_arr[None]
    return None, np.asarray(dense, dtype=sizes.dtype).swapaxes(0, 1)  # a view when no conversion is needed


def _initial_state(s0_arr: np.ndarray | None, sizes: Sizes) -> tuple[np.ndarray, tuple[int, ...]]:
    """(s0 as (B, H) in the compute dtype, the shape ds0 is returned in)."""
    B, H = sizes.B, sizes.H
    if s0_arr is None:
        return np.zeros((B, H), dtype=sizes.dtype), ((B, H) if sizes.batched else (H,))
    check_finite_array("s0", s0_arr)
    return np.array(np.broadcast_to(s0_arr, (B, H)), dtype=sizes.dtype), s0_arr.shape


def _targets(
    ys: object, mask: object | None, reduction: str, sizes: Sizes, xs_arr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Y (T, B) int64 labels, weight (T, B)): E = sum_{t,b} weight[t, b] E_t[b].

    Labels are checked against [0, K) only where the mask counts them; elsewhere any integer
    is accepted (padding) and stored as 0, with weight 0.
    """
    T, B, K = sizes.T, sizes.B, sizes.K
    expect = (B, T) if sizes.batched else (T,)
    ys_arr = _as_array("ys", ys)
    if not _is_int(ys_arr):
        raise ValueError(f"ys: expected integer class labels, got dtype {ys_arr.dtype}")
    if ys_arr.shape != expect:
        mismatch = f"ys: expected shape {expect} to match xs, got {ys_arr.shape}"
        raise ValueError(_misread_xs(xs_arr, ys_arr, sizes) or mismatch)
    if mask is None:
        counted = None
    else:
        mask_arr = _as_array("mask", mask)
        if mask_arr.dtype != np.bool_:
            raise ValueError(f"mask: expected a bool array, got dtype {mask_arr.dtype}")
        if mask_arr.shape != expect:
            raise ValueError(f"mask: expected shape {expect} to match ys, got {mask_arr.shape}")
        counted = mask_arr
    _check_labels(ys_arr, counted, K)
    Y = ys_arr if counted is None else np.where(counted, ys_arr, 0)  # padding -> 0 (weight 0)
    Y = np.ascontiguousarray((Y if sizes.batched else Y[None]).T, dtype=np.int64)
    if counted is None:  # every target counts
        n = T * B
        weight = np.ones((T, B), dtype=sizes.dtype)
    else:
        counted_tb = (counted if sizes.batched else counted[None]).T
        n = int(counted_tb.sum())
        if reduction == "mean" and n == 0:
            raise ValueError("mask: no target is counted, so reduction='mean' is undefined")
        weight = counted_tb.astype(sizes.dtype)
    if reduction == "mean":
        weight /= n
    return Y, weight


def _all_in_range(ids: np.ndarray, n: int) -> bool:
    """True when every integer in ``ids`` lies in [0, n), by one maximum: read as unsigned
    integers of the same width, the negative ones become at least 2**63 (or 2**31, ...)."""
    if ids.size == 0:
        return True
    unsigned = ids if ids.dtype.kind == "u" else ids.view(f"u{ids.dtype.itemsize}")
    return int(unsigned.max()) < n


def _check_labels(ys_arr: np.ndarray, counted: np.ndarray | None, K: int) -> None:
    """Every label where ``counted`` is True (everywhere when None) lies in [0, K)."""
    if counted is None and _all_in_range(ys_arr, K):
        return
    outside = (ys_arr < 0) | (ys_arr >= K)
    if counted is not None:
        outside &= counted
    if outside.any():
        bad = tuple(int(i) for i in np.argwhere(outside)[0])
        where = " where mask is True" if counted is not None else ""
        raise ValueError(f"ys: label {int(ys_arr[bad])} at index {bad}{where} is outside [0, K) with K = {K}")


def upstream_gradients(
    dhs: np.ndarray,
    final_parts: list[tuple[str, np.ndarray]],
    T: int,
    B: int,
    H: int,
    batched: bool,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The layer backward's upstream gradients, checked: dhs time-major (T, B, H) in dtype (a view
    when it has that dtype already), and d_final as one (B, S) array (S = H, or 2H for the LSTM's
    [dh; dc]) or None.

    Args:
        dhs: dL/dh_t as given, (B, T, H) batched or (T, H).
        final_parts: the named parts of d_final ([("d_final", dh)], or the LSTM's
            [("d_final.h", dh), ("d_final.c", dc)]), each (B, H) batched or (H,); [] for none.
    """
    want = (B, T, H) if batched else (T, H)
    if dhs.shape != want:
        sizes = f"B = {B}, T = {T}, H = {H}" if batched else f"T = {T}, H = {H}"
        raise ValueError(
            f"dhs: expected shape {want} ({sizes}: one gradient per output h_t, "
            f"{'batch-first like xs' if batched else 'like the unbatched xs'}), got {dhs.shape}"
        )
    check_finite_array("dhs", dhs)
    dhs_tm = np.asarray(dhs, dtype=dtype)
    dhs_tm = dhs_tm.swapaxes(0, 1) if batched else dhs_tm[:, None, :]
    if not final_parts:
        return dhs_tm, None
    part_shape = (B, H) if batched else (H,)
    for name, a in final_parts:
        if a.shape != part_shape:
            raise ValueError(
                f"{name}: expected shape {part_shape} (the final state's, H = {H}), got {a.shape}"
            )
        check_finite_array(name, a)
    d = np.concatenate([np.asarray(a, dtype=dtype).reshape(B, H) for _, a in final_parts], axis=1)
    return dhs_tm, d
