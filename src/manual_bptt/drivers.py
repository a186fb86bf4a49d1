"""The drivers, written once over the cell interface (manual_bptt.cells.base.Cell). numpy only.

Time-major inside: T steps, B sequences, D inputs, H hidden units, G gate blocks, S = P*H state
numbers. With gi_t = U x_t + b_ih and gh_t = W h_{t-1} + b_hh (see cells.base):

    run            s_t = cell(gi_t, gh_t, s_{t-1}) for t = 0..T-1, s_{-1} = s0
    backprop       the reverse recursion of the vector-Jacobian products:
                       g_t = dE/ds_t (direct, from above) + dE/ds_t (carried back from step t+1)
                       (g_{t-1} carried, dgi_t, dgh_t) = cell.backward(g_t)
                   or, truncated at tau, for every E_t only the steps k with t - tau <= k <= t
    weight_grads   dU = sum_t dgi_t^T x_t, db_ih = sum_t dgi_t, dW = sum_t dgh_t^T h_{t-1},
                   db_hh = sum_t dgh_t, dE/dx_t = dgi_t U: each one product over all (t, b) rows
    projection_grad  dW_hr = sum_t dh_t^T m_t, the LSTM's projection (h_t = W_hr m_t)

run and backprop take an optional step mask (T, B) bool (variable lengths): where mask[t, b] is
False, step t of row b is skipped. Its state is held, s_t[b] = s_{t-1}[b]: the step's Jacobian is
the identity and it receives no gradient (dgi_t[b] = dgh_t[b] = 0, the gradient carried through
unchanged). The cell still computes the skipped rows, so every product stays a full (B, .) one;
the mask selects (np.copyto / np.where), never multiplies, so a value in a skipped row cannot
leak. mask=None is exactly the unmasked drivers.

The drivers take arrays already validated (manual_bptt._inputs) in the compute dtype; CellInputs
holds them as each cell's front gives them (manual_bptt.kinds: every params type has one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cells.base import Cell, StepWeights


@dataclass(frozen=True, eq=False)
class CellInputs:
    """A call's validated inputs as the generic drivers read them, time-major, in the compute dtype.

    Attributes:
        cell, w: the cell and its recurrent weights.
        U: (G*H, D).  b_ih: (G*H,) or None, the input bias (the Elman cell's b).  V: (K, H).
        c: (K,) or None.
        bias_names: the biases' names in the params type: ("b",) for the Elman cell,
            ("b_ih", "b_hh") for a gated cell with biases, () without.
        tokens: (T, B) token ids, or None.  X: (T, B, D) dense inputs, or None.
        s0: (B, S) the initial state of every row.
        Y, weight: (T, B) labels and the weight of each E_t, or None without labels.
        batched: whether xs had a batch axis.
        prep: the front's own validated inputs (an _inputs.Batch for the Elman cell, a
            gated.GatedInputs otherwise); its fold_ds0, state_out and to_batch_first put a
            gradient of s0, a state and a (T, B, ...) array into the caller's layout.
    """

    cell: Cell
    w: StepWeights
    U: np.ndarray
    b_ih: np.ndarray | None
    V: np.ndarray
    c: np.ndarray | None
    bias_names: tuple[str, ...]
    tokens: np.ndarray | None
    X: np.ndarray | None
    s0: np.ndarray
    Y: np.ndarray | None
    weight: np.ndarray | None
    batched: bool
    prep: Any


@dataclass(frozen=True, eq=False)
class Run:
    """The forward pass of a cell over a sequence, time-major.

    Attributes:
        s: (T + 1, B, S) states, s[0] = s0 and s[t + 1] = s_t (one buffer, so that s_{t-1}
            for every step is the view s[:-1]).
        caches: the T per-step caches that cell.backward and cell.partials read.
    """

    s: np.ndarray
    caches: list[Any]

    @property
    def states(self) -> np.ndarray:
        """s_t for t = 0..T-1, (T, B, S)."""
        return self.s[1:]

    def outputs(self, H: int) -> np.ndarray:
        """h_t for t = 0..T-1, (T, B, H): the first H numbers of each state."""
        return self.s[1:, :, :H]

    def h_prev(self, H: int) -> np.ndarray:
        """h_{t-1} for t = 0..T-1, (T, B, H) (h_{-1} from s0)."""
        return self.s[:-1, :, :H]


def input_terms(
    U: np.ndarray, b_ih: np.ndarray | None, tokens: np.ndarray | None, X: np.ndarray | None
) -> np.ndarray:
    """gi_t = U x_t + b_ih for every step, (T, B, G*H).

    Args:
        U: (G*H, D).  b_ih: (G*H,) or None.
        tokens: (T, B) token ids (x_t one-hot, so U x_t = U[:, x_t]), or None.
        X: (T, B, D) dense inputs, or None (exactly one of tokens and X is given).
    """
    gi = U.T[tokens] if tokens is not None else X @ U.T  # U x_t, (T, B, G*H)
    if b_ih is not None:
        gi = gi + b_ih
    return np.ascontiguousarray(gi)


def run(cell: Cell, w: StepWeights, gi: np.ndarray, s0: np.ndarray, *, mask: np.ndarray | None = None) -> Run:
    """The recurrence s_t = cell(gi_t, W h_{t-1} + b_hh, s_{t-1}).

    Args:
        cell: the cell.  w: its recurrent weights.
        gi: (T, B, G*H) input terms.  s0: (B, S) initial state.
        mask: None, or (T, B) bool: where False, the step is skipped and the state held
            (s_t[b] = s_{t-1}[b]; see the module docstring).
    """
    T, B = gi.shape[:2]
    s = np.empty((T + 1, B, s0.shape[1]), dtype=gi.dtype)
    s[0] = s0
    held = None if mask is None else ~mask[:, :, None]  # (T, B, 1): the skipped steps
    caches = []
    for t in range(T):
        s[t + 1], cache = cell.forward(w, gi[t], s[t])  # s_t = cell(gi_t, gh_t, s_{t-1})
        if held is not None:
            np.copyto(s[t + 1], s[t], where=held[t])  # a skipped step holds the state: s_t = s_{t-1}
        caches.append(cache)
    return Run(s=s, caches=caches)


def _step_back(
    cell: Cell, w: StepWeights, g: np.ndarray, cache: Any, held: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cell.backward through one step; where ``held`` (B, 1) is True (a skipped step), no gradient
    enters the step (dgi_t = dgh_t = 0) and g passes through unchanged (its Jacobian is I)."""
    g_prev, dgi, dgh = cell.backward(w, g, cache)
    if held is None:
        return g_prev, dgi, dgh
    np.copyto(dgi, 0, where=held)
    np.copyto(dgh, 0, where=held)
    return np.where(held, g, g_prev), dgi, dgh


