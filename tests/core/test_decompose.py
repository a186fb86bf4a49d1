"""manual_bptt.decompose: the seed's (t, k) terms, their factors, sums, truncation windows,
lag diagnostics and size limits, against the untied-weights autograd oracle.

    dE/dW = sum_t sum_{k<=t} term_W[t, k],
    term_W[t, k] = dE_t/dy_hat_t · dy_hat_t/ds_t · ds_t/ds_k · ∂s_k/∂W   (∂s_k/∂W immediate)

The oracle (reference.untied_terms) runs the forward with a separate leaf copy W_k of W at
every step k, so term_W[t, k] = dE_t/dW_k by plain autograd. Every float64 comparison is
max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values (manual_bptt.testing.assert_close),
and individual terms are compared one (t, k) at a time so a failure names t and k.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples, oracle_close, problem_with
from manual_bptt.testing import (
    assert_close,
    make_problem,
    rnn_configs,
    rnn_problems,
)

RTOL, ATOL = 1e-10, 1e-12
# Sizes for comparisons with the untied oracle (T^2 autograd leaves per example).
SMALL = {"max_T": 7, "max_H": 5, "max_B": 3}
# numpy-only properties can afford a little more.
MEDIUM = {"max_T": 9, "max_H": 6, "max_D": 7, "max_B": 4}
NAMES = ("W", "U", "b")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def run_kwargs(prob):
    """bptt/decompose keyword arguments of a Problem without truncate."""
    kw = prob.kwargs()
    del kw["truncate"]
    return kw


def views(d):
    """{"W": d.W, "U": d.U, "b": d.b} without the None."""
    return {n: getattr(d, n) for n in NAMES if getattr(d, n) is not None}


def batch_axis(a, batched):
    """A factor in the caller's layout -> with a leading batch axis."""
    return a if batched else a[None]


def fixed_problem(**changes):
    """A deterministic, deliberately unequal-sized problem (T=6, B=3, D=4, H=5, K=2)."""
    base = {"T": 6, "B": 3, "D": 4, "H": 5, "K": 2, "use_mask": True, "s0_kind": "per_row", "seed": 20240607}
    return problem_with(**{**base, **changes})


# ---------------------------------------------------------------------------------------------
# Every (t, k) term against the untied-weights oracle
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(1.0), deadline=None)
@given(prob=rnn_problems(truncation=False, **SMALL))
def test_every_term_matches_untied_oracle(prob):
    c = prob.cfg
    kw = run_kwargs(prob)
    d = mb.decompose(prob.params, prob.xs, prob.ys, **kw)
    tW, tU, tb = ref.untied_terms(prob.params, prob.xs, prob.ys, **kw)
    expected = {"W": tW, "U": tU, "b": tb}
    T, H, D = c.T, c.H, c.D
    shapes = {"W": (T, T, H, H), "U": (T, T, H, D), "b": (T, T, H)}
    assert (d.b is None) == (not c.bias) == (tb is None), "b terms exist exactly when the model has b"

    for name, view in views(d).items():
        assert view.shape == shapes[name], f"terms.{name}.shape"
        full = view.full()
        assert full.shape == shapes[name] and full.dtype == np.float64, f"terms.{name}.full()"
        oracle_close(full, expected[name], name=f"terms.{name}.full() [{prob!r}]", key=f"terms.{name}")
        for t in range(T):
            for k in range(T):
                lazy = view[t, k]
                assert lazy.shape == shapes[name][2:], f"terms.{name}[{t}, {k}].shape"
                if k > t:  # E_t does not depend on steps after t: exactly zero
                    assert np.all(full[t, k] == 0), f"terms.{name}.full()[{t}, {k}] nonzero with k > t"
                    assert np.all(lazy == 0), f"terms.{name}[{t}, {k}] nonzero with k > t"
                    continue
                label = f"terms.{name}[t={t}, k={k}] (lag {t - k}) [{prob!r}]"
                oracle_close(lazy, expected[name][t, k], name=f"lazy {label}", key=f"terms.{name}[t, k]")
                assert_close(full[t, k], expected[name][t, k], name=f"full {label}")


