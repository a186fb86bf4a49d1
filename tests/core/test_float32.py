"""float32 inputs are computed in float32, and agree with the float64 oracle at float32 accuracy.

Tolerance for float32 results against the float64 oracle (run on the same float32-rounded
inputs, so only the arithmetic differs):

    max|a - b| <= F32_RTOL * max|ref| + F32_ATOL,   F32_RTOL = 1e-4, F32_ATOL = 1e-6.

Why: float32 has unit roundoff 6e-8; a backward pass over T steps accumulates O(T) roundings
per entry, amplified by the Jacobian products ||W^T diag(f')||^k (up to ~1.5^k at the weight
scales drawn here), so relative errors of 1e-6..1e-5 are expected for T up to 12.
Measured (600 random problems, T <= 20, sizes <= 8, weight scales 0.5-1.5, every activation,
truncation, mask, reduction): the worst error used 0.12 of this tolerance (dxs, identity,
T = 14, scale 1.5), i.e. an 8x margin. At weight scale 3.0 (exploding) errors reach 1.3x the
tolerance, so that regime is left to the float64 tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples
from manual_bptt.testing import RNNConfig, assert_close, make_problem, result_fields, rnn_configs

F32_RTOL, F32_ATOL = 1e-4, 1e-6


def as_float32(prob):
    """(params, xs, s0) of the problem rounded to float32 (token ids stay integers)."""
    p32 = prob.params.astype(np.float32)
    xs32 = prob.xs if prob.cfg.tokens else prob.xs.astype(np.float32)
    s032 = None if prob.s0 is None else prob.s0.astype(np.float32)
    return p32, xs32, s032


def oracle_on_rounded_inputs(prob, p32, xs32, s032):
    """The float64 oracle on exactly the float32 inputs (upcast, which is exact)."""
    xs64 = xs32 if prob.cfg.tokens else xs32.astype(np.float64)
    s064 = None if s032 is None else s032.astype(np.float64)
    return ref.bptt(p32.astype(np.float64), xs64, prob.ys, **{**prob.kwargs(), "s0": s064})


@settings(max_examples=examples(0.5), deadline=None)
@given(cfg=rnn_configs(max_T=12, max_D=8, max_H=8, max_K=8, weight_scales=(0.5, 1.0, 1.5)))
def test_float32_agrees_with_float64_oracle(cfg, check):
    prob = make_problem(cfg)
    p32, xs32, s032 = as_float32(prob)
    r = mb.bptt(p32, xs32, prob.ys, **{**prob.kwargs(), "s0": s032})
    check(r, oracle_on_rounded_inputs(prob, p32, xs32, s032), rtol=F32_RTOL, atol=F32_ATOL,
          dtype=np.float32, record=False, context=repr(prob))


FIXED = RNNConfig(T=30, B=3, D=5, H=7, K=4, tokens=False, bias=True, activation="tanh",
                  truncate=None, reduction="sum", use_mask=True, s0_kind="per_row",
                  weight_scale=1.0, seed=321)


def test_float64_tolerance_detects_float32_arithmetic():
    """The float64 check (1e-10) is strict enough to see float32 arithmetic: it fails on
    every field of a float32 result, while the float32 tolerance passes."""
    prob = make_problem(FIXED)
    p32, xs32, s032 = as_float32(prob)
    r32 = mb.bptt(p32, xs32, prob.ys, **{**prob.kwargs(), "s0": s032})
    o = oracle_on_rounded_inputs(prob, p32, xs32, s032)
    for (name, a), (_, e) in zip(result_fields(r32), result_fields(o), strict=True):
        assert a is not None
        assert_close(a, e, name=name, rtol=F32_RTOL, atol=F32_ATOL)
        with pytest.raises(AssertionError, match=name):
            assert_close(a, e, name=name, rtol=1e-10, atol=1e-12)


def test_float32_is_computed_in_float32_not_rounded_from_float64():
    """Results computed in float64 and then rounded would equal the rounded float64 result
    bitwise; float32 arithmetic over 30 steps does not."""
    prob = make_problem(FIXED)
    p32, xs32, s032 = as_float32(prob)
    kw = prob.kwargs()
    r32 = mb.bptt(p32, xs32, prob.ys, **{**kw, "s0": s032})
    r64 = mb.bptt(p32.astype(np.float64), xs32.astype(np.float64), prob.ys,
                  **{**kw, "s0": s032.astype(np.float64)})
    for name in ("U", "W", "V", "b", "c"):
        a, b = getattr(r32.grads, name), getattr(r64.grads, name)
        assert a.dtype == np.float32 and b.dtype == np.float64
        assert not np.array_equal(a, b.astype(np.float32)), f"grads.{name} looks computed in float64"
    assert not np.array_equal(r32.dxs, r64.dxs.astype(np.float32))


@pytest.mark.parametrize("tokens", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_result_dtypes_follow_the_inputs(tokens, batched):
    """float32 exactly when every floating input is float32; any float64 input promotes."""
    cfg = RNNConfig(T=4, B=2 if batched else None, D=3, H=5, K=6, tokens=tokens, bias=True,
                    activation="sigmoid", truncate=None, reduction="mean", use_mask=False,
                    s0_kind="shared", weight_scale=1.0, seed=8)
    prob = make_problem(cfg)
    p32, xs32, s032 = as_float32(prob)

    def dtypes(r):
        arrays = [*r.grads.arrays(), r.ds0, r.final_state] + ([] if r.dxs is None else [r.dxs])
        return {a.dtype for a in arrays}

    r = mb.bptt(p32, xs32, prob.ys, s0=s032)
    assert dtypes(r) == {np.dtype(np.float32)} and isinstance(r.loss, float)
    assert dtypes(mb.bptt(p32, xs32, prob.ys)) == {np.dtype(np.float32)}
    assert dtypes(mb.bptt(p32, xs32, prob.ys, s0=np.zeros(5, dtype=np.int64))) == {np.dtype(np.float32)}
    assert dtypes(mb.bptt(p32, xs32, prob.ys, s0=prob.s0)) == {np.dtype(np.float64)}  # float64 s0
    assert dtypes(mb.bptt(prob.params, xs32, prob.ys, s0=s032)) == {np.dtype(np.float64)}  # float64 p
    if not tokens:
        assert dtypes(mb.bptt(p32, prob.xs, prob.ys, s0=s032)) == {np.dtype(np.float64)}  # float64 xs
    fw = mb.forward(p32, xs32, s0=s032)
    fw_dtypes = {fw.a.dtype, fw.s.dtype, fw.o.dtype, fw.y_hat.dtype, fw.final_state.dtype}
    assert fw_dtypes == {np.dtype(np.float32)}
