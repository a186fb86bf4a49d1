"""RNNParams: construction makes frozen float copies and names what is missing or misshapen;
init draws what its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
import manual_bptt.params as params_module
from manual_bptt import RNNParams

D, H, K = 3, 4, 5
P = RNNParams.init(D, H, K, seed=7)


# ---------------------------------------------------------------------------------------------
# params.py: _frozen_copy and RNNParams construction
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float16])
def test_integer_and_half_arrays_become_float64_copies(dtype):
    # integer and half arrays are accepted, and stored as read-only float64 copies
    ints = {n: np.rint(4 * a).astype(dtype) if dtype != np.uint8 else np.abs(np.rint(4 * a)).astype(dtype)
            for n, a in P.items()}
    p = RNNParams(**ints)
    for name, a in p.items():
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, ints[name].astype(np.float64), err_msg=name)
        assert not a.flags.writeable, name
    assert p.dtype == np.float64


def test_missing_V_is_a_value_error_naming_V():
    with pytest.raises(ValueError, match=r"^V: required, got None$"):
        RNNParams(U=P.U, W=P.W, V=None)


def test_c_after_a_missing_b_is_still_a_frozen_copy():
    # fields after a None b are converted too
    c = [1.0, 2.0, 3.0, 4.0, 5.0]
    p = RNNParams(U=P.U, W=P.W, V=P.V, b=None, c=c)
    assert isinstance(p.c, np.ndarray) and p.c.dtype == np.float64 and not p.c.flags.writeable
    c_arr = np.arange(K, dtype=np.float64)
    p = RNNParams(U=P.U, W=P.W, V=P.V, b=None, c=c_arr)
    c_arr[0] = 99.0
    assert p.c[0] == 0.0


def test_c_shape_message_gives_K():
    # K is V.shape[0] (not H)
    with pytest.raises(ValueError, match=rf"^c: expected shape \(K,\) = \({K},\), got \({K - 1},\)$"):
        RNNParams(U=P.U, W=P.W, V=P.V, c=np.zeros(K - 1))


# ---------------------------------------------------------------------------------------------
# params.py: RNNParams.init draws what its docstring promises
# ---------------------------------------------------------------------------------------------
def test_init_default_weight_scale_is_one():
    a, b = RNNParams.init(D, H, K, seed=3), RNNParams.init(D, H, K, seed=3, weight_scale=1.0)
    for (name, x), (_, y) in zip(a.items(), b.items(), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_init_scales():
    # U, W, V ~ N(0, weight_scale^2 / fan_in), b, c ~ N(0, 0.1^2). Large sizes, fixed seed:
    # sample std within 5% of the promise.
    Dn, Hn, Kn, ws = 400, 300, 2000, 0.5
    p = RNNParams.init(Dn, Hn, Kn, seed=0, weight_scale=ws)
    want = {"U": ws / np.sqrt(Dn), "W": ws / np.sqrt(Hn), "V": ws / np.sqrt(Hn), "b": 0.1, "c": 0.1}
    for name, a in p.items():
        assert abs(a.std() / want[name] - 1) < 0.05, (name, a.std(), want[name])
        assert abs(a.mean()) < 0.2 * want[name], name


def test_init_float32():
    p32 = RNNParams.init(D, H, K, seed=3, dtype=np.float32)
    p64 = RNNParams.init(D, H, K, seed=3)
    assert p32.dtype == np.float32
    for (name, x), (_, y) in zip(p32.items(), p64.items(), strict=True):
        assert x.dtype == np.float32, name
        np.testing.assert_array_equal(x, y.astype(np.float32), err_msg=name)


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "output_size"])
def test_init_refuses_a_zero_size_naming_it(name):
    sizes = {"input_size": 3, "hidden_size": 4, "output_size": 2} | {name: 0}
    with pytest.raises(ValueError, match=rf"^{name}: expected an integer >= 1, got 0$"):
        RNNParams.init(**sizes)


def test_init_with_weight_scale_zero_gives_zero_weights():
    """weight_scale is documented as >= 0: zero is allowed and zeroes U, W and V (not the biases)."""
    p = RNNParams.init(3, 4, 2, seed=0, weight_scale=0.0)
    assert not p.U.any() and not p.W.any() and not p.V.any() and p.b.any()


def test_a_masked_array_is_refused_with_what_to_pass_instead():
    want = (
        "U: a numpy masked array, whose mask would be silently dropped: pass the plain data "
        "(np.ma.getdata) and give which targets count as mask= (a bool array)"
    )
    with pytest.raises(ValueError) as info:
        RNNParams(U=np.ma.masked_array(np.ones((4, 3))), W=np.eye(4), V=np.ones((2, 4)))
    assert str(info.value) == want


class _Detachable:
    """An array-like with a detach() method and no requires_grad attribute (not a tensor)."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_an_array_like_with_detach_but_no_requires_grad_is_read_as_an_array():
    p = RNNParams(U=_Detachable(np.ones((4, 3))), W=np.eye(4), V=np.ones((2, 4)))
    assert np.array_equal(p.U, np.ones((4, 3)))


