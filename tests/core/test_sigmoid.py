"""The sigmoid is accurate, relative to its value, in both tails; so is a deeply saturated gradient.

Reference: 1 / (1 + exp(-a)) in decimal arithmetic at 50 significant digits (the standard
library's decimal module), rounded once to float64. Where the true value is a normal number
the float64 sigmoid must be within 4 ulp (relative 4 * 2^-52); in the subnormal range
(a < -708.4) within 4 units of the subnormal spacing 2^-1074.
"""

from __future__ import annotations

import decimal

import numpy as np
import pytest

import manual_bptt as mb
import reference as ref
from manual_bptt.activations import ACTIVATIONS

EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny  # smallest normal
SUBNORMAL = 2.0**-1074


def sigmoid_exact(a: float) -> float:
    """1 / (1 + exp(-a)) at 50 significant digits, rounded to float64."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        x = decimal.Decimal(a)
        return float(1 / (1 + (-x).exp()))


GRID = np.concatenate([np.linspace(-745.0, 40.0, 3001), [-50.0, -36.0, -37.5, -1e-9, 0.0, 1e-9, 18.0, 36.9]])


def test_sigmoid_has_relative_accuracy_in_both_tails():
    got = ACTIVATIONS["sigmoid"].f(GRID)
    exact = np.array([sigmoid_exact(a) for a in GRID])
    err = np.abs(got - exact)
    normal = exact >= TINY
    assert np.all(err[normal] <= 4 * EPS * exact[normal]), np.max(err[normal] / exact[normal]) / EPS
    assert np.all(err[~normal] <= 4 * SUBNORMAL)
    assert exact[GRID == -50.0][0] == pytest.approx(1.9287498479639178e-22, rel=1e-15)


def test_sigmoid_at_minus_fifty_matches_the_closed_form():
    got = ACTIVATIONS["sigmoid"].f(np.array([-50.0, -36.0]))
    assert abs(got[0] / 1.9287498479639178e-22 - 1) <= 4 * EPS
    assert got[1] > 0 and abs(got[1] / sigmoid_exact(-36.0) - 1) <= 4 * EPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_keeps_dtype_writes_into_out_and_never_warns(dtype):
    a = np.array([-800.0, -50.0, -1.0, 0.0, 1.0, 50.0, 800.0], dtype=dtype)
    out = np.full_like(a, np.nan)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        r = ACTIVATIONS["sigmoid"].f(a, out=out)
    assert r is out and r.dtype == dtype
    assert r[3] == 0.5 and r[-1] == 1.0 and r[0] == 0.0 and np.all(np.diff(r) >= 0)
    # float32 keeps the negative tail too: 1.93e-22 is a normal float32
    assert abs(float(r[1]) / 1.9287498479639178e-22 - 1) <= 4 * np.finfo(dtype).eps


def test_w_gradient_of_a_deeply_saturated_unit_is_accurate_relative_to_its_own_scale():
    """Unit 0 has b = -50, so f'(a_0) ~ 1.9e-22 and row 0 of dE/dW is ~1e-22: compared to its
    own scale, not to the largest entry of dW (the old sigmoid gave exactly 0 there)."""
    rng = np.random.default_rng(5)
    D, H, K, T = 3, 4, 5, 7
    p = mb.RNNParams.init(D, H, K, seed=2)
    b = np.array(p.b)
    b[0] = -50.0
    p = p.replace(b=b)
    xs, ys = rng.integers(0, D, T), rng.integers(0, K, T)
    s0 = rng.standard_normal(H)  # so that s_{t-1} is not zero at t = 0
    r = mb.bptt(p, xs, ys, activation="sigmoid", s0=s0)
    o = ref.bptt(p, xs, ys, activation="sigmoid", s0=s0)
    row, ref_row = r.grads.W[0], np.asarray(o.grads.W)[0]
    scale = np.abs(ref_row).max()
    assert 1e-24 < scale < 1e-20
    assert np.abs(row - ref_row).max() <= 1e-10 * scale