@settings(max_examples=examples(0.75), deadline=None)
@given(prob=rnn_problems(truncation=False, max_T=10, max_H=6, max_D=7))
def test_terms_sum_to_the_bptt_gradient(prob):
    """sum over t and k <= t of term[t, k] = dE/dθ, for the oracle's and for bptt's gradient."""
    kw = run_kwargs(prob)
    d = mb.decompose(prob.params, prob.xs, prob.ys, **kw)
    r = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    o = ref.bptt(prob.params, prob.xs, prob.ys, **kw)
    oracle_close(d.loss, o.loss, name=f"decompose.loss [{prob!r}]", key="decompose.loss")
    for name, view in views(d).items():
        total = view.full().sum(axis=(0, 1))
        oracle_close(
            total,
            getattr(o.grads, name),
            name=f"sum of terms.{name} vs oracle [{prob!r}]",
            key=f"sum of terms.{name}",
        )
        assert_close(total, getattr(r.grads, name), name=f"sum of terms.{name} vs bptt [{prob!r}]")


# ---------------------------------------------------------------------------------------------
# Truncated BPTT is exactly the windowed sum t - tau <= k <= t
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.75), deadline=None)
@given(prob=rnn_problems(truncation=False, **SMALL))
def test_truncated_bptt_is_the_windowed_sum_of_terms(prob, check):
    """For every tau in 0..T+1: bptt(truncate=tau) = sum of the oracle's terms with
    t - tau <= k <= t (W, U, b), the oracle's truncated BPTT on every field, and for
    tau >= T - 1 the full gradient."""
    T = prob.cfg.T
    kw = run_kwargs(prob)
    tW, tU, tb = ref.untied_terms(prob.params, prob.xs, prob.ys, **kw)
    terms = {"W": tW, "U": tU, "b": tb}
    full = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    t_idx, k_idx = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    for tau in range(T + 2):
        r = mb.bptt(prob.params, prob.xs, prob.ys, truncate=tau, **kw)
        window = (t_idx - tau <= k_idx) & (k_idx <= t_idx)  # (T, T): the kept (t, k)
        for name, tt in terms.items():
            if tt is None:
                assert r.grads.b is None
                continue
            expected = np.tensordot(window.astype(np.float64), tt, axes=([0, 1], [0, 1]))
            oracle_close(
                getattr(r.grads, name),
                expected,
                name=f"bptt(truncate={tau}).grads.{name} vs windowed terms [{prob!r}]",
                key=f"truncated grads.{name} vs windowed terms",
            )
        o = ref.bptt(prob.params, prob.xs, prob.ys, truncate=tau, **kw)
        check(r, o, context=f"truncate={tau}, {prob!r}")
        if tau >= T - 1:
            check(r, full, context=f"truncate={tau} >= T - 1 vs full, {prob!r}", record=False)


# ---------------------------------------------------------------------------------------------
# Lazy access, iter_t and norms against full()
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.5), deadline=None)
@given(prob=rnn_problems(truncation=False, **MEDIUM))
def test_iter_t_and_norms_match_full(prob):
    c = prob.cfg
    d = mb.decompose(prob.params, prob.xs, prob.ys, **run_kwargs(prob))
    fulls = {n: v.full() for n, v in views(d).items()}

    steps = list(d.iter_t())
    assert [s.t for s in steps] == list(range(c.T))
    for s in steps:
        assert s.W.shape == (s.t + 1, c.H, c.H) and s.U.shape == (s.t + 1, c.H, c.D)
        assert (s.b is None) == (not c.bias)
        for name, full in fulls.items():
            got = getattr(s, name)
            assert_close(got, full[s.t, : s.t + 1], name=f"iter_t() t={s.t} {name} [{prob!r}]")

    nrm = d.norms()
    assert (nrm.b is None) == (not c.bias)
    for name, full in fulls.items():
        got = getattr(nrm, name)
        assert got.shape == (c.T, c.T)
        expected = np.linalg.norm(full.reshape(c.T, c.T, -1), axis=2)  # Frobenius / 2-norm
        assert_close(got, expected, name=f"norms().{name} [{prob!r}]")
        assert np.all(got[np.triu_indices(c.T, 1)] == 0), f"norms().{name} nonzero with k > t"
        # np.asarray(view) is full()
        assert np.array_equal(np.asarray(getattr(d, name)), full)


