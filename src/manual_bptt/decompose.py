"""The seed's explicit sum over k, term by term, and the state Jacobians ds_t/ds_k, for any cell.

    dE/dθ = sum_t dE_t/dθ,     dE_t/dθ = sum_{k=0..t} dE_t/dy_hat_t · dy_hat_t/ds_t · ds_t/ds_k · ∂s_k/∂θ

over the cell interface (manual_bptt.cells.base): s_t is the state ((B, S), S = H for the Elman
cell and the GRU, S = 2H for the LSTM's [h_t; c_t]), ds_t/ds_k = A_t A_{t-1} ... A_{k+1} with
the full step Jacobian A_j = ds_j/ds_{j-1} = Js + Jh W [I_H 0] (the identity when t = k), and
∂s_k/∂θ the *immediate* partial, s_{k-1} held fixed. For the Elman cell A_j = diag(f'(a_j)) W
and ∂s_k[i]/∂W[m, n] = [i = m] f'(a_k)[i] s_{k-1}[n].

In code, dE_t/ds_t is carried back to step k by cell.backward, which gives the signals
dgi_k^{(t)} = dE_t/dgi_k and dgh_k^{(t)} = dE_t/dgh_k of that step alone (B, G*H), and

    term_W[t, k] = dgh_k^{(t)T} h_{k-1}     term_U[t, k] = dgi_k^{(t)T} x_k
    term_b_ih[t, k] = sum_b dgi_k^{(t)}     term_b_hh[t, k] = sum_b dgh_k^{(t)}

(the Elman cell has one bias b, its b_ih; for it dgi = dgh = dE_t/da_k). Batched inputs: every
term is summed over the batch (E_t is the batch's loss at time t). The full tensor of W terms
holds T*T*G*H*H numbers, so terms are computed lazily: one (t, k) at a time (``terms.W[t, k]``),
all k of one t (``terms.iter_t()``), as norms only (``terms.norms()``), or as the full tensor
(``terms.W.full()``); every array over ``max_bytes`` is refused before it is allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import Sizes, check_max_bytes
from .cells import ELMAN
from .cells.base import Cell, StepWeights
from .drivers import (
    cache_rows,
    chain_back,
    input_terms,
    lag_backprop,
    repeat_rows,
    run,
    stack_caches,
    step_jacobian,
)
from .errors import (
    DEFAULT_MAX_BYTES,
    QUIET,
    NonFiniteError,
    TooLargeError,
    all_finite,
    check_bytes,
    first_nonfinite,
)
from .kinds import Kind, kind_of
from .output import logits, output_layer, softmax

__all__ = [
    "MAX_FULL_BYTES",
    "Decomposition",
    "LagProfile",
    "StepTerms",
    "TermNorms",
    "TooLargeError",
    "decompose",
    "state_jacobian",
]

#: Default limit, in bytes, for materializing a full (T, T, ...) tensor of terms or Jacobians.
MAX_FULL_BYTES = DEFAULT_MAX_BYTES  # 1 GiB

_FULL_HINT = (
    "Index one term at a time (terms.W[t, k]), iterate with terms.iter_t(), use terms.norms(), "
    "or pass a larger max_bytes"
)


# ---------------------------------------------------------------------------------------------
# The forward run over the cell interface, shared by decompose, state_jacobian and rtrl
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Unrolled:
    """A validated forward run of any cell with its output layer, time-major.

    Attributes:
        kind: the row of the params type in manual_bptt.kinds.
        cell, w: the cell and its recurrent weights (compute dtype).
        U: (G*H, D) input weights.  V: (K, H).  c: (K,) or None.
        bias_names: the names of the cell's biases in the params type: ("b",) for the Elman
            cell, ("b_ih", "b_hh") for a gated cell with biases, () without.
        tokens: (T, B) token ids or None.  X: (T, B, D) dense inputs or None.
        s: (T + 1, B, S) states, s[0] = s0, s[t + 1] = s_t.
        cache: the T per-step caches stacked into one cache of T*B rows (drivers.stack_caches).
        batched: whether xs had a batch axis.  prep: the validated inputs of the params type
            (an _inputs.Batch for the Elman cell, a gated.GatedInputs otherwise; see
            drivers.CellInputs).
        Y, weight: (T, B) labels and the weight of each E_t, or None without labels.
        loss: E, or None without labels.  dO: (T, B, K) dE/do_t, or None.
        dV: (K, H) dE/dV and dc: (K,) dE/dc (None without c), or None without labels.
        e: (T, B, S) dE_t/ds_t from the output layer (zero in the c part), or None.
    """

    kind: Kind
    cell: Cell
    w: StepWeights
    U: np.ndarray
    V: np.ndarray
    c: np.ndarray | None
    bias_names: tuple[str, ...]
    tokens: np.ndarray | None
    X: np.ndarray | None
    s: np.ndarray
    cache: Any
    batched: bool
    prep: Any
    Y: np.ndarray | None
    weight: np.ndarray | None
    loss: float | None
    dO: np.ndarray | None
    dV: np.ndarray | None
    dc: np.ndarray | None
    e: np.ndarray | None

    @property
    def T(self) -> int:
        return self.s.shape[0] - 1

    @property
    def B(self) -> int:
        return self.s.shape[1]

    @property
    def S(self) -> int:
        return self.s.shape[2]

    @property
    def H(self) -> int:
        return self.w.H

    @property
    def GH(self) -> int:
        return self.U.shape[0]

    @property
    def D(self) -> int:
        return self.U.shape[1]

    @property
    def K(self) -> int:
        return self.V.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.s.dtype

    def step(self, k: int) -> Any:
        """The cache of step k, B rows."""
        return cache_rows(self.cache, k * self.B, (k + 1) * self.B)

    def h_prev(self, k: int | slice) -> np.ndarray:
        """h_{k-1}, (B, H) (or (n, B, H) for a slice of steps); h_{-1} from s0."""
        return self.s[k][..., : self.H]

    def x_rows(self, k: int) -> np.ndarray:
        """x_k as dense rows (B, D): a one-hot row per token (no (D, D) identity is built)."""
        if self.tokens is None:
            return self.X[k]
        rows = np.zeros((self.B, self.D), dtype=self.dtype)
        rows[np.arange(self.B), self.tokens[k]] = 1.0
        return rows

    def out(self, a: np.ndarray) -> np.ndarray:
        """(B, ...) -> (...) for unbatched inputs."""
        return a if self.batched else a[0]


def unroll(
    p: object,
    xs: object,
    ys: object | None,
    *,
    activation: str | None,
    s0: object | None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    owned: bool = False,
    what: str = "decompose",
    labels: bool = True,
    size_check: Callable[[Sizes, np.dtype], None] | None = None,
) -> Unrolled:
    """Validate the inputs for the params type of ``p``, run the cell and its output layer.

    The inputs are validated by the front of p's row in manual_bptt.kinds: RNNParams, the Elman
    cell (activation None means "tanh"); GRUParams / LSTMParams, the gated cells (an explicit
    activation is a ValueError).
    The input terms, the states, the step caches and the logits are refused over ``max_bytes``
    from the shapes alone, before any input is scanned or copied; then ``size_check`` (sizes,
    dtype), if given (rtrl's sensitivities). ``owned``: copy the inputs (for results that
    outlive the call). ``labels``: ys is required (False: a run without the output layer, ys
    must be None).
    """
    kind = kind_of(p)
    cell = kind.cell

    def refuse_too_large(sz: Sizes, dt: np.dtype) -> None:
        T, B, H = sz.T, sz.B, sz.H
        check_bytes(f"{what}: the input terms gi_t = U x_t + b_ih", (T, B, cell.gates * H), dt, max_bytes)
        check_bytes(f"{what}: the states z_t", (T + 1, B, cell.parts * H), dt, max_bytes)  # (s_t's name here)
        check_bytes(f"{what}: the step caches", (T, B, cell.cache_width * H), dt, max_bytes)
        if labels:
            check_bytes(f"{what}: the logits o_t and dE/do_t, (T*B, K)", (T * B, sz.K), dt, max_bytes)
        if size_check is not None:
            size_check(sz, dt)

    inputs = kind.driver_inputs(
        p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask, labels=labels, owned=owned,
        size_check=refuse_too_large,
    )
    w, U, b_ih, V, c = inputs.w, inputs.U, inputs.b_ih, inputs.V, inputs.c
    tokens, X, Y, weight, dt = inputs.tokens, inputs.X, inputs.Y, inputs.weight, inputs.U.dtype
    T, B = (tokens if tokens is not None else X).shape[:2]
    S = inputs.s0.shape[1]
    with np.errstate(**QUIET):  # overflow is named below, never a warning
        gi = input_terms(U, b_ih, tokens, X)  # U x_t + b_ih may overflow: the states decide
        r = run(cell, w, gi, inputs.s0)
        del gi
        t = first_nonfinite(r.s[1:])
        if t is not None:
            raise NonFiniteError(
                f"{what}: the state z_t is not finite from step t = {t} on (the recurrence overflowed)",
                what="z_t",
                step=t,
            )
    cache = stack_caches(r.caches)
    loss = dO = e = dV = dc = None
    if labels:
        H, K = w.H, V.shape[0]
        n = T * B

        def overflow(loss: np.floating) -> None:
            raise NonFiniteError(f"{what}: the loss is not finite ({float(loss)})", what="E", step=None)

        with np.errstate(**QUIET):  # a loss that overflows is named, never a warning
            h = r.s[1:, :, :H].reshape(n, H)  # h_t, one row per (t, b)
            out = output_layer(h, V.T, V, c, Y.reshape(n), weight.reshape(n), overflow)
        loss, dO, dV, dc = float(out.loss), out.dO.reshape(T, B, K), out.dV, out.dc
        e = np.zeros((T, B, S), dtype=dt)
        e[:, :, :H] = out.e.reshape(T, B, H)  # dE_t/dh_t = V^T dE_t/do_t; nothing to c_t
    return Unrolled(
        kind=kind,
        cell=cell,
        w=w,
        U=U,
        V=V,
        c=c,
        bias_names=inputs.bias_names,
        tokens=tokens,
        X=X,
        s=r.s,
        cache=cache,
        batched=inputs.batched,
        prep=inputs.prep,
        Y=Y,
        weight=weight,
        loss=loss,
        dO=dO,
        dV=dV,
        dc=dc,
        e=e,
    )


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StepTerms:
    """All terms of one output step t: index k = 0..t (G*H = H for the Elman cell).

    Attributes:
        t: the output step.
        W: (t+1, G*H, H) term_W[t, k] for k = 0..t.
        U: (t+1, G*H, D) term_U[t, k].
        b: (t+1, H) term_b[t, k] of the Elman cell, or None (no b, or a gated cell).
        b_ih, b_hh: (t+1, G*H) terms of a gated cell's biases, or None.
    """

    t: int
    W: np.ndarray
    U: np.ndarray
    b: np.ndarray | None
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TermNorms:
    """Frobenius norms of the terms, (T, T) each, zero where k > t.

    Attributes:
        W, U: ||term_W[t, k]||_F, ||term_U[t, k]||_F.  b: ||term_b[t, k]||_2 (Elman), or None.
        b_ih, b_hh: ||term_b_ih[t, k]||_2, ||term_b_hh[t, k]||_2 (gated cells), or None.
    """

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray | None
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class LagProfile:
    """Vanishing / exploding gradients as numbers, for each lag L = t - k = 0..T-1.

    Term norms are taken over the pairs (t, t - L); Jacobian norms (of ds_t/ds_{t-L}, (S, S),
    over the whole state) over the pairs and the batch rows. All arrays have shape (T,).

    Attributes:
        lag: 0..T-1.
        term_W_mean, term_W_max: mean and max of ||term_W[t, t-L]||_F.
        jac_fro_mean, jac_fro_max: mean and max of ||ds_t/ds_{t-L}||_F.
        jac_spec_mean, jac_spec_max: mean and max of the spectral norm ||ds_t/ds_{t-L}||_2.
    """

    lag: np.ndarray
    term_W_mean: np.ndarray
    term_W_max: np.ndarray
    jac_fro_mean: np.ndarray
    jac_fro_max: np.ndarray
    jac_spec_mean: np.ndarray
    jac_spec_max: np.ndarray


@dataclass(eq=False)
class _LagStats:
    """Mean and max of one norm, per lag, filled in lag by lag."""

    mean: np.ndarray
    max: np.ndarray

    @classmethod
    def zeros(cls, T: int) -> _LagStats:
        return cls(mean=np.zeros(T), max=np.zeros(T))

    def put(self, L: int, values: np.ndarray) -> None:
        # the mean as the sum of values / n: finite norms near the largest float cannot overflow
        self.mean[L], self.max[L] = np.sum(values / values.size), values.max()


def _outer_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_b a[k, b]^T b[k, b] for every k: (n, B, I), (n, B, J) -> (n, I, J), one batched product."""
    return np.matmul(a.transpose(0, 2, 1), b)


