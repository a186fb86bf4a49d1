"""The activations' derivative, computed from the state: prime(s) = f'(a), with a's shape and
dtype, written into ``out`` when one is given."""

from __future__ import annotations

import numpy as np
import pytest

from manual_bptt import ACTIVATIONS


# ---------------------------------------------------------------------------------------------
# prime(s) -> f'(a), same shape (and dtype) as a
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prime_has_the_shape_and_dtype_of_a(name, dtype):
    # f'(a) of every activation, float32 in, float32 out (not float64, not a 0-d object array)
    act = ACTIVATIONS[name]
    a = np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4)
    s = act.f(a)
    fp = act.prime(s)
    assert fp.shape == a.shape and fp.dtype == a.dtype
    expect = {"identity": np.ones_like(a), "relu": (a > 0).astype(dtype),
              "tanh": 1 - s * s, "sigmoid": s * (1 - s)}[name]
    np.testing.assert_array_equal(fp, expect)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prime_writes_into_out(name, dtype):
    # the backward recursion relies on prime(s, out=buffer) filling its cache-sized buffer
    act = ACTIVATIONS[name]
    s = act.f(np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4))
    out = np.full_like(s, np.nan)
    assert act.prime(s, out=out) is out
    np.testing.assert_array_equal(out, act.prime(s))