# ---------------------------------------------------------------------------------------------
# Terms rebuilt from the named factors
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.5), deadline=None)
@given(prob=rnn_problems(truncation=False, weight_scales=(0.1, 0.5, 1.0, 1.5), **MEDIUM))
def test_terms_rebuilt_from_named_factors(prob):
    """term_W[t, k] = sum_b dE_ds(t) · ds_ds(t, k) · ds_dW(k) (likewise U, b), and
    dE_dyhat(t) · dyhat_ds(t) = dE_ds(t). (Scales up to 1.5 keep y_hat_t[y_t] far from
    underflow, where the literal factor dE_dyhat is documented to overflow.)"""
    c = prob.cfg
    batched = c.B is not None
    B = c.B or 1
    d = mb.decompose(prob.params, prob.xs, prob.ys, **run_kwargs(prob))
    lead = (c.B,) if batched else ()
    fw = mb.forward(prob.params, prob.xs, activation=c.activation, s0=prob.s0)
    y_hat = batch_axis(fw.y_hat, batched)  # (B, T, K)
    ys = batch_axis(prob.ys, batched)  # (B, T)
    weight = np.ones((B, c.T)) if prob.mask is None else batch_axis(prob.mask, batched).astype(float)
    if c.reduction == "mean":
        weight = weight / weight.sum()

    for t in range(c.T):
        e = d.dE_ds(t)
        g = d.dE_dyhat(t)
        Jy = d.dyhat_ds(t)
        assert e.shape == (*lead, c.H) and g.shape == (*lead, c.K) and Jy.shape == (*lead, c.K, c.H)
        e, g, Jy = (batch_axis(x, batched) for x in (e, g, Jy))
        # dE_t/dy_hat_t: -w_t / y_hat_t[y_t] at y_t, zero elsewhere
        g_expected = np.zeros((B, c.K))
        g_expected[np.arange(B), ys[:, t]] = -weight[:, t] / y_hat[np.arange(B), t, ys[:, t]]
        assert_close(g, g_expected, name=f"dE_dyhat({t}) [{prob!r}]")
        # softmax Jacobian columns sum to zero: sum_j y_hat_j = 1
        assert_close(
            Jy.sum(axis=1),
            np.zeros((B, c.H)),
            name=f"dyhat_ds({t}) column sums",
            atol=1e-12 * max(1.0, float(np.abs(Jy).max())),
        )
        assert_close(np.einsum("bk,bkh->bh", g, Jy), e, name=f"dE_dyhat({t}) · dyhat_ds({t}) vs dE_ds({t})")

        for k in range(t + 1):
            J = d.ds_ds(t, k)
            assert J.shape == (*lead, c.H, c.H)
            J = batch_axis(J, batched)
            eJ = np.einsum("bi,bij->bj", e, J)  # dE_t/ds_t · ds_t/ds_k, (B, H)
            where = f"t={t}, k={k} [{prob!r}]"
            dW, dU, db = (batch_axis(x, batched) for x in (d.ds_dW(k), d.ds_dU(k), d.ds_db(k)))
            assert dW.shape == (B, c.H, c.H, c.H) and dU.shape == (B, c.H, c.H, c.D)
            assert db.shape == (B, c.H, c.H)
            off_diag = ~np.eye(c.H, dtype=bool)
            assert np.all(dW[:, off_diag] == 0), "∂s_k[i]/∂W[m, n] nonzero for i != m"
            assert np.all(dU[:, off_diag] == 0), "∂s_k[i]/∂U[m, n] nonzero for i != m"
            assert_close(np.einsum("bj,bjmn->mn", eJ, dW), d.W[t, k], name=f"factors of term_W, {where}")
            assert_close(np.einsum("bj,bjmn->mn", eJ, dU), d.U[t, k], name=f"factors of term_U, {where}")
            if c.bias:
                assert_close(np.einsum("bj,bjm->m", eJ, db), d.b[t, k], name=f"factors of term_b, {where}")


