"""The seed's explicit sum over k, term by term, and the state Jacobians ds_t/ds_k.

    dE/dW = sum_t dE_t/dW,     dE_t/dW = sum_{k=0..t} dE_t/dy_hat_t · dy_hat_t/ds_t · ds_t/ds_k · ∂s_k/∂W

with ds_t/ds_k = prod_{j=k+1..t} diag(f'(a_j)) W (the identity when t = k) and ∂s_k/∂W the
*immediate* partial, s_{k-1} held fixed: ∂s_k[i]/∂W[m, n] = [i = m] f'(a_k)[i] s_{k-1}[n].
The same holds for U (with x_k in place of s_{k-1}) and b.

In code, with delta_{t,k} := dE_t/ds_t · ds_t/ds_k · diag(f'(a_k)), a row vector (H,):

    term_W[t, k] = delta_{t,k}^T s_{k-1}     term_U[t, k] = delta_{t,k}^T x_k     term_b[t, k] = delta_{t,k}

Batched inputs: every term is summed over the batch (E_t is the batch's loss at time t).
The full tensor of W terms holds T*T*H*H numbers, so terms are computed lazily: one (t, k)
at a time (``terms.W[t, k]``), all k of one t (``terms.iter_t()``), as norms only
(``terms.norms()``), or as the full tensor (``terms.W.full()``), which is refused past a
documented size limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._inputs import Batch, check_max_bytes, prepare
from .core import Trace, lag_deltas, output_layer, run_forward
from .params import RNNParams

#: Default limit, in bytes, for materializing a full (T, T, ...) tensor of terms or Jacobians.
MAX_FULL_BYTES = 1 << 30  # 1 GiB


class TooLargeError(ValueError):
    """A full tensor of terms would exceed the size limit (``max_bytes``)."""


@dataclass(frozen=True, eq=False)
class StepTerms:
    """All terms of one output step t: index k = 0..t.

    Attributes:
        t: the output step.
        W: (t+1, H, H) term_W[t, k] for k = 0..t.
        U: (t+1, H, D) term_U[t, k].
        b: (t+1, H) term_b[t, k], or None when the model has no b.
    """

    t: int
    W: np.ndarray
    U: np.ndarray
    b: np.ndarray | None


@dataclass(frozen=True, eq=False)
class TermNorms:
    """Frobenius norms of the terms, (T, T) each, zero where k > t.

    Attributes:
        W, U: ||term_W[t, k]||_F, ||term_U[t, k]||_F.  b: ||term_b[t, k]||_2, or None.
    """

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray | None


@dataclass(frozen=True, eq=False)
class LagProfile:
    """Vanishing / exploding gradients as numbers, for each lag L = t - k = 0..T-1.

    Term norms are taken over the pairs (t, t - L); Jacobian norms over the pairs and the
    batch rows. All arrays have shape (T,).

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


