"""Central finite differences in float64: an oracle that shares no code with either autograd.

For every parameter (U, W, V, b, c), the initial state s0 and dense inputs xs:
    numeric[i] = (E(θ + eps e_i) - E(θ - eps e_i)) / (2 eps)
and each entry must satisfy |analytic - numeric| <= ATOL + RTOL * max(|analytic|, |numeric|),
both finite. This form never divides, so it cannot pass silently on 0/0 (the classic
|a - n| / |a + n| gives NaN there, and NaN > tol is False).

Error budget with EPS = 1e-5: truncation ~ EPS^2 |E'''| / 6 and rounding ~ 1e-16 |E| / EPS,
small for these sizes (see the measurement at RTOL), so RTOL = 1e-6 and ATOL = 1e-7 leave a
wide margin, while a wrong sign, index or factor gives errors of order |analytic| itself.
Only full BPTT (truncate=None) is a true gradient.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings

import manual_bptt as mb
from conftest import examples, gated_problem
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.testing import RNNConfig, assert_close, central_differences, make_problem, rnn_configs

EPS = 1e-5
# Measured over 400 random problems of the sizes below (all activations, weight scales 0.5-1.5):
# worst |a - n| = 2.0e-7 (on entries of size ~10), worst |a - n| / max(|a|, |n|) = 2.1e-7 among
# entries above 1e-3, and worst |a - n| / (ATOL + RTOL max(|a|, |n|)) = 0.009: a 100x margin.
RTOL, ATOL = 1e-6, 1e-7


def assert_fd_close(name, analytic, numeric, *, rtol=RTOL, atol=ATOL):
    """|a - n| <= atol + rtol * max(|a|, |n|) for every entry, both finite; the message names
    the quantity, the worst entry's index, both values and the tolerance there."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, f"{name}: analytic shape {a.shape} != numeric shape {n.shape}"
    for label, arr in (("analytic", a), ("numeric", n)):
        if not np.all(np.isfinite(arr)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise AssertionError(f"{name}: {label} gradient is not finite at {idx}: {arr[idx]!r}")
    err = np.abs(a - n)
    tol = atol + rtol * np.maximum(np.abs(a), np.abs(n))
    excess = err - tol
    if a.size and not np.all(excess <= 0):
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), a.shape))
        raise AssertionError(
            f"{name}: analytic {a[idx]!r} vs numeric {n[idx]!r} at index {idx}: "
            f"|a - n| = {err[idx]:.3e} > tolerance {tol[idx]:.3e} "
            f"(atol {atol:g} + rtol {rtol:g} * max(|a|, |n|))"
        )


def numeric_grad(loss_of, x):
    """Central differences of the scalar function loss_of(array) at x (float64, any shape)."""
    return central_differences(loss_of, x, eps=EPS)


def check_all_by_finite_differences(prob):
    """Every gradient of bptt (truncate=None) against central differences."""
    p, c = prob.params, prob.cfg
    kw = {**prob.kwargs(), "truncate": None}
    # s0 explicit (zeros when the problem has none) so that ds0 has an input to perturb
    s0 = prob.s0
    if s0 is None:
        s0 = np.zeros((c.H,) if c.B is None else (c.B, c.H))
    kw["s0"] = s0
    r = mb.bptt(p, prob.xs, prob.ys, **kw)

    def loss(params=p, xs=prob.xs, s0=s0):
        return mb.bptt(params, xs, prob.ys, **{**kw, "s0": s0}).loss

    for name, value in p.items():
        num = numeric_grad(lambda v, name=name: loss(params=p.replace(**{name: v})), value)
        assert_fd_close(f"grads.{name} [{prob!r}]", getattr(r.grads, name), num)
    assert (r.grads.b is None) == (p.b is None) and (r.grads.c is None) == (p.c is None)
    assert_fd_close(f"ds0 [{prob!r}]", r.ds0, numeric_grad(lambda v: loss(s0=v), s0))
    if not c.tokens:
        assert_fd_close(f"dxs [{prob!r}]", r.dxs, numeric_grad(lambda v: loss(xs=v), prob.xs))