# ---------------------------------------------------------------------------------------------
# Lag profile: the norms it reports, recomputed from norms() and state_jacobian
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.35), deadline=None)
@given(prob=rnn_problems(truncation=False, **MEDIUM))
def test_lag_profile_matches_norms_and_state_jacobians(prob):
    c = prob.cfg
    kw = run_kwargs(prob)
    d = mb.decompose(prob.params, prob.xs, prob.ys, **kw)
    lp = d.lag_profile()
    nW = d.norms().W
    assert np.array_equal(lp.lag, np.arange(c.T))
    jac = {}
    for t in range(c.T):
        for k in range(t + 1):
            J = mb.state_jacobian(prob.params, prob.xs, t, k, activation=c.activation, s0=prob.s0)
            jac[t, k] = J.reshape(-1, c.H, c.H)  # (B, H, H)
    for L in range(c.T):
        pairs = [(k + L, k) for k in range(c.T - L)]
        tw = np.array([nW[t, k] for t, k in pairs])
        Js = np.concatenate([jac[t, k] for t, k in pairs])  # every pair and batch row
        fro = np.linalg.norm(Js, axis=(1, 2))
        spec = np.linalg.norm(Js, ord=2, axis=(1, 2))
        for field, want in (
            ("term_W_mean", tw.mean()),
            ("term_W_max", tw.max()),
            ("jac_fro_mean", fro.mean()),
            ("jac_fro_max", fro.max()),
            ("jac_spec_mean", spec.mean()),
            ("jac_spec_max", spec.max()),
        ):
            assert_close(getattr(lp, field)[L], want, name=f"lag_profile().{field}[lag={L}] [{prob!r}]")


# ---------------------------------------------------------------------------------------------
# Vanishing and exploding gradients, as exact identities
# ---------------------------------------------------------------------------------------------
def orthogonal_problem(rho, *, batched, T=14, H=5, D=3, K=4, seed=7):
    """Identity activation, W = rho * Q with Q orthogonal, so ds_t/ds_k = (rho Q)^(t-k) and
    ||ds_t/ds_k||_2 = rho^(t-k), ||ds_t/ds_k||_F = rho^(t-k) sqrt(H), exactly."""
    rng = np.random.default_rng(seed)
    Q, R = np.linalg.qr(rng.standard_normal((H, H)))
    Q = Q * np.sign(np.diag(R))  # still orthogonal
    p = mb.RNNParams(
        U=rng.standard_normal((H, D)) / np.sqrt(D),
        W=rho * Q,
        V=rng.standard_normal((K, H)) / np.sqrt(H),
        b=0.1 * rng.standard_normal(H),
        c=0.1 * rng.standard_normal(K),
    )
    B = 2
    seq = (B, T) if batched else (T,)
    xs = rng.standard_normal((*seq, D))
    ys = rng.integers(0, K, size=seq)
    s0 = 0.5 * rng.standard_normal((B, H) if batched else H)
    return p, xs, ys, s0


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("rho", [0.3, 0.9, 1.0, 1.5, 2.0])
def test_lag_profile_jacobian_norms_are_exact_powers_of_rho(rho, batched):
    p, xs, ys, s0 = orthogonal_problem(rho, batched=batched)
    T, H = xs.shape[-2], p.hidden_size
    lp = mb.decompose(p, xs, ys, activation="identity", s0=s0).lag_profile()
    powers = rho ** np.arange(T)
    for field, want in (
        ("jac_spec_mean", powers),
        ("jac_spec_max", powers),
        ("jac_fro_mean", powers * np.sqrt(H)),
        ("jac_fro_max", powers * np.sqrt(H)),
    ):
        got = getattr(lp, field)
        # relative to each lag's own value, not to the largest lag's
        assert_close(got / want, np.ones(T), name=f"lag_profile().{field} / rho^L (rho={rho})")