def _check_step(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer step, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: expected {lo} <= {name} <= {hi}, got {value}")
    return int(value)


def _guard(what: str, shape: tuple[int, ...], itemsize: int, max_bytes: int) -> None:
    size = int(np.prod(shape, dtype=np.int64)) * itemsize
    if size > max_bytes:
        raise TooLargeError(
            f"{what}: the full tensor of shape {shape} would take {size} bytes ({size / 2**20:.1f} MiB), "
            f"over the limit of {max_bytes} bytes ({max_bytes / 2**20:.1f} MiB, max_bytes). Index one term "
            f"at a time (terms.W[t, k]), iterate with terms.iter_t(), use terms.norms(), or pass a larger "
            f"max_bytes."
        )


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
        o = self._owner
        T = o.batch.T
        return {"W": (T, T, o.H, o.H), "U": (T, T, o.H, o.D), "b": (T, T, o.H)}[self.name]

    def __getitem__(self, index: tuple[int, int]) -> np.ndarray:
        if not (isinstance(index, tuple) and len(index) == 2):
            raise ValueError(f"terms.{self.name}[t, k]: expected two integer indices, got {index!r}")
        T = self._owner.batch.T
        t = _check_step("t", index[0], 0, T - 1)
        k = _check_step("k", index[1], 0, T - 1)
        if k > t:
            return np.zeros(self.shape[2:], dtype=self._owner.dtype)
        return self._owner._term(self.name, self._owner.delta(t, k), k)

    def full(self) -> np.ndarray:
        """The whole (T, T, ...) tensor, computed lag by lag in O(T^2) recursion steps."""
        return self._owner._full(self.name)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        a = self.full()
        return a if dtype is None else a.astype(dtype)


class Decomposition:
    """The (t, k) terms of the seed's sum and each of their factors, computed on demand.

    Built by :func:`decompose`. Attributes ``W``, ``U``, ``b`` are lazy term views
    (``b`` is None when the model has no b). Sums: sum over t and k of ``W[t, k]`` equals
    ``bptt(...).grads.W``; likewise U and b.

    The factors of term (t, k), in the caller's layout ((...) unbatched, (B, ...) batched):
        dE_dyhat(t)  (K,)       dE_t/dy_hat_t
        dyhat_ds(t)  (K, H)     dy_hat_t/ds_t = (diag(y_hat_t) - y_hat_t y_hat_t^T) V
        dE_ds(t)     (H,)       dE_t/ds_t, their product, computed stably as V^T dE_t/do_t
        ds_ds(t, k)  (H, H)     ds_t/ds_k
        ds_dW(k)     (H, H, H)  ∂s_k/∂W, immediate: [i, m, n] = [i = m] f'(a_k)[i] s_{k-1}[n]
        ds_dU(k)     (H, H, D)  ∂s_k/∂U, immediate: [i, m, n] = [i = m] f'(a_k)[i] x_k[n]
        ds_db(k)     (H, H)     ∂s_k/∂b = diag(f'(a_k))
    so that term_W[t, k] = sum over the batch of dE_ds(t) · ds_ds(t, k) · ds_dW(k).
    """

    def __init__(self, tr: Trace, dO: np.ndarray, loss: float, max_bytes: int) -> None:
        self._tr = tr
        self.batch: Batch = tr.batch
        self.loss = loss
        self.max_bytes = max_bytes
        self.H, self.D, self.K, self.dtype = tr.batch.H, tr.batch.D, tr.batch.K, tr.batch.dtype
        T, B, H, K = self.batch.T, self.batch.B, self.H, self.K
        self._e = (dO.reshape(T * B, K) @ tr.V).reshape(T, B, H)  # dE_t/ds_t, (T, B, H)
        self.W = TermView(self, "W")
        self.U = TermView(self, "U")
        self.b = TermView(self, "b") if tr.b is not None else None

    @property
    def T(self) -> int:
        return self.batch.T

    # -- the error signal delta_{t,k} and the terms ------------------------------------
    def delta(self, t: int, k: int) -> np.ndarray:
        """delta_{t,k} = dE_t/da_k through steps k..t only, (B, H). Requires k <= t."""
        tr = self._tr
        d = self._e[t] * tr.fprime[t]  # delta_{t,t} = dE_t/ds_t * f'(a_t)
        for j in range(t, k, -1):
            d = (d @ tr.W) * tr.fprime[j - 1]  # delta_{t,j-1} = (W^T delta_{t,j}) * f'(a_{j-1})
        return d

    def _input_rows(self, k: np.ndarray | int) -> np.ndarray:
        """x_k as dense rows, (B, D) (or (n, B, D) for an index array)."""
        if self.batch.tokens is not None:
            return np.eye(self.D, dtype=self.dtype)[self.batch.tokens[k]]
        return self.batch.X[k]

    def _s_prev_rows(self, k: np.ndarray | int) -> np.ndarray:
        """s_{k-1}, (B, H) (or (n, B, H) for an index array); s_{-1} = s0."""
        return self._tr.s_in[k]

    def _term(self, name: str, delta: np.ndarray, k: int) -> np.ndarray:
        """term_name[t, k] from delta_{t,k}, (B, H), summed over the batch."""
        if name == "W":
            return delta.T @ self._s_prev_rows(k)  # delta^T s_{k-1}
        if name == "U":
            return delta.T @ self._input_rows(k)  # delta^T x_k
        return delta.sum(axis=0)  # delta

    def _full(self, name: str) -> np.ndarray:
        view = getattr(self, name)
        _guard(f"terms.{name}", view.shape, self.dtype.itemsize, self.max_bytes)
        T = self.T
        out = np.zeros(view.shape, dtype=self.dtype)
        ks = np.arange(T)
        prev = self._s_prev_rows(ks) if name == "W" else self._input_rows(ks) if name == "U" else None
        for L, Q in lag_deltas(self._tr, self._e, T - 1):
            n = T - L
            if name == "b":
                out[ks[:n] + L, ks[:n]] = Q.sum(axis=1)
            else:
                out[ks[:n] + L, ks[:n]] = np.einsum("kbi,kbj->kij", Q, prev[:n])
        return out

    def iter_t(self) -> Iterator[StepTerms]:
        """Yield StepTerms for t = 0..T-1; memory O(T * H * max(H, D)) at a time."""
        for t in range(self.T):
            W_t = np.empty((t + 1, self.H, self.H), dtype=self.dtype)
            U_t = np.empty((t + 1, self.H, self.D), dtype=self.dtype)
            b_t = np.empty((t + 1, self.H), dtype=self.dtype) if self.b is not None else None
            d = self._e[t] * self._tr.fprime[t]
            for k in range(t, -1, -1):
                W_t[k] = self._term("W", d, k)
                U_t[k] = self._term("U", d, k)
                if b_t is not None:
                    b_t[k] = d.sum(axis=0)
                if k > 0:
                    d = (d @ self._tr.W) * self._tr.fprime[k - 1]
            yield StepTerms(t=t, W=W_t, U=U_t, b=b_t)

    def norms(self) -> TermNorms:
        """Norms of every term, (T, T) each, computed lag by lag without the full tensors."""
        T = self.T
        ks = np.arange(T)
        nW, nU = np.zeros((T, T)), np.zeros((T, T))
        nb = np.zeros((T, T)) if self.b is not None else None
        prev_s, x = self._s_prev_rows(ks), self._input_rows(ks)
        for L, Q in lag_deltas(self._tr, self._e, T - 1):
            n = T - L
            rows, cols = ks[:n] + L, ks[:n]
            nW[rows, cols] = np.linalg.norm(np.einsum("kbi,kbj->kij", Q, prev_s[:n]), axis=(1, 2))
            nU[rows, cols] = np.linalg.norm(np.einsum("kbi,kbj->kij", Q, x[:n]), axis=(1, 2))
            if nb is not None:
                nb[rows, cols] = np.linalg.norm(Q.sum(axis=1), axis=1)
        return TermNorms(W=nW, U=nU, b=nb)

    # -- the named factors ----------------------------------------------------------------
    def _out(self, a: np.ndarray) -> np.ndarray:
        """(B, ...) -> (...) for unbatched inputs."""
        return a if self.batch.batched else a[0]

    def _softmax(self, t: int) -> np.ndarray:
        o = self._tr.s[t] @ self._tr.V.T
        if self._tr.c is not None:
            o = o + self._tr.c
        y = np.exp(o - o.max(axis=-1, keepdims=True))
        return y / y.sum(axis=-1, keepdims=True)

    def dE_dyhat(self, t: int) -> np.ndarray:
        """dE_t/dy_hat_t = -w_t / y_hat_t[y_t] at y_t, 0 elsewhere: (K,) or (B, K).

        The literal factor of the seed; for a counted target it is -inf if y_hat_t[y_t]
        underflows to 0, which is why gradients use the combined, stable dE_ds(t). Targets
        that are not counted (mask False) give exactly 0.
        """
        t = _check_step("t", t, 0, self.T - 1)
        y_hat = self._softmax(t)
        rows = np.arange(self.batch.B)
        out = np.zeros_like(y_hat)
        y = self.batch.Y[t]
        w = self.batch.weight[t]
        counted = w != 0  # a target that is not counted contributes exactly 0, even if y_hat[y] = 0
        with np.errstate(divide="ignore"):
            out[rows[counted], y[counted]] = -w[counted] / y_hat[rows[counted], y[counted]]
        return self._out(out)

    def dyhat_ds(self, t: int) -> np.ndarray:
        """dy_hat_t/ds_t = (diag(y_hat_t) - y_hat_t y_hat_t^T) V: (K, H) or (B, K, H)."""
        t = _check_step("t", t, 0, self.T - 1)
        y_hat = self._softmax(t)
        J = np.einsum("bi,ij->bij", y_hat, np.eye(self.K)) - y_hat[:, :, None] * y_hat[:, None, :]
        return self._out(J @ self._tr.V)

    def dE_ds(self, t: int) -> np.ndarray:
        """dE_t/ds_t = V^T w_t (y_hat_t - onehot(y_t)): (H,) or (B, H)."""
        t = _check_step("t", t, 0, self.T - 1)
        return self._out(self._e[t].copy())

    def ds_ds(self, t: int, k: int) -> np.ndarray:
        """ds_t/ds_k = prod_{j=k+1..t} diag(f'(a_j)) W: (H, H) or (B, H, H); k = -1 is s0."""
        t = _check_step("t", t, 0, self.T - 1)
        k = _check_step("k", k, -1, t)
        return self._out(_jacobian(self._tr, t, k))

    def _immediate(self, k: int, rows: np.ndarray) -> np.ndarray:
        """[b, i, m, n] = [i = m] f'(a_k)[b, i] rows[b, n], for a checked step k."""
        fp = self._tr.fprime[k]  # (B, H)
        eye = np.eye(self.H, dtype=self.dtype)
        # [b, i, m, n] = [i = m] f'(a_k)[b, i] rows[b, n]
        return self._out(np.einsum("im,bi,bn->bimn", eye, fp, rows))

    def ds_dW(self, k: int) -> np.ndarray:
        """∂s_k/∂W with s_{k-1} held fixed: (H, H, H) or (B, H, H, H), [i, m, n]."""
        k = _check_step("k", k, 0, self.T - 1)
        return self._immediate(k, self._tr.s_prev(k))

    def ds_dU(self, k: int) -> np.ndarray:
        """∂s_k/∂U with s_{k-1} held fixed: (H, H, D) or (B, H, H, D), [i, m, n]."""
        k = _check_step("k", k, 0, self.T - 1)
        return self._immediate(k, self._input_rows(k))

    def ds_db(self, k: int) -> np.ndarray:
        """∂s_k/∂b = diag(f'(a_k)): (H, H) or (B, H, H)."""
        k = _check_step("k", k, 0, self.T - 1)
        return self._out(np.einsum("im,bi->bim", np.eye(self.H, dtype=self.dtype), self._tr.fprime[k]))

    # -- diagnostics ----------------------------------------------------------------------
    def lag_profile(self) -> LagProfile:
        """Norms of the terms and of ds_t/ds_{t-L} for each lag L; see LagProfile.

        Costs O(T^2 B H^3) for the Jacobians; refused (TooLargeError) when the Jacobians of
        one lag, (T, B, H, H), exceed max_bytes.
        """
        T, B, H = self.T, self.batch.B, self.H
        _guard("lag_profile Jacobians", (T, B, H, H), self.dtype.itemsize, self.max_bytes)
        nW = self.norms().W
        ks = np.arange(T)
        out = {k: np.zeros(T) for k in ("tw_mean", "tw_max", "fm", "fx", "sm", "sx")}
        J = np.broadcast_to(np.eye(H, dtype=self.dtype), (T, B, H, H)).copy()  # lag 0: identity
        for L in range(T):
            n = T - L
            if L > 0:
                # J_L[k] = ds_{k+L}/ds_k = diag(f'(a_{k+L})) W J_{L-1}[k]
                J = self._tr.fprime[L:, :, :, None] * (self._tr.W @ J[:n])
            tw = nW[ks[:n] + L, ks[:n]]
            fro = np.linalg.norm(J, axis=(2, 3))
            spec = np.linalg.norm(J, ord=2, axis=(2, 3))
            out["tw_mean"][L], out["tw_max"][L] = tw.mean(), tw.max()
            out["fm"][L], out["fx"][L] = fro.mean(), fro.max()
            out["sm"][L], out["sx"][L] = spec.mean(), spec.max()
        return LagProfile(
            lag=np.arange(T),
            term_W_mean=out["tw_mean"],
            term_W_max=out["tw_max"],
            jac_fro_mean=out["fm"],
            jac_fro_max=out["fx"],
            jac_spec_mean=out["sm"],
            jac_spec_max=out["sx"],
        )


def _jacobian(tr: Trace, t: int, k: int) -> np.ndarray:
    """ds_t/ds_k, (B, H, H), for -1 <= k <= t (k = -1: the initial state s0)."""
    B, H = tr.batch.B, tr.batch.H
    J = np.broadcast_to(np.eye(H, dtype=tr.a.dtype), (B, H, H)).copy()
    for j in range(k + 1, t + 1):
        J = tr.fprime[j][:, :, None] * (tr.W @ J)  # ds_j/ds_k = diag(f'(a_j)) W ds_{j-1}/ds_k
    return J


def decompose(
    p: RNNParams,
    xs: object,
    ys: object,
    *,
    activation: str = "tanh",
    s0: object | None = None,
    reduction: str = "sum",
    mask: object | None = None,
    max_bytes: int = MAX_FULL_BYTES,
) -> Decomposition:
    """The terms of the seed's explicit sum over k; same inputs and checks as bptt.

    Args:
        p, xs, ys, activation, s0, reduction, mask: as for :func:`manual_bptt.bptt`.
        max_bytes: size limit for materializing any full (T, T, ...) tensor
            (default MAX_FULL_BYTES = 1 GiB); larger requests raise TooLargeError.

    Returns:
        A Decomposition: ``terms.W[t, k]`` (H, H), ``terms.U[t, k]`` (H, D),
        ``terms.b[t, k]`` (H,), each summed over the batch and zero for k > t.
    """
    max_bytes = check_max_bytes(max_bytes)
    batch = prepare(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)
    tr = run_forward(p, batch.owned())  # the terms are computed lazily, after this call returns
    loss, dO = output_layer(tr)
    return Decomposition(tr, dO, loss, max_bytes)


def state_jacobian(
    p: RNNParams, xs: object, t: int, k: int, *, activation: str = "tanh", s0: object | None = None
) -> np.ndarray:
    """ds_t/ds_k = prod_{j=k+1..t} diag(f'(a_j)) W, the identity when t == k.

    Args:
        p, xs, activation, s0: as for :func:`manual_bptt.bptt` (no labels needed).
        t: 0 <= t <= T-1.  k: -1 <= k <= t, where k = -1 means the initial state s0.

    Returns:
        (H, H) for unbatched xs, (B, H, H) for batched xs (one Jacobian per sequence).
    """
    batch = prepare(p, xs, None, activation=activation, s0=s0, labels_required=False)
    t = _check_step("t", t, 0, batch.T - 1)
    k = _check_step("k", k, -1, t)
    J = _jacobian(run_forward(p, batch), t, k)
    return J if batch.batched else J[0]
