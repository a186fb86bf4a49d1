"""Tests added to kill mutants of src/manual_bptt/params.py and activations.py that survived
mutation testing (see docs/mutation.md). Each test names the mutants it kills."""

from __future__ import annotations

import numpy as np
import pytest

from manual_bptt import ACTIVATIONS, RNNParams

D, H, K = 3, 4, 5
P = RNNParams.init(D, H, K, seed=7)


# ---------------------------------------------------------------------------------------------
# params.py: _frozen_copy and RNNParams construction
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float16])
def test_integer_and_half_arrays_become_float64_copies(dtype):
    # kills x__frozen_copy__mutmut_13, _14 (integer arrays refused), _19, _20, _22 (the
    # dtype kept as given) and _27, _30 (np.array without the chosen dtype)
    ints = {n: np.rint(4 * a).astype(dtype) if dtype != np.uint8 else np.abs(np.rint(4 * a)).astype(dtype)
            for n, a in P.items()}
    p = RNNParams(**ints)
    for name, a in p.items():
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, ints[name].astype(np.float64), err_msg=name)
        assert not a.flags.writeable, name
    assert p.dtype == np.float64


def test_missing_V_is_a_value_error_naming_V():
    # kills x__post_init____mutmut_13, _14 ("V" dropped from the required names)
    with pytest.raises(ValueError, match=r"^V: required, got None$"):
        RNNParams(U=P.U, W=P.W, V=None)


def test_c_after_a_missing_b_is_still_a_frozen_copy():
    # kills x__post_init____mutmut_16 (continue -> break: fields after a None b were kept as given)
    c = [1.0, 2.0, 3.0, 4.0, 5.0]
    p = RNNParams(U=P.U, W=P.W, V=P.V, b=None, c=c)
    assert isinstance(p.c, np.ndarray) and p.c.dtype == np.float64 and not p.c.flags.writeable
    c_arr = np.arange(K, dtype=np.float64)
    p = RNNParams(U=P.U, W=P.W, V=P.V, b=None, c=c_arr)
    c_arr[0] = 99.0
    assert p.c[0] == 0.0


def test_c_shape_message_gives_K():
    # kills x__post_init____mutmut_59 (V.shape[0] -> V.shape[1], i.e. H instead of K)
    with pytest.raises(ValueError, match=rf"^c: expected shape \(K,\) = \({K},\), got \({K - 1},\)$"):
        RNNParams(U=P.U, W=P.W, V=P.V, c=np.zeros(K - 1))


# ---------------------------------------------------------------------------------------------
# params.py: RNNParams.init draws what its docstring promises
# ---------------------------------------------------------------------------------------------
def test_init_default_weight_scale_is_one():
    # kills xǁRNNParamsǁinit__mutmut_2 (default weight_scale 1.0 -> 2.0)
    a, b = RNNParams.init(D, H, K, seed=3), RNNParams.init(D, H, K, seed=3, weight_scale=1.0)
    for (name, x), (_, y) in zip(a.items(), b.items(), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_init_scales():
    # kills xǁRNNParamsǁinit__mutmut_35, _37, _39, _41, _43, _45 (weight_scale / sqrt(fan_in)
    # mangled) and _49, _54, _56 (bias scale 0.1 mangled): U, W, V ~ N(0, scale^2 / fan_in),
    # b, c ~ N(0, 0.1^2). Large sizes, fixed seed: sample std within 5% of the promise.
    Dn, Hn, Kn, ws = 400, 300, 2000, 0.5
    p = RNNParams.init(Dn, Hn, Kn, seed=0, weight_scale=ws)
    want = {"U": ws / np.sqrt(Dn), "W": ws / np.sqrt(Hn), "V": ws / np.sqrt(Hn), "b": 0.1, "c": 0.1}
    for name, a in p.items():
        assert abs(a.std() / want[name] - 1) < 0.05, (name, a.std(), want[name])
        assert abs(a.mean()) < 0.2 * want[name], name


def test_init_float32():
    # kills xǁRNNParamsǁinit__mutmut_57 (astype(dtype) -> astype(None), i.e. always float64)
    p32 = RNNParams.init(D, H, K, seed=3, dtype=np.float32)
    p64 = RNNParams.init(D, H, K, seed=3)
    assert p32.dtype == np.float32
    for (name, x), (_, y) in zip(p32.items(), p64.items(), strict=True):
        assert x.dtype == np.float32, name
        np.testing.assert_array_equal(x, y.astype(np.float32), err_msg=name)


# ---------------------------------------------------------------------------------------------
# activations.py: prime(s) -> f'(a), same shape (and dtype) as a
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prime_has_the_shape_and_dtype_of_a(name, dtype):
    # kills x__identity_prime__mutmut_1 (np.ones_like(None): a 0-d object array) and
    # x__relu_prime__mutmut_1 (astype(None): float64 for float32 input)
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
    # kills x__tanh_prime__mutmut_4, _7, _10, _13 and x__sigmoid_prime__mutmut_4, _7, _11, _14
    # (out=out -> None or dropped): the backward recursion relies on prime(s, out=buffer)
    # filling its cache-sized buffer
    act = ACTIVATIONS[name]
    s = act.f(np.linspace(-2, 2, 12, dtype=dtype).reshape(3, 4))
    out = np.full_like(s, np.nan)
    assert act.prime(s, out=out) is out
    np.testing.assert_array_equal(out, act.prime(s))
