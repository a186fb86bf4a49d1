"""RTRL's memory: the refusal message's sizes, float32 sensitivities held in float32, and no
dense-input sensitivities for token inputs. (max_bytes = 0 is tested in
test_decompose_edge_cases.py, test_max_bytes_zero_is_allowed.)"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from manual_bptt import RNNParams, rtrl


def test_rtrl_refusal_message_sizes():
    # the byte count and both MiB figures of the message
    Bn, Tn, Dn, Hn = 2, 100, 64, 64
    p = RNNParams.init(Dn, Hn, 3, seed=1)
    xs = np.zeros((Bn, Tn, Dn))
    ys = np.zeros((Bn, Tn), dtype=np.int64)
    need = (Bn * Hn * (Hn * Hn + Hn * Dn + 2 * Hn) + Tn * Bn * Hn * Dn) * 8
    assert f"{need / 2**20:.1f}" == "14.4"
    msg = (rf"^max_bytes: RTRL sensitivities for B={Bn}, H={Hn}, D={Dn}, T={Tn} need {need} bytes "
           rf"\(14\.4 MiB\), over the limit of {3 * 2**20} bytes \(3\.0 MiB\); use bptt")
    with pytest.raises(ValueError, match=msg):
        rtrl(p, xs, ys, max_bytes=3 * 2**20)



def traced_peak(p, xs, ys):
    tracemalloc.start()
    try:
        r = rtrl(p, xs, ys)
        return tracemalloc.get_traced_memory()[1], r
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dense", [False, True])
def test_float32_rtrl_holds_its_sensitivities_in_float32(dense):
    # The sensitivities PW, PU and (dense inputs) M are float32: one allocated in float64
    # turns every later product into float64, so the float32 run would no longer take about
    # half the memory of the float64 run (max_bytes counts 4 bytes per number for float32).
    rng = np.random.default_rng(0)
    B, K = 4, 3
    T, H, D = (40, 8, 64) if dense else (3, 32, 32)
    p = RNNParams.init(D, H, K, seed=0)
    xs = rng.standard_normal((B, T, D)) if dense else rng.integers(0, D, (B, T))
    ys = rng.integers(0, K, (B, T))
    xs32 = xs.astype(np.float32) if dense else xs
    peak32, r32 = traced_peak(p.astype(np.float32), xs32, ys)
    xs64 = xs32.astype(np.float64) if dense else xs
    peak64, r64 = traced_peak(p.astype(np.float32).astype(np.float64), xs64, ys)
    assert all(a.dtype == np.float32 for a in r32.grads.arrays())
    for (name, a), (_, b) in zip(r32.grads.items(), r64.grads.items(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
    assert peak32 < 0.6 * peak64, (peak32, peak64)


def test_token_rtrl_allocates_no_dense_input_sensitivities():
    # Neither M, (T, B, H, D), nor dX, (T, B, D), is allocated for token inputs: max_bytes
    # counts T*B*H*D numbers for dense inputs only, and a token run needs nothing of size T*B*D.
    rng = np.random.default_rng(1)
    B, T, H, D, K = 4, 200, 2, 1024, 3
    p = RNNParams.init(D, H, K, seed=0)
    tok = rng.integers(0, D, (B, T))
    ys = rng.integers(0, K, (B, T))
    peak, r = traced_peak(p, tok, ys)
    assert r.dxs is None
    assert peak < T * B * D * 8 / 2, peak