def backprop(
    cell: Cell,
    w: StepWeights,
    r: Run,
    ds_direct: np.ndarray,
    *,
    truncate: int | None = None,
    ds_final: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    dh_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dE/dgi_t, dE/dgh_t (T, B, G*H) and dE/ds0 (B, S) by the reverse recursion.

    Args:
        ds_direct: (T, B, S) dE_t/ds_t, the gradient arriving at each state from above (the
            output layer, or a caller's upstream gradient), not through the recurrence.
        truncate: None (full BPTT) or tau >= 0: for every E_t keep exactly the terms of the
            steps k with t - tau <= k <= t (ds0 receives E_t's gradient only when t <= tau).
        ds_final: (B, S) gradient arriving at the final state s_{T-1} (full BPTT only), or None.
        mask: None, or (T, B) bool, the steps run (see run): a skipped step passes the gradient
            through unchanged and its dgi_t, dgh_t are 0.
        dh_out: None, or (T, B, H_out) zeros that receive dE/dh_t, the total gradient at each
            output h_t that a step computed (direct and carried; under truncation the sum over
            the windows; 0 at skipped steps): for the projection's gradient (projection_grad).
    """
    T, B, S = ds_direct.shape
    GH = cell.gates * w.H
    dgi = np.zeros((T, B, GH), dtype=ds_direct.dtype)
    dgh = np.zeros((T, B, GH), dtype=ds_direct.dtype)
    held = None if mask is None else ~mask[:, :, None]  # (T, B, 1): the skipped steps
    H_out = w.H_out
    if truncate is None or truncate >= T - 1:
        g = np.zeros((B, S), dtype=ds_direct.dtype) if ds_final is None else ds_final.copy()
        for t in range(T - 1, -1, -1):
            g = g + ds_direct[t]  # dE/ds_t = direct + carried from step t + 1
            if dh_out is not None:
                dh_out[t] = g[:, :H_out]  # dE/dh_t, total
            step_held = None if held is None else held[t]
            g, dgi[t], dgh[t] = _step_back(cell, w, g, r.caches[t], step_held)  # g becomes dE/ds_{t-1}
        ds0 = g
    else:
        if ds_final is not None:
            raise ValueError("ds_final: only with full BPTT (truncate=None)")
        ds0 = np.zeros((B, S), dtype=ds_direct.dtype)
        for t in range(T):
            g = ds_direct[t]  # dE_t/ds_t
            for k in range(t, max(0, t - truncate) - 1, -1):
                if dh_out is not None:
                    dh_out[k] += g[:, :H_out]  # E_t's part of dE/dh_k
                step_held = None if held is None else held[k]
                g, gi_k, gh_k = _step_back(cell, w, g, r.caches[k], step_held)  # g: dE_t/ds_{k-1}
                dgi[k] += gi_k
                dgh[k] += gh_k
            if t <= truncate:  # the window reaches s0
                ds0 += g
    if dh_out is not None and held is not None:
        np.copyto(dh_out, 0, where=held)  # a skipped step computed no h_t: W_hr was not used there
    return dgi, dgh, ds0


def weight_grads(
    dgi: np.ndarray,
    dgh: np.ndarray,
    h_prev: np.ndarray,
    U: np.ndarray,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(dU (G*H, D), db_ih (G*H,), dW (G*H, H), db_hh (G*H,), dX (T, B, D) or None).

    Args:
        dgi, dgh: (T, B, G*H).  h_prev: (T, B, H) h_{t-1}.  U: (G*H, D).
        tokens: (T, B) ids or None.  X: (T, B, D) dense inputs or None.
    """
    T, B, GH = dgi.shape
    H, D = h_prev.shape[-1], U.shape[1]
    rows_i, rows_h = dgi.reshape(T * B, GH), dgh.reshape(T * B, GH)
    dW = rows_h.T @ h_prev.reshape(T * B, H)  # dW = sum_t dgh_t^T h_{t-1}
    if tokens is not None:
        dUT = np.zeros((D, GH), dtype=dgi.dtype)
        np.add.at(dUT, tokens.reshape(-1), rows_i)  # dU[:, v] = sum of dgi_t where x_t = v
        dU, dX = np.ascontiguousarray(dUT.T), None
    else:
        dU = rows_i.T @ X.reshape(T * B, D)  # dU = sum_t dgi_t^T x_t
        dX = (rows_i @ U).reshape(T, B, D)  # dE/dx_t = dgi_t U
    return dU, rows_i.sum(axis=0), dW, rows_h.sum(axis=0), dX


def projection_grad(dh: np.ndarray, m: np.ndarray) -> np.ndarray:
    """dW_hr = sum_t dh_t^T m_t (H_out, H), one product over all (t, b) rows.

    Args:
        dh: (T, B, H_out) dE/dh_t at every output (backprop's dh_out).  m: (T, B, H) the m_t that
            W_hr multiplied (cell.output_input of each step's cache).
    """
    return dh.reshape(-1, dh.shape[-1]).T @ m.reshape(-1, m.shape[-1])  # dW_hr = sum_t dh_t^T m_t


# ---------------------------------------------------------------------------------------------
# Rows of many steps at once: the explicit sum over k, state Jacobians and RTRL
# ---------------------------------------------------------------------------------------------
# A cell computes row by row (one row per sequence b), so the caches of many steps, stacked
# along the row axis, are the cache of one "step" over (t, b) rows: one cell.backward call then
# advances the error signals of every step k of a lag L = t - k together.


def stack_caches(caches: list[Any]) -> Any:
    """The T per-step caches (each a tuple of (B, ...) arrays) as one cache of T*B rows.

    Row t*B + b is step t, sequence b. The result has the caches' own tuple type (a
    NamedTuple stays one); a field that is None in every step stays None.
    """
    first = caches[0]
    fields = []
    for i, value in enumerate(first):
        if value is None:
            fields.append(None)
            continue
        stacked = np.stack([cache[i] for cache in caches])  # (T, B, ...)
        fields.append(stacked.reshape(-1, *stacked.shape[2:]))  # (T*B, ...)
    return type(first)(*fields) if hasattr(first, "_fields") else tuple(fields)


def cache_rows(cache: Any, lo: int, hi: int) -> Any:
    """The rows lo..hi-1 of a stacked cache (views, no copies)."""
    fields = [None if f is None else f[lo:hi] for f in cache]
    return type(cache)(*fields) if hasattr(cache, "_fields") else tuple(fields)


def repeat_rows(cache: Any, r: int) -> Any:
    """Each row of a stacked cache repeated r times in place (row i becomes rows i*r .. i*r + r-1)."""
    fields = [None if f is None else np.repeat(f, r, axis=0) for f in cache]
    return type(cache)(*fields) if hasattr(cache, "_fields") else tuple(fields)


def lag_backprop(
    cell: Cell, w: StepWeights, cache: Any, ds_direct: np.ndarray, max_lag: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The (t, k) error signals lag by lag: yield (L, dgi_L, dgh_L, ds0_L) for L = 0..min(max_lag, T-1).

    With g_{t,k} = dE_t/ds_k (through steps k+1..t only), g_{t,t} = ds_direct[t], and
    (g_{t,k-1}, dgi_{t,k}, dgh_{t,k}) = cell.backward(g_{t,k}) at step k:

        dgi_L[k], dgh_L[k] = dE_t/dgi_k, dE_t/dgh_k of the pair (t, k) = (k + L, k),  (T - L, B, G*H)
        ds0_L = g_{L,-1} = dE_L/ds0 through steps 0..L,                                 (B, S)

    For one lag, every k is one cell.backward call over (T - L) * B rows.

    Args:
        cache: stack_caches of the run, T*B rows.  ds_direct: (T, B, S) dE_t/ds_t from above.
    """
    T, B, S = ds_direct.shape
    g = ds_direct
    for L in range(min(max_lag, T - 1) + 1):
        n = T - L
        g_prev, dgi, dgh = cell.backward(w, g.reshape(n * B, S), cache_rows(cache, 0, n * B))
        yield L, dgi.reshape(n, B, -1), dgh.reshape(n, B, -1), g_prev[:B]
        g = g_prev.reshape(n, B, S)[1:]  # g_{k+L+1,k} = g_{(k+1)+L,(k+1)-1}


def chain_back(cell: Cell, w: StepWeights, cache: Any, B: int, g: np.ndarray, t: int, k: int) -> np.ndarray:
    """g · ds_t/ds_k for rows g, (B*r, S): r row vectors per sequence (row b*r + i belongs to
    sequence b), carried from step t back through the steps t, t-1, ..., k+1 (-1 <= k <= t;
    k = t returns g itself). ``cache``: stack_caches of the run, T*B rows.
    """
    r = len(g) // B
    for j in range(t, k, -1):
        step = cache_rows(cache, j * B, (j + 1) * B)
        g = cell.backward(w, g, repeat_rows(step, r) if r > 1 else step)[0]  # g · ds_j/ds_{j-1}
    return g


def step_jacobian(cell: Cell, w: StepWeights, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, Ji, Jh) of one step from its cache of B rows: A = ds_t/ds_{t-1} = Js + Jh W [I_H_out 0],
    (B, S, S); Ji = ∂s_t/∂gi_t, Jh = ∂s_t/∂gh_t, (B, S, G*H)."""
    Ji, Jh, Js = cell.partials(w, cache)
    A = Js.copy()
    A[:, :, : w.H_out] += Jh @ w.W  # through gh_t = W h_{t-1} + b_hh
    return A, Ji, Jh