@pytest.mark.parametrize("rho", [0.3, 1.5, 2.0])
def test_term_norms_are_rho_to_the_lag_times_the_outer_factors(rho):
    """Unbatched, identity activation, W = rho Q: term_W[t, k] = delta s_{k-1}^T with
    delta = (W^T)^(t-k) dE_t/ds_t, so ||term_W[t, k]||_F = rho^(t-k) ||dE_t/ds_t|| ||s_{k-1}||;
    likewise ||term_U[t, k]||_F with x_k and ||term_b[t, k]|| = rho^(t-k) ||dE_t/ds_t||."""
    p, xs, ys, s0 = orthogonal_problem(rho, batched=False)
    T = xs.shape[0]
    d = mb.decompose(p, xs, ys, activation="identity", s0=s0)
    s = mb.forward(p, xs, activation="identity", s0=s0).s
    s_prev = np.concatenate([s0[None], s[:-1]])  # s_{k-1}, k = 0..T-1
    e = np.linalg.norm([d.dE_ds(t) for t in range(T)], axis=1)
    lag = np.subtract.outer(np.arange(T), np.arange(T))
    lower = lag >= 0
    scale = np.where(lower, float(rho) ** np.maximum(lag, 0), 0.0) * e[:, None]
    want = {
        "W": scale * np.linalg.norm(s_prev, axis=1)[None, :],
        "U": scale * np.linalg.norm(xs, axis=1)[None, :],
        "b": scale,
    }
    nrm = d.norms()
    for name, w in want.items():
        got = getattr(nrm, name)
        assert np.all(got[~lower] == 0)
        # each entry relative to itself (the norms span rho^(T-1) in magnitude)
        err = np.abs(got - w)
        bad = ~(err <= 1e-10 * w)
        assert not np.any(bad), f"norms().{name} vs rho^(t-k) formula at (t, k) = {np.argwhere(bad)[0]}"
        assert np.count_nonzero(w[lower]) >= lower.sum() - T, f"{name}: formula mostly zero, check is vacuous"
    lp = d.lag_profile()
    for L in range(T):
        tw = np.diagonal(want["W"], offset=-L)
        assert_close(lp.term_W_mean[L], tw.mean(), name=f"term_W_mean[{L}]")
        assert_close(lp.term_W_max[L], tw.max(), name=f"term_W_max[{L}]")


def test_small_spectral_radius_vanishes():
    rho = 0.3
    p, xs, ys, s0 = orthogonal_problem(rho, batched=True)
    d = mb.decompose(p, xs, ys, activation="identity", s0=s0)
    lp = d.lag_profile()
    spec = lp.jac_spec_mean
    assert np.all(spec[1:] / spec[:-1] < 0.5), f"ratios of successive lags: {spec[1:] / spec[:-1]}"
    assert spec[10] < 1e-4 * spec[0], f"lag 10: {spec[10]:.3e} vs lag 0: {spec[0]:.3e}"
    assert lp.jac_fro_max[10] < 1e-4 * lp.jac_fro_mean[0]
    # every term at lag 10 is below rho^10 * max||dE_t/ds_t|| * max||s_{k-1}|| (a bound)
    s = mb.forward(p, xs, activation="identity", s0=s0).s  # (B, T, H)
    e_max = max(np.linalg.norm(d.dE_ds(t), axis=1).max() for t in range(xs.shape[1]))
    s_max = max(np.linalg.norm(s, axis=2).max(), np.linalg.norm(s0, axis=1).max())
    B = xs.shape[0]
    assert lp.term_W_max[10] <= B * rho**10 * e_max * s_max * (1 + 1e-12)
    assert lp.term_W_max[10] < 1e-4 * lp.term_W_max[0]


@pytest.mark.parametrize("rho", [1.5, 2.0])
def test_large_spectral_radius_explodes(rho):
    p, xs, ys, s0 = orthogonal_problem(rho, batched=True)
    lp = mb.decompose(p, xs, ys, activation="identity", s0=s0).lag_profile()
    for field in ("jac_spec_mean", "jac_spec_max", "jac_fro_mean"):
        a = getattr(lp, field)
        ratios = a[1:] / a[:-1]
        assert_close(ratios, np.full(len(ratios), rho), name=f"{field} lag-to-lag ratio")
    assert lp.jac_spec_mean[10] > 50 * lp.jac_spec_mean[0]


