"""Checking the inputs of a stack of layers (manual_bptt.stack), in torch's layout. numpy only.

B sequences, T steps (the padded length), L layers, dirs directions, H hidden units, H_out the
size of h_t (proj_size or H), LD = L * dirs. Batched, as torch's batch_first modules take them:

    xs       (B, T, D) dense floats, or (B, T) token ids in [0, D) (layer 0's input)
    lengths  None, or (B,) integers 1 <= n_b <= T in any order: sequence b is its first n_b steps
    s0       None (zeros); h0 (LD, B, H_out) for the Elman cell and the GRU; for the LSTM
             LSTMState(h0, c0) or a pair, c0 (LD, B, H)
    dhs      (B, T, dirs * H_out) the gradient of the top layer's outputs
    d_final  None; or dh_n (LD, B, H_out), for the LSTM LSTMState(dh_n, dc_n) with dc_n (LD, B, H):
             the gradient of every layer's final state (torch's h_n / c_n)
    ys, mask (B, T) integer labels and bool weights for bptt's output layer

Unbatched xs (T, D) / (T,) drop the B axis everywhere (and take no lengths). Every malformed
input is a ValueError naming it. Inputs past a sequence's length are never read: their values
may be anything (padding, NaN), and the copies made here hold 0 there. The caller's arrays are
only read. Internally everything is time-major: (T, B, ...).

The shapes are read first (read_call), so that a call too large for max_bytes is refused before
any value is scanned or copied; then the values (scan_inputs, labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._inputs import REDUCTIONS, _as_array, _read_xs, real_array
from .gated_params import LSTMState
from .stack_params import StackParams


@dataclass(frozen=True, eq=False)
class StackCall:
    """A call's inputs as read from their shapes and checked (values of s0, dhs, d_final too).

    Attributes:
        batched: whether xs had a batch axis.  T, B, D: sizes (B = 1 unbatched).
        xs: the caller's xs as an array (not yet scanned).  tokens: whether it holds token ids.
        lengths: (B,) int64, or None when not given or every length is T (the two are the same
            computation: no step is skipped).
        s0_parts: the initial state's parts as given, each (LD, B, .) (a B axis added when
            unbatched): [h0] or [h0, c0]; [] for None.
        dhs: dhs as given (checked shape: (B, T, dirs * H_out) or (T, dirs * H_out)), or None.
        d_final_parts: the final state's gradient's parts, each (LD, B, .), or [].
        dtype: the compute dtype: float32 only when every floating input is float32.
    """

    batched: bool
    T: int
    B: int
    D: int
    xs: np.ndarray
    tokens: bool
    lengths: np.ndarray | None
    s0_parts: list[np.ndarray]
    dhs: np.ndarray | None
    d_final_parts: list[np.ndarray]
    dtype: np.dtype

    @cached_property
    def mask(self) -> np.ndarray | None:
        """(T, B) bool, mask[t, b] = t < n_b: the steps run; None with lengths None. Made on first
        use (after the size check: it is T * B bytes)."""
        if self.lengths is None:
            return None
        return np.arange(self.T)[:, None] < self.lengths[None, :]

    def to_batch_first(self, a: np.ndarray) -> np.ndarray:
        """(T, B, ...) -> the caller's layout: (B, T, ...) if batched, else (T, ...), contiguous."""
        return np.ascontiguousarray(a.swapaxes(0, 1)) if self.batched else a[:, 0].copy()

    def state_out(self, a: np.ndarray) -> np.ndarray:
        """(LD, B, n) -> the caller's layout: (LD, B, n) if batched, else (LD, n) (a copy)."""
        return a.copy() if self.batched else a[:, 0].copy()