def test_an_unreadable_value_names_the_exception_that_numpy_raised():
    with pytest.raises(ValueError, match=r"^W: cannot be read as a numeric array \(ValueError: "):
        RNNParams(U=np.ones((2, 3)), W=[[1.0, 2.0], [3.0]], V=np.ones((2, 2)))


# ---------------------------------------------------------------------------------------------
# Finiteness of the parameters: decided once per instance, never trusted for a writeable array
# ---------------------------------------------------------------------------------------------
def _finite_params(cls_name: str):
    if cls_name == "rnn":
        return mb.RNNParams.init(3, 4, 2, seed=0)
    cls = mb.GRUParams if cls_name == "gru" else mb.LSTMParams
    return cls.init(3, 4, 2, seed=0)


@pytest.mark.parametrize("cls_name", ["rnn", "gru", "lstm"])
def test_nonfinite_parameters_are_refused_on_every_call_naming_the_first_field(cls_name):
    p = _finite_params(cls_name)
    xs, ys = np.array([0, 2, 1]), np.array([1, 0, 1])
    bptt = mb.bptt  # the cell is chosen by the type of p
    bptt(p, xs, ys)  # finite: accepted
    V = p.V.copy()
    V[1, 0] = np.nan
    W = p.W.copy()
    W[0, 1] = -np.inf
    bad = p.replace(W=W, V=V)  # two fields not finite: the first in field order is named
    for _ in range(2):  # the remembered answer refuses again
        with pytest.raises(ValueError, match=r"^p\.W: contains NaN or inf \(first at index \(0, 1\)\)$"):
            bptt(bad, xs, ys)
    assert bad._nonfinite_names() == ["W", "V"]
    assert p._nonfinite_names() == []


def test_an_array_made_writeable_again_is_checked_afresh():
    p = _finite_params("rnn")
    xs, ys = np.array([0, 2, 1]), np.array([1, 0, 1])
    mb.bptt(p, xs, ys)  # "every entry finite" is now remembered
    p.U.flags.writeable = True  # the user takes the array back and writes inf into it
    p.U[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"^p\.U: contains NaN or inf \(first at index \(2, 1\)\)$"):
        mb.bptt(p, xs, ys)
    p.U[2, 1] = 0.5  # finite again while writeable: accepted, nothing remembered
    mb.bptt(p, xs, ys)
    p.U[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^p\.U: contains NaN or inf"):
        mb.bptt(p, xs, ys)


def test_gradients_that_overflowed_are_refused_as_parameters():
    huge = np.finfo(np.float64).max
    g = RNNParams._adopt(U=np.full((4, 3), huge), W=np.zeros((4, 4)), V=np.full((2, 4), np.inf))
    # the entries of U are finite although their sum overflows: only V is named, and no warning
    with np.errstate(all="raise"):
        assert g._nonfinite_names() == ["V"]
        with pytest.raises(ValueError, match=r"^p\.V: contains NaN or inf \(first at index \(0, 0\)\)$"):
            mb.bptt(g, np.array([0, 1]), np.array([1, 0]))


def test_read_only_parameters_are_scanned_for_finiteness_once_however_many_calls(monkeypatch):
    """The scan is remembered per instance while every array is read-only, and repeated on every
    call while one is writeable; a fresh instance of the same values is scanned once again."""
    scans = []
    real = params_module.all_finite
    def counted(*arrays):
        scans.append(len(arrays))
        return real(*arrays)

    monkeypatch.setattr(params_module, "all_finite", counted)
    p = _finite_params("rnn")
    xs, ys = np.array([0, 2, 1]), np.array([1, 0, 1])
    for _ in range(3):
        mb.bptt(p, xs, ys)
    assert scans == [5]  # U, W, V, b, c: once
    q = p.replace(c=None)
    mb.bptt(q, xs, ys)
    mb.bptt(q, xs, ys)
    assert scans == [5, 4]
    q.W.flags.writeable = True
    for _ in range(2):
        mb.bptt(q, xs, ys)
    assert scans == [5, 4, 4, 4]
    q.W.flags.writeable = False  # read-only again: remembered from the next scan on
    for _ in range(2):
        mb.bptt(q, xs, ys)
    assert scans == [5, 4, 4, 4, 4]