@settings(max_examples=examples(0.35), deadline=None)
@given(cfg=rnn_configs(truncation=False, activations=("tanh", "sigmoid", "relu"), **MEDIUM))
def test_jacobian_norms_bounded_by_powers_of_the_norm_of_W(cfg):
    """|f'| <= 1 for tanh and relu, <= 1/4 for sigmoid, so ||ds_t/ds_{t-L}||_2 <= (c ||W||_2)^L."""
    prob = make_problem(cfg)
    lp = mb.decompose(prob.params, prob.xs, prob.ys, **run_kwargs(prob)).lag_profile()
    bound = (0.25 if cfg.activation == "sigmoid" else 1.0) * np.linalg.norm(prob.params.W, 2)
    L = np.arange(cfg.T)
    assert np.all(lp.jac_spec_max <= bound**L * (1 + 1e-12)), (lp.jac_spec_max, bound**L)
    assert np.all(lp.jac_spec_max >= 0) and lp.jac_spec_max[0] == pytest.approx(1.0, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# Size limits: full() refused, lazy access still works
# ---------------------------------------------------------------------------------------------
def mib_numbers(message):
    """The numbers printed before 'MiB' in a message."""
    return [float(x) for x in re.findall(r"([0-9]+(?:\.[0-9]+)?) MiB", message)]


def test_full_refused_past_max_bytes_but_lazy_access_works():
    T, B, D, H, K = 64, 2, 7, 24, 5
    rng = np.random.default_rng(3)
    p = mb.RNNParams.init(D, H, K, seed=11, weight_scale=0.9)
    xs = rng.integers(0, D, size=(B, T))
    ys = rng.integers(0, K, size=(B, T))
    limit = 4 << 20  # 4 MiB; term_W takes T*T*H*H*8 bytes = 18 MiB, term_U 5.2 MiB, term_b 0.75 MiB
    small = mb.decompose(p, xs, ys, max_bytes=limit)
    big = mb.decompose(p, xs, ys)  # default limit, 1 GiB
    assert small.max_bytes == limit and big.max_bytes == mb.MAX_FULL_BYTES == 1 << 30

    for name, shape in (("W", (T, T, H, H)), ("U", (T, T, H, D))):
        size = int(np.prod(shape)) * 8
        assert size > limit
        view = getattr(small, name)
        for attempt in (view.full, lambda v=view: np.asarray(v)):
            with pytest.raises(mb.TooLargeError) as info:
                attempt()
            msg = str(info.value)
            assert isinstance(info.value, ValueError)
            assert f"terms.{name}" in msg and str(shape) in msg and "max_bytes" in msg, msg
            assert mib_numbers(msg)[:2] == [round(size / 2**20, 1), 4.0], msg
    b_full = small.b.full()  # T*T*H*8 bytes fits
    assert_close(b_full, big.b.full(), name="terms.b under the limit")

    # lazy access, iter_t, norms and lag_profile still work below the limit
    W_full, U_full = big.W.full(), big.U.full()
    for t, k in ((T - 1, 0), (T - 1, T - 1), (40, 17), (5, 9)):
        assert_close(small.W[t, k], W_full[t, k], name=f"lazy terms.W[{t}, {k}]")
        assert_close(small.U[t, k], U_full[t, k], name=f"lazy terms.U[{t}, {k}]")
    steps = small.iter_t()
    for _ in range(T - 1):
        next(steps)
    last = next(steps)
    assert last.t == T - 1
    assert next(steps, None) is None
    assert_close(last.W, W_full[T - 1], name="iter_t() last step W")
    n_small, n_big = small.norms(), big.norms()
    assert_close(n_small.W, np.linalg.norm(W_full, axis=(2, 3)), name="norms().W under a small max_bytes")
    assert_close(n_small.U, n_big.U, name="norms().U under a small max_bytes")
    lp = small.lag_profile()  # (T, B, H, H) Jacobians: 0.56 MiB
    assert lp.jac_spec_mean.shape == (T,)


def test_max_bytes_boundary_is_exact():
    """A full tensor of exactly max_bytes is allowed, one byte less is refused; the
    lag_profile Jacobians (T, B, H, H) obey the same limit."""
    prob = fixed_problem()  # T=6, B=3, D=4, H=5, K=2
    T, B, D, H = 6, 3, 4, 5
    kw = run_kwargs(prob)
    sizes = {"W": T * T * H * H * 8, "U": T * T * H * D * 8, "b": T * T * H * 8}
    for name, size in sizes.items():
        exact = getattr(mb.decompose(prob.params, prob.xs, prob.ys, max_bytes=size, **kw), name).full()
        assert exact.nbytes == size
        short = mb.decompose(prob.params, prob.xs, prob.ys, max_bytes=size - 1, **kw)
        with pytest.raises(mb.TooLargeError, match=re.escape(str(getattr(short, name).shape))):
            getattr(short, name).full()
        assert_close(
            getattr(short.norms(), name),
            np.linalg.norm(exact.reshape(T, T, -1), axis=2),
            name=f"norms().{name} when full() is refused",
        )
    jac_bytes = T * B * H * H * 8
    mb.decompose(prob.params, prob.xs, prob.ys, max_bytes=jac_bytes, **kw).lag_profile()
    with pytest.raises(mb.TooLargeError, match=r"lag_profile"):
        mb.decompose(prob.params, prob.xs, prob.ys, max_bytes=jac_bytes - 1, **kw).lag_profile()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1024", None])
def test_bad_max_bytes_is_refused(bad):
    prob = fixed_problem()
    with pytest.raises(ValueError, match=r"^max_bytes"):
        mb.decompose(prob.params, prob.xs, prob.ys, max_bytes=bad)


# ---------------------------------------------------------------------------------------------
# Bad step indices name t or k
# ---------------------------------------------------------------------------------------------
T_FIXED = 6


BAD_STEPS = [  # (call, the argument its message must name)
    pytest.param(lambda d: d.W[T_FIXED, 0], "t", id="d.W[T, 0]"),
    pytest.param(lambda d: d.W[-1, 0], "t", id="d.W[-1, 0]"),
    pytest.param(lambda d: d.U[0, T_FIXED], "k", id="d.U[0, T]"),
    pytest.param(lambda d: d.b[2, -1], "k", id="d.b[2, -1]"),
    pytest.param(lambda d: d.W[1.0, 0], "t", id="d.W[1.0, 0]"),
    pytest.param(lambda d: d.W[True, 0], "t", id="d.W[True, 0]"),
    pytest.param(lambda d: d.W[0, np.float64(0)], "k", id="d.W[0, np.float64(0)]"),
    pytest.param(lambda d: d.dE_ds(T_FIXED), "t", id="d.dE_ds(T)"),
    pytest.param(lambda d: d.dE_dyhat(-1), "t", id="d.dE_dyhat(-1)"),
    pytest.param(lambda d: d.dyhat_ds(T_FIXED), "t", id="d.dyhat_ds(T)"),
    pytest.param(lambda d: d.ds_ds(T_FIXED, 0), "t", id="d.ds_ds(T, 0)"),
    pytest.param(lambda d: d.ds_ds(2, 3), "k", id="d.ds_ds(2, 3)"),
    pytest.param(lambda d: d.ds_ds(2, -2), "k", id="d.ds_ds(2, -2)"),
    pytest.param(lambda d: d.ds_dW(-1), "k", id="d.ds_dW(-1)"),
    pytest.param(lambda d: d.ds_dU(T_FIXED), "k", id="d.ds_dU(T)"),
    pytest.param(lambda d: d.ds_db(T_FIXED), "k", id="d.ds_db(T)"),
]


@pytest.mark.parametrize(("call", "which"), BAD_STEPS)
def test_bad_step_index_names_t_or_k(call, which):
    prob = fixed_problem(T=T_FIXED)
    d = mb.decompose(prob.params, prob.xs, prob.ys, **run_kwargs(prob))
    with pytest.raises(ValueError, match=rf"^{which}\b"):
        call(d)


def test_term_index_must_be_a_pair():
    prob = fixed_problem()
    d = mb.decompose(prob.params, prob.xs, prob.ys, **run_kwargs(prob))
    for bad in (0, (0,), (0, 0, 0), slice(None)):
        with pytest.raises(ValueError, match=r"terms\.W\[t, k\]"):
            d.W[bad]