def _first_bad(a: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first NaN or inf in a, or None."""
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return None
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def read_lengths(lengths: object, B: int, T: int, batched: bool) -> np.ndarray | None:
    """lengths (B,) as int64, checked: integers (not floats, not bools) with 1 <= n_b <= T."""
    if lengths is None:
        return None
    if not batched:
        raise ValueError(
            "lengths: only for batched xs ((B, T, D) or (B, T)); an unbatched xs is one sequence of T steps"
        )
    n = _as_array("lengths", lengths)
    if n.dtype.kind not in "iu":
        raise ValueError(
            f"lengths: expected integers (the number of valid steps of each sequence), got dtype {n.dtype}"
        )
    if n.shape != (B,):
        raise ValueError(f"lengths: expected shape (B,) = ({B},), one length per sequence, got {n.shape}")
    bad = np.flatnonzero((n < 1) | (n > T))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"lengths: every length must be in 1..T = 1..{T}, got lengths[{i}] = {int(n[i])}")
    return n.astype(np.int64)


def _stack_parts(
    name: str, value: object, p: StackParams, lead: tuple[int, ...], what: str
) -> list[tuple[str, np.ndarray]]:
    """value as its named parts: [(name, h)] for the Elman cell and the GRU, [(name.h, h),
    (name.c, c)] for the LSTM (an LSTMState or a pair), each checked against (LD, *lead, .)."""
    LD, dirs, H, H_out = p.num_layers * p.directions, p.directions, p.hidden_size, p.out_size
    rows = (
        f"L * dirs = {p.num_layers} layer{'s' if p.num_layers > 1 else ''} x {dirs} "
        f"direction{'s' if dirs > 1 else ''} = {LD} row{'s' if LD > 1 else ''}"
    )
    lstm = p.cell == "lstm"
    if lstm:
        if not isinstance(value, tuple) or len(value) != 2:
            raise ValueError(
                f"{name}: the LSTM's {what} is a pair, manual_bptt.LSTMState(h, c) or a tuple (h, c), got "
                f"{type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, tuple) else "")
            )
        parts = [(f"{name}.h", value[0], H_out, "H_out"), (f"{name}.c", value[1], H, "H")]
    else:
        if isinstance(value, LSTMState):
            raise ValueError(
                f"{name}: an LSTMState is the LSTM's; this {p.cell.upper()}'s {what} is one array"
            )
        parts = [(name, value, H_out, "H_out")]
    out = []
    for part, v, size, size_name in parts:
        a = real_array(part, v)
        want = (LD, *lead, size)
        if a.shape != want:
            layout = "(L * dirs, B, " if lead else "(L * dirs, "
            hint = ""
            if a.shape == (*lead, size):
                hint = (
                    f": this is one layer's shape; a stack's {what} has a leading axis of "
                    f"L * dirs rows, torch's layout (a[None] for L = 1, one direction)"
                )
            raise ValueError(
                f"{part}: expected shape {layout}{size_name}) = {want} ({rows}, {size_name} = {size}), "
                f"got {a.shape}{hint}"
            )
        bad = _first_bad(a)
        if bad is not None:
            raise ValueError(f"{part}: contains NaN or inf (first at index {bad})")
        out.append((part, a))
    return out


def read_call(
    p: StackParams,
    xs: object,
    *,
    s0: object | None = None,
    lengths: object | None = None,
    dhs: object | None = None,
    d_final: object | None = None,
) -> StackCall:
    """The shapes (and the small arrays' values) of a call, checked; xs is not scanned yet."""
    bad = p._nonfinite_names()
    if bad:
        index = _first_bad(p[bad[0]])
        raise ValueError(f"p.{bad[0]}: contains NaN or inf (first at index {index})")
    xs_arr, batched, B, T = _read_xs(p, xs)
    n = read_lengths(lengths, B, T, batched)
    if n is not None and int(n.min()) == T:
        n = None  # every sequence is T steps long: no step is skipped
    lead = (B,) if batched else ()
    s0_parts = [] if s0 is None else [a for _, a in _stack_parts("s0", s0, p, lead, "initial state")]
    final_parts = (
        [] if d_final is None else [a for _, a in _stack_parts("d_final", d_final, p, lead, "final state")]
    )
    dhs_arr = None
    if dhs is not None:
        dhs_arr = real_array("dhs", dhs)
        width = p.directions * p.out_size
        want = (B, T, width) if batched else (T, width)
        if dhs_arr.shape != want:
            sizes = ("B = {B}, " if batched else "").format(B=B) + f"T = {T}, dirs * H_out = {width}"
            raise ValueError(
                f"dhs: expected shape {want} ({sizes}: the gradient of the top layer's outputs, "
                f"{'batch-first like xs' if batched else 'like the unbatched xs'}), got {dhs_arr.shape}"
            )
    if not batched:
        s0_parts = [a[:, None] for a in s0_parts]
        final_parts = [a[:, None] for a in final_parts]
    floats = [np.dtype(p.dtype)] + [
        a.dtype for a in (xs_arr, dhs_arr, *s0_parts, *final_parts) if a is not None and a.dtype.kind == "f"
    ]
    dtype = np.dtype(np.result_type(*floats))
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    return StackCall(
        batched=batched,
        T=T,
        B=B,
        D=p.input_size,
        xs=xs_arr,
        tokens=xs_arr.dtype.kind in "iu",
        lengths=n,
        s0_parts=s0_parts,
        dhs=dhs_arr,
        d_final_parts=final_parts,
        dtype=dtype,
    )


def scan_inputs(call: StackCall) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(tokens (T, B) int64, None) or (None, X (T, B, D) in the compute dtype): layer 0's input,
    checked where it is read (token ids in [0, D), dense values finite, at the valid steps only)
    and 0 past each length (a copy then; X is a view of xs when no copy is needed)."""
    xs, D = call.xs, call.D
    seq = xs if call.batched else xs[None]  # (B, T) or (B, T, D)
    valid = None if call.mask is None else call.mask.T  # (B, T)
    if call.tokens:
        outside = (seq < 0) | (seq >= D)
        if valid is not None:
            outside &= valid
        if outside.any():
            bad = tuple(int(i) for i in np.argwhere(outside)[0])
            bad = bad if call.batched else bad[1:]
            where = " (a valid step: t < lengths[b])" if valid is not None else ""
            raise ValueError(
                f"xs: token id {int(xs[bad])} at index {bad}{where} is outside [0, D) with D = {D}"
            )
        tokens = seq if valid is None else np.where(valid, seq, 0)
        return np.ascontiguousarray(tokens.T, dtype=np.int64), None
    nonfinite = ~np.isfinite(seq)
    if valid is not None:
        nonfinite &= valid[:, :, None]
    if nonfinite.any():
        bad = tuple(int(i) for i in np.argwhere(nonfinite)[0])
        bad = bad if call.batched else bad[1:]
        where = " at a valid step (t < lengths[b])" if valid is not None else ""
        raise ValueError(f"xs: contains NaN or inf{where} (first at index {bad})")
    X = np.asarray(seq, dtype=call.dtype).swapaxes(0, 1)  # (T, B, D), a view when no conversion is needed
    if call.mask is not None:
        X = np.where(call.mask[:, :, None], X, 0).astype(call.dtype, copy=False)  # padding is never read
    return None, X


def scan_dhs(call: StackCall) -> np.ndarray | None:
    """dhs (T, B, dirs * H_out) in the compute dtype, checked finite where read (the valid steps),
    0 past each length (ignored there: the outputs are 0)."""
    if call.dhs is None:
        return None
    dhs = call.dhs.swapaxes(0, 1) if call.batched else call.dhs[:, None, :]
    nonfinite = ~np.isfinite(dhs) if dhs.dtype.kind == "f" else np.zeros(dhs.shape, dtype=bool)
    if call.mask is not None:
        nonfinite &= call.mask[:, :, None]
    if nonfinite.any():
        t, b, j = (int(i) for i in np.argwhere(nonfinite)[0])
        bad = (b, t, j) if call.batched else (t, j)
        raise ValueError(f"dhs: contains NaN or inf (first at index {bad})")
    out = np.asarray(dhs, dtype=call.dtype)
    if call.mask is not None:
        out = np.where(call.mask[:, :, None], out, 0).astype(call.dtype, copy=False)
    return out


def labels(
    call: StackCall, ys: object, mask: object | None, reduction: object, K: int
) -> tuple[np.ndarray, np.ndarray]:
    """(Y (T, B) int64 labels, weight (T, B) in the compute dtype): E = sum_{t,b} weight[t, b] E_t[b].

    E_t counts where t < n_b and the mask (if any) is True; "mean" divides by that count. Labels
    are read, and checked against [0, K), only where they count (any integer elsewhere: padding).
    """
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {list(REDUCTIONS)}, got {reduction!r}")
    B, T, batched = call.B, call.T, call.batched
    expect = (B, T) if batched else (T,)
    ys_arr = _as_array("ys", ys)
    if ys_arr.dtype.kind not in "iu":
        raise ValueError(f"ys: expected integer class labels, got dtype {ys_arr.dtype}")
    if ys_arr.shape != expect:
        raise ValueError(f"ys: expected shape {expect} to match xs, got {ys_arr.shape}")
    counted = np.ones((T, B), dtype=bool) if call.mask is None else call.mask.copy()
    if mask is not None:
        mask_arr = _as_array("mask", mask)
        if mask_arr.dtype != np.bool_:
            raise ValueError(f"mask: expected a bool array, got dtype {mask_arr.dtype}")
        if mask_arr.shape != expect:
            raise ValueError(f"mask: expected shape {expect} to match ys, got {mask_arr.shape}")
        counted &= (mask_arr if batched else mask_arr[None]).T
    Y = (ys_arr if batched else ys_arr[None]).T  # (T, B)
    outside = ((Y < 0) | (Y >= K)) & counted
    if outside.any():
        t, b = (int(i) for i in np.argwhere(outside)[0])
        bad = (b, t) if batched else (t,)
        where = (
            " (where it counts: t < lengths[b] and the mask is True)"
            if (mask is not None or call.mask is not None)
            else ""
        )
        raise ValueError(f"ys: label {int(ys_arr[bad])} at index {bad}{where} is outside [0, K) with K = {K}")
    Y = np.ascontiguousarray(np.where(counted, Y, 0), dtype=np.int64)  # not read elsewhere: 0, weight 0
    weight = counted.astype(call.dtype)
    if reduction == "mean":
        n = int(counted.sum())
        if n == 0:
            raise ValueError("mask: no target is counted, so reduction='mean' is undefined")
        weight /= n
    return Y, weight