def _norms(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The Euclidean (Frobenius) norms of ``a`` over ``axes``, without overflow or underflow.

    sqrt(sum a^2) as np.linalg.norm computes it when every max|a| lies where the squares can
    neither overflow nor underflow (about 1e-149 to 1e149 in float64); otherwise, as a robust
    norm does, max|a| * ||a / max|a||| (0 where a is 0). NaN or inf in a gives a norm that is not
    finite. Call it inside np.errstate(**QUIET).
    """
    fi = np.finfo(a.dtype)
    top = np.max(np.abs(a), axis=axes, keepdims=True)
    if np.all(((top > 2.0 ** (fi.minexp // 2 + 16)) & (top < 2.0 ** (fi.maxexp // 2 - 16))) | (top == 0)):
        return np.sqrt(np.sum(a * a, axis=axes))
    scaled = a / np.where(top > 0, top, 1)  # every entry in [-1, 1]
    return np.squeeze(top * np.sqrt(np.sum(scaled * scaled, axis=axes, keepdims=True)), axis=axes)


def _fro(m: np.ndarray) -> np.ndarray:
    """Frobenius norms of a stack of matrices, (n, I, J) -> (n,), without overflow (_norms)."""
    return _norms(m, (1, 2))


def _check_finite_rows(what: str, a: np.ndarray, t0: int = 0, *, label: str = "", lag: bool = False) -> None:
    """NonFiniteError naming ``what`` (``label`` in the message, if given) and the step t0 + i of
    the first row a[i] that is not finite (with ``lag``: the rows are lags L, and step is None).
    Call it inside np.errstate(**QUIET)."""
    i = first_nonfinite(a)
    if i is not None:
        where = f"lag L = {t0 + i}" if lag else f"t = {t0 + i}"
        raise NonFiniteError(
            f"{label or what}: not finite (NaN or inf) at {where}: the computation overflowed in {a.dtype}",
            what=what,
            step=None if lag else t0 + i,
        )


def _step_norms(col_norms: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """(n,) the norm of each step's columns, from the norms of its columns (col_norms (m,), each
    column's step in ``step`` (m,), every step 0..n-1 having one at least), without overflow."""
    top = np.zeros(n)
    np.maximum.at(top, step, col_norms)  # the largest column of each step
    ratio = col_norms / np.where(top > 0, top, 1)[step]
    return top * np.sqrt(np.bincount(step, weights=ratio * ratio, minlength=n))


def _check_step(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer step, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected {lo} <= {name} <= {hi}, got {value}")
    return int(value)


class TermView:
    """Lazy (T, T, ...) view of one parameter's terms: ``view[t, k]`` computes one term.

    ``view[t, k]`` for 0 <= t, k < T; zero when k > t. ``view.full()`` (or
    ``np.asarray(view)``) materializes the whole tensor, refused past ``max_bytes``.
    """

    def __init__(self, owner: Decomposition, name: str) -> None:
        self._owner = owner
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        """(T, T) + the parameter's shape."""
        u = self._owner._u
        T = u.T
        return {"W": (T, T, u.GH, u.H), "U": (T, T, u.GH, u.D)}.get(self.name, (T, T, u.GH))

    def __getitem__(self, index: tuple[int, int]) -> np.ndarray:
        if not (isinstance(index, tuple) and len(index) == 2):
            raise ValueError(f"terms.{self.name}[t, k]: expected two integer indices, got {index!r}")
        T = self._owner.T
        t = _check_step("t", index[0], 0, T - 1)
        k = _check_step("k", index[1], 0, T - 1)
        if k > t:
            return np.zeros(self.shape[2:], dtype=self._owner.dtype)
        with np.errstate(**QUIET):  # overflow is named, never a warning
            dgi, dgh = self._owner._signals(t, k)
            term = self._owner._term(self.name, dgi, dgh, k)
            _check_finite_rows(f"term_{self.name}", term[None], t, label=f"term_{self.name}[{t}, {k}]")
        return term

    def full(self) -> np.ndarray:
        """The whole (T, T, ...) tensor, computed lag by lag in O(T^2) recursion steps."""
        return self._owner._full(self.name)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        a = self.full()
        return a if dtype is None else a.astype(dtype)


class Decomposition:
    """The (t, k) terms of the seed's sum and each of their factors, computed on demand.

    Built by :func:`decompose`. Attributes ``W``, ``U`` and the biases (``b`` for the Elman
    cell, ``b_ih`` and ``b_hh`` for a gated cell; None where the model has none) are lazy term
    views. Sums: sum over t and k of ``W[t, k]`` equals ``bptt(...).grads.W``; likewise the others.

    The factors of term (t, k), in the caller's layout ((...) unbatched, (B, ...) batched),
    with S the state size (H; 2H for the LSTM's s = [h; c]) and G*H the stacked gate rows:
        dE_dyhat(t)  (K,)          dE_t/dy_hat_t
        dyhat_ds(t)  (K, S)        dy_hat_t/ds_t = (diag(y_hat_t) - y_hat_t y_hat_t^T) V [I_H 0]
        dE_ds(t)     (S,)          dE_t/ds_t, their product, computed stably as V^T dE_t/do_t
        ds_ds(t, k)  (S, S)        ds_t/ds_k
        ds_dW(k)     (S, G*H, H)   ∂s_k/∂W, immediate: [i, m, n] = Jh_k[i, m] h_{k-1}[n]
        ds_dU(k)     (S, G*H, D)   ∂s_k/∂U, immediate: [i, m, n] = Ji_k[i, m] x_k[n]
        ds_db(k)     (H, H)        ∂s_k/∂b = diag(f'(a_k)) (Elman cell)
        ds_db_ih(k), ds_db_hh(k)   (S, G*H)  Ji_k, Jh_k (gated cells)
    so that term_W[t, k] = sum over the batch of dE_ds(t) · ds_ds(t, k) · ds_dW(k).
    """

    def __init__(self, u: Unrolled, max_bytes: int) -> None:
        self._u = u
        self.batch = u.prep
        self.loss = u.loss
        self.max_bytes = max_bytes
        self.H, self.D, self.K, self.dtype = u.H, u.D, u.K, u.dtype
        self.W = TermView(self, "W")
        self.U = TermView(self, "U")
        names = u.bias_names
        self.b = TermView(self, "b") if "b" in names else None
        self.b_ih = TermView(self, "b_ih") if "b_ih" in names else None
        self.b_hh = TermView(self, "b_hh") if "b_hh" in names else None

    @property
    def T(self) -> int:
        return self._u.T

    def _names(self) -> tuple[str, ...]:
        return ("W", "U", *self._u.bias_names)

    # -- the signals dgi_k^{(t)}, dgh_k^{(t)} and the terms -----------------------------------
    def _signals(self, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(dE_t/dgi_k, dE_t/dgh_k), (B, G*H) each, through steps k..t only. Requires k <= t."""
        u = self._u
        g = u.e[t]  # dE_t/ds_t
        for j in range(t, k - 1, -1):
            g, dgi, dgh = u.cell.backward(u.w, g, u.step(j))  # through step j: dE_t/ds_{j-1}
        return dgi, dgh

    def _term(self, name: str, dgi: np.ndarray, dgh: np.ndarray, k: int) -> np.ndarray:
        """term_name[t, k] from that pair's signals (B, G*H), summed over the batch."""
        u = self._u
        if name == "W":
            return dgh.T @ u.h_prev(k)  # dgh^T h_{k-1}
        if name == "U":
            if u.tokens is None:
                return dgi.T @ u.X[k]  # dgi^T x_k
            out = np.zeros((u.GH, u.D), dtype=u.dtype)
            np.add.at(out.T, u.tokens[k], dgi)  # column x_k[b] collects dgi[b]: dgi^T onehot(x_k)
            return out
        return (dgh if name == "b_hh" else dgi).sum(axis=0)  # b (= b_ih) or b_hh

    def _full(self, name: str) -> np.ndarray:
        u = self._u
        view = getattr(self, name)
        check_bytes(f"terms.{name}", view.shape, u.dtype, self.max_bytes, _FULL_HINT)
        T, B, GH = u.T, u.B, u.GH
        out = np.zeros(view.shape, dtype=u.dtype)
        ks = np.arange(T)
        h_prev = u.h_prev(slice(0, T))
        with np.errstate(**QUIET):  # overflow is named, never a warning
            for L, dgi, dgh, _ in lag_backprop(u.cell, u.w, u.cache, u.e, T - 1):
                n = T - L
                rows, cols = ks[:n] + L, ks[:n]
                if name == "W":
                    out[rows, cols] = _outer_sums(dgh, h_prev[:n])
                elif name == "U" and u.tokens is None:
                    out[rows, cols] = _outer_sums(dgi, u.X[:n])
                elif name == "U":
                    at = (np.repeat(rows, B), np.repeat(cols, B), slice(None), u.tokens[:n].reshape(-1))
                    np.add.at(out, at, dgi.reshape(n * B, GH))  # column x_k[b] collects dgi[b]
                else:
                    out[rows, cols] = (dgh if name == "b_hh" else dgi).sum(axis=1)
            _check_finite_rows(f"term_{name}", out, label=f"terms.{name}.full(): term_{name}[t, k]")
        return out

    def iter_t(self) -> Iterator[StepTerms]:
        """Yield StepTerms for t = 0..T-1; memory O(T * G*H * max(H, D)) at a time."""
        u = self._u
        for t in range(self.T):
            shapes = {"W": (u.GH, u.H), "U": (u.GH, u.D)}
            terms = {n: np.empty((t + 1, *shapes.get(n, (u.GH,))), dtype=u.dtype) for n in self._names()}
            g = u.e[t]
            with np.errstate(**QUIET):  # overflow is named, never a warning
                for k in range(t, -1, -1):
                    g, dgi, dgh = u.cell.backward(u.w, g, u.step(k))  # signals of (t, k); g = dE_t/ds_{k-1}
                    for n, arr in terms.items():
                        arr[k] = self._term(n, dgi, dgh, k)
                for n, arr in terms.items():
                    _check_finite_rows(f"term_{n}", arr[None], t, label=f"terms.iter_t(): term_{n}[{t}, k]")
            yield StepTerms(
                t=t,
                W=terms["W"],
                U=terms["U"],
                b=terms.get("b"),
                b_ih=terms.get("b_ih"),
                b_hh=terms.get("b_hh"),
            )

    def _token_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """For token inputs: (group of each (t, b) row, step of each group), grouping the rows
        of one step with the same token, so that term_U[t, k]'s columns are sums of its rows."""
        u = self._u
        keys = (np.arange(u.T)[:, None] * u.D + u.tokens).reshape(-1)  # (T*B,), sorted by step
        uniq, group = np.unique(keys, return_inverse=True)
        return group.reshape(-1), uniq // u.D

    def norms(self) -> TermNorms:
        """Norms of every term, (T, T) each, computed lag by lag without the full tensors.

        Refused (TooLargeError) when the (T, T) norms exceed max_bytes. Token inputs never
        build a (G*H, D) term: the columns of term_U are the sums of dgi over equal tokens.
        """
        u = self._u
        T, B, GH = u.T, u.B, u.GH
        names = self._names()
        check_bytes(
            "terms.norms(): the (T, T) norms of every parameter's terms",
            (len(names), T, T),
            np.float64,
            self.max_bytes,
            "Use terms.iter_t(), or pass a larger max_bytes",
        )
        out = {n: np.zeros((T, T)) for n in names}
        ks = np.arange(T)
        h_prev = u.h_prev(slice(0, T))
        if u.tokens is not None:
            group, group_step = self._token_groups()
        with np.errstate(**QUIET):  # overflow is named, never a warning
            for L, dgi, dgh, _ in lag_backprop(u.cell, u.w, u.cache, u.e, T - 1):
                n = T - L
                at = (ks[:n] + L, ks[:n])
                out["W"][at] = _fro(_outer_sums(dgh, h_prev[:n]))
                if u.tokens is None:
                    out["U"][at] = _fro(_outer_sums(dgi, u.X[:n]))
                else:
                    m = int(np.searchsorted(group_step, n))  # the groups of the steps k < n
                    cols = np.zeros((m, GH), dtype=u.dtype)
                    np.add.at(cols, group[: n * B], dgi.reshape(n * B, GH))  # the nonzero columns
                    out["U"][at] = _step_norms(_norms(cols, (1,)), group_step[:m], n)
                for name in u.bias_names:
                    out[name][at] = _norms((dgh if name == "b_hh" else dgi).sum(axis=1), (1,))
            for name, a in out.items():  # a term, or its norm, overflowed
                _check_finite_rows(f"||term_{name}||", a, label=f"terms.norms(): ||term_{name}[t, k]||")
        return TermNorms(W=out["W"], U=out["U"], b=out.get("b"), b_ih=out.get("b_ih"), b_hh=out.get("b_hh"))

    # -- the named factors ----------------------------------------------------------------
    def _y_hat(self, t: int) -> np.ndarray:
        """softmax(o_t), (B, K), for the literal factors only (the gradients come from the output
        layer's softmax cross-entropy, in dE_ds)."""
        u = self._u
        return softmax(logits(u.s[t + 1][:, : u.H], u.V.T, u.c))  # y_hat_t = softmax(V h_t + c)

    def dE_dyhat(self, t: int) -> np.ndarray:
        """dE_t/dy_hat_t = -w_t / y_hat_t[y_t] at y_t, 0 elsewhere: (K,) or (B, K).

        The literal factor of the seed; for a counted target it is -inf if y_hat_t[y_t]
        underflows to 0, which is why gradients use the combined, stable dE_ds(t). Targets
        that are not counted (mask False) give exactly 0.
        """
        t = _check_step("t", t, 0, self.T - 1)
        u = self._u
        y_hat = self._y_hat(t)
        rows = np.arange(u.B)
        out = np.zeros_like(y_hat)
        y, w = u.Y[t], u.weight[t]
        counted = w != 0  # a target that is not counted contributes exactly 0, even if y_hat[y] = 0
        with np.errstate(divide="ignore"):
            out[rows[counted], y[counted]] = -w[counted] / y_hat[rows[counted], y[counted]]
        return u.out(out)

    def dyhat_ds(self, t: int) -> np.ndarray:
        """dy_hat_t/ds_t = (diag(y_hat_t) - y_hat_t y_hat_t^T) V [I_H 0]: (K, S) or (B, K, S)."""
        t = _check_step("t", t, 0, self.T - 1)
        u = self._u
        y_hat = self._y_hat(t)
        J = np.einsum("bi,ij->bij", y_hat, np.eye(u.K)) - y_hat[:, :, None] * y_hat[:, None, :]
        out = np.zeros((u.B, u.K, u.S), dtype=u.dtype)
        out[:, :, : u.H] = J @ u.V
        return u.out(out)

    def dE_ds(self, t: int) -> np.ndarray:
        """dE_t/ds_t = [V^T w_t (y_hat_t - onehot(y_t)); 0]: (S,) or (B, S)."""
        t = _check_step("t", t, 0, self.T - 1)
        return self._u.out(self._u.e[t].copy())

    def ds_ds(self, t: int, k: int) -> np.ndarray:
        """ds_t/ds_k = A_t ... A_{k+1}: (S, S) or (B, S, S); k = -1 is s0."""
        t = _check_step("t", t, 0, self.T - 1)
        k = _check_step("k", k, -1, t)
        return self._u.out(_jacobian(self._u, t, k))

    def _immediate(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Ji, Jh) of a checked step k, (B, S, G*H) each."""
        u = self._u
        Ji, Jh, _ = u.cell.partials(u.w, u.step(k))
        return Ji, Jh

    def ds_dW(self, k: int) -> np.ndarray:
        """∂s_k/∂W with s_{k-1} held fixed: (S, G*H, H) or (B, S, G*H, H), [i, m, n]."""
        k = _check_step("k", k, 0, self.T - 1)
        Jh = self._immediate(k)[1]
        return self._u.out(np.einsum("bim,bn->bimn", Jh, self._u.h_prev(k)))  # Jh[i, m] h_{k-1}[n]

    def ds_dU(self, k: int) -> np.ndarray:
        """∂s_k/∂U with s_{k-1} held fixed: (S, G*H, D) or (B, S, G*H, D), [i, m, n]."""
        k = _check_step("k", k, 0, self.T - 1)
        Ji = self._immediate(k)[0]
        return self._u.out(np.einsum("bim,bn->bimn", Ji, self._u.x_rows(k)))  # Ji[i, m] x_k[n]

    def ds_db(self, k: int) -> np.ndarray:
        """∂s_k/∂b = diag(f'(a_k)) of the Elman cell: (H, H) or (B, H, H)."""
        if self._u.cell is not ELMAN:
            raise ValueError("ds_db: the Elman cell's bias b; a gated cell has ds_db_ih and ds_db_hh")
        k = _check_step("k", k, 0, self.T - 1)
        return self._u.out(self._immediate(k)[0])

    def ds_db_ih(self, k: int) -> np.ndarray:
        """∂s_k/∂b_ih = Ji_k: (S, G*H) or (B, S, G*H)."""
        k = _check_step("k", k, 0, self.T - 1)
        return self._u.out(self._immediate(k)[0])

    def ds_db_hh(self, k: int) -> np.ndarray:
        """∂s_k/∂b_hh = Jh_k: (S, G*H) or (B, S, G*H)."""
        k = _check_step("k", k, 0, self.T - 1)
        return self._u.out(self._immediate(k)[1])

    # -- diagnostics ----------------------------------------------------------------------
    def lag_profile(self) -> LagProfile:
        """Norms of the terms and of ds_t/ds_{t-L} for each lag L; see LagProfile.

        Costs O(T^2 B S^2 G H) for the Jacobians; refused (TooLargeError), before anything is
        allocated, when the Jacobians of one lag (T, B, S, S), the step caches repeated once
        per state row, or the (T, T) term norms (norms()) exceed max_bytes.
        """
        u = self._u
        T, B, S = u.T, u.B, u.S
        width = sum(int(np.prod(f.shape[1:])) for f in u.cache if f is not None)
        limit = self.max_bytes
        # (the refusals name the state z_t, as they always have)
        check_bytes("lag_profile: the Jacobians dz_{k+L}/dz_k of one lag", (T, B, S, S), u.dtype, limit)
        check_bytes("lag_profile: the step caches, one copy per state row", (T, B * S, width), u.dtype, limit)
        check_bytes("lag_profile: the (T, T) term norms", (len(self._names()), T, T), np.float64, limit)
        term_W = _LagStats.zeros(T)
        fro, spec = _LagStats.zeros(T), _LagStats.zeros(T)
        nW = self.norms().W
        ks = np.arange(T)
        J = np.broadcast_to(np.eye(S, dtype=u.dtype), (T, B, S, S)).copy()  # lag 0: the identity
        with np.errstate(**QUIET):  # overflow is named, never a warning
            for L in range(T):
                n = T - L
                if L > 0:
                    # J_L[k] = ds_{k+L}/ds_k = ds_{k+L}/ds_{k+1} · A_{k+1} = J_{L-1}[k+1] A_{k+1}, row by row
                    steps = repeat_rows(cache_rows(u.cache, B, (n + 1) * B), S)
                    J = u.cell.backward(u.w, J[1:].reshape(n * B * S, S), steps)[0].reshape(n, B, S, S)
                    label = f"lag_profile: dz_{{k+{L}}}/dz_k"  # (the messages name the state z_t)
                    _check_finite_rows("dz_{k+L}/dz_k", J, L, label=label)
                term_W.put(L, nW[ks[:n] + L, ks[:n]])
                fro.put(L, _norms(J, (2, 3)))
                spec.put(L, np.linalg.norm(J, ord=2, axis=(2, 3)))  # LAPACK scales: no overflow
            for name, stats in (("||dz_{k+L}/dz_k||_F", fro), ("||dz_{k+L}/dz_k||_2", spec)):
                # finite Jacobians whose norm is past the largest float
                _check_finite_rows(name, stats.max, label=f"lag_profile: {name}", lag=True)
        return LagProfile(
            lag=np.arange(T),
            term_W_mean=term_W.mean,
            term_W_max=term_W.max,
            jac_fro_mean=fro.mean,
            jac_fro_max=fro.max,
            jac_spec_mean=spec.mean,
            jac_spec_max=spec.max,
        )


def _jacobian(u: Unrolled, t: int, k: int) -> np.ndarray:
    """ds_t/ds_k, (B, S, S), for -1 <= k <= t (k = -1: the initial state s0): row i is
    e_i^T carried back from step t through steps t..k+1, the same products as lag_profile's."""
    B, S = u.B, u.S
    rows = np.broadcast_to(np.eye(S, dtype=u.dtype), (B, S, S)).reshape(B * S, S).copy()
    with np.errstate(**QUIET):  # overflow is named, never a warning
        J = chain_back(u.cell, u.w, u.cache, B, rows, t, k).reshape(B, S, S)
        if not all_finite(J):  # (the messages name the state z_t)
            raise NonFiniteError(
                f"dz_{t}/dz_{k}: not finite (NaN or inf): the product of the step Jacobians overflowed "
                f"in {J.dtype}",
                what="dz_t/dz_k",
                step=t,
            )
    return J


def step_jacobians(u: Unrolled, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A_k, Ji_k, Jh_k) of step k: A_k = ds_k/ds_{k-1} (B, S, S), Ji_k, Jh_k (B, S, G*H)."""
    return step_jacobian(u.cell, u.w, u.step(k))


def decompose(
    p: object,
    xs: object,
    ys: object,
    *,
    activation: str | None = None,
    s0: object | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = MAX_FULL_BYTES,
) -> Decomposition:
    """The terms of the seed's explicit sum over k; same inputs and checks as bptt.

    Args:
        p: RNNParams (the Elman cell), GRUParams or LSTMParams.
        xs, ys, s0, reduction, mask: as for :func:`manual_bptt.bptt` (an LSTM's s0 is an
            LSTMState(h, c) or an (h, c) pair).
        activation: the Elman cell's f (None: "tanh"); with a gated cell it must be None.
        max_bytes: size limit of what the decomposition materializes: a full (T, T, ...)
            tensor, the (T, T) norms, lag_profile's Jacobians (default MAX_FULL_BYTES = 1 GiB);
            larger ones raise TooLargeError before they are allocated. The forward run's arrays,
            linear in T, are held to max(max_bytes, MAX_FULL_BYTES).

    Returns:
        A Decomposition: ``terms.W[t, k]`` (G*H, H), ``terms.U[t, k]`` (G*H, D), and the
        biases' ``terms.b[t, k]`` (H,) (Elman) or ``terms.b_ih[t, k]``, ``terms.b_hh[t, k]``
        (G*H,) (gated), each summed over the batch and zero for k > t.
    """
    max_bytes = check_max_bytes(max_bytes)
    u = unroll(
        p,
        xs,
        ys,
        activation=activation,
        s0=s0,
        reduction=reduction,
        mask=mask,
        max_bytes=max(max_bytes, DEFAULT_MAX_BYTES),  # a small max_bytes limits what is materialized
        owned=True,  # the terms are computed lazily, after this call returns
    )
    return Decomposition(u, max_bytes)


def state_jacobian(
    p: object,
    xs: object,
    t: int,
    k: int,
    *,
    activation: str | None = None,
    s0: object | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """ds_t/ds_k = A_t ... A_{k+1} with A_j = ds_j/ds_{j-1}, the identity when t == k.

    For the Elman cell A_j = diag(f'(a_j)) W; the state s_t is the Elman s_t or the GRU's h_t (H,), or
    [h_t; c_t] (LSTM: (2H,)).

    Args:
        p, xs, activation, s0: as for :func:`decompose` (no labels needed).
        t: 0 <= t <= T-1.  k: -1 <= k <= t, where k = -1 means the initial state.
        max_bytes: size limit of the forward run's arrays (TooLargeError past it).

    Returns:
        (S, S) for unbatched xs, (B, S, S) for batched xs (one Jacobian per sequence).
    """
    max_bytes = check_max_bytes(max_bytes)
    u = unroll(
        p, xs, None, activation=activation, s0=s0, max_bytes=max_bytes, what="state_jacobian", labels=False
    )
    t = _check_step("t", t, 0, u.T - 1)
    k = _check_step("k", k, -1, t)
    return u.out(_jacobian(u, t, k))