def away_from_relu_kink(prob, margin=1e-3):
    """For relu: every pre-activation a_t is at least ``margin`` from the kink at 0, so that
    no perturbation of size EPS crosses it (relu is then linear around the point)."""
    if prob.cfg.activation != "relu":
        return True
    s0 = prob.s0
    fw = mb.forward(prob.params, prob.xs, activation="relu", s0=s0)
    return bool(np.min(np.abs(fw.a)) > margin)


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
@settings(max_examples=examples(0.3), deadline=None)
@given(
    cfg=rnn_configs(
        max_T=6, max_B=3, max_D=5, max_H=5, max_K=5, truncation=False, weight_scales=(0.5, 1.0, 1.5)
    )
)
def test_gradients_match_finite_differences(activation, cfg):
    prob = make_problem(dataclasses.replace(cfg, activation=activation))
    assume(away_from_relu_kink(prob))
    check_all_by_finite_differences(prob)


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
@pytest.mark.parametrize("tokens", [False, True])
def test_fixed_case_matches_finite_differences(activation, tokens):
    """One fixed, fully featured case per activation and input kind (batched, per-row s0,
    mask, mean, biases): runs whatever the Hypothesis profile draws."""
    cfg = RNNConfig(T=5, B=2, D=4, H=3, K=6, tokens=tokens, bias=True, activation=activation,
                    truncate=None, reduction="mean", use_mask=True, s0_kind="per_row",
                    weight_scale=1.0, seed=2024)
    prob = make_problem(cfg)
    assert away_from_relu_kink(prob)
    check_all_by_finite_differences(prob)


# ---------------------------------------------------------------------------------------------
# The checker itself must be able to fail
# ---------------------------------------------------------------------------------------------
def test_fd_checker_rejects_wrong_values_and_nonfinite():
    a = np.array([[0.3, -1.2], [2.0, 0.0]])
    assert_fd_close("same", a, a.copy())
    assert_fd_close("zeros", np.zeros(3), np.zeros(3))  # 0 vs 0 passes (no 0/0)
    with pytest.raises(AssertionError, match=r"wrong factor: analytic .* at index \(1, 0\)"):
        assert_fd_close("wrong factor", a * np.array([[1, 1], [1.001, 1]]), a)
    with pytest.raises(AssertionError, match="sign"):
        assert_fd_close("sign", -a, a)
    with pytest.raises(AssertionError, match="not finite"):
        assert_fd_close("nan", np.full(2, np.nan), np.full(2, np.nan))
    with pytest.raises(AssertionError, match="not finite"):
        assert_fd_close("inf", np.array([1.0, np.inf]), np.array([1.0, np.inf]))
    with pytest.raises(AssertionError, match="shape"):
        assert_fd_close("transposed", a[:, :1], a[:1, :])


def test_finite_differences_detect_a_wrong_gradient():
    """The FD check fails when the 'analytic' gradient has a single wrong entry."""
    prob = make_problem(RNNConfig(T=4, B=None, D=3, H=2, K=5, tokens=False, bias=True,
                                  activation="tanh", truncate=None, reduction="sum",
                                  use_mask=False, s0_kind=None, weight_scale=1.0, seed=1))
    r = mb.bptt(prob.params, prob.xs, prob.ys, activation="tanh")
    num = numeric_grad(lambda W: mb.bptt(prob.params.replace(W=W), prob.xs, prob.ys).loss, prob.params.W)
    assert_fd_close("W", r.grads.W, num)
    with pytest.raises(AssertionError):
        assert_fd_close("W transposed", r.grads.W.T, num)


# ---------------------------------------------------------------------------------------------
# the gated cells: every gradient of bptt against central differences
# ---------------------------------------------------------------------------------------------


GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_equal_central_finite_differences(cls, seed):
    p, xs, ys, s0 = gated_problem(cls, seed=seed)
    lstm = cls is LSTMParams
    mask = np.random.default_rng(seed).random(ys.shape) < 0.8
    mask[0, 0] = True
    kw = {"mask": mask, "reduction": "mean"}
    r = mb.bptt(p, xs, ys, s0=s0, **kw)

    def loss(q=p, x=xs, s=s0):
        return mb.bptt(q, x, ys, s0=s, **kw).loss

    for name, a in p.items():
        numeric = central_differences(lambda v, name=name: loss(q=p.replace(**{name: v})), a)
        assert_close(getattr(r.grads, name), numeric, name=f"grads.{name}", rtol=1e-6, atol=1e-8)
    assert_close(r.dxs, central_differences(lambda v: loss(x=v), xs), name="dxs", rtol=1e-6, atol=1e-8)
    if lstm:
        dh = central_differences(lambda v: loss(s=LSTMState(v, s0.c)), s0.h)
        dc = central_differences(lambda v: loss(s=LSTMState(s0.h, v)), s0.c)
        assert_close(r.ds0.h, dh, name="ds0.h", rtol=1e-6, atol=1e-8)
        assert_close(r.ds0.c, dc, name="ds0.c", rtol=1e-6, atol=1e-8)
    else:
        assert_close(r.ds0, central_differences(lambda v: loss(s=v), s0), name="ds0", rtol=1e-6, atol=1e-8)
