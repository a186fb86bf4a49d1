"""The params types (RNNParams, GRUParams, LSTMParams): construction makes frozen float copies and
names what is missing or misshapen; init draws what its docstring promises; the finiteness of the
parameters is checked on every call that computes with them."""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
import manual_bptt.params as params_module
from manual_bptt import RNNParams
from manual_bptt.gated_params import GRUParams, LSTMParams

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


# ---------------------------------------------------------------------------------------------
# RNNParams: malformed arrays and sizes named
# ---------------------------------------------------------------------------------------------


U, W, V, b, c = P.U, P.W, P.V, P.b, P.c


PARAMS_CASES = [
    ("U 1-d", lambda: RNNParams(U=U[0], W=W, V=V), "U"),
    ("U 3-d", lambda: RNNParams(U=U[None], W=W, V=V), "U"),
    ("U empty", lambda: RNNParams(U=np.zeros((0, D)), W=np.zeros((0, 0)), V=np.zeros((K, 0))), "U"),
    ("U None", lambda: RNNParams(U=None, W=W, V=V), "U"),
    ("U bool", lambda: RNNParams(U=U > 0, W=W, V=V), "U"),
    ("U complex", lambda: RNNParams(U=U.astype(np.complex128), W=W, V=V), "U"),
    ("W not square", lambda: RNNParams(U=U, W=W[:, :-1], V=V), "W"),
    ("W wrong H", lambda: RNNParams(U=U, W=np.eye(H + 1), V=V), "W"),
    ("W transposed U-shape", lambda: RNNParams(U=U, W=U, V=V), "W"),
    ("W None", lambda: RNNParams(U=U, W=None, V=V), "W"),
    ("V wrong H", lambda: RNNParams(U=U, W=W, V=np.zeros((K, H + 1))), "V"),
    ("V transposed", lambda: RNNParams(U=U, W=W, V=V.T), "V"),
    ("V 1-d", lambda: RNNParams(U=U, W=W, V=V[0]), "V"),
    ("V no classes", lambda: RNNParams(U=U, W=W, V=np.zeros((0, H))), "V"),
    ("b wrong length", lambda: RNNParams(U=U, W=W, V=V, b=np.zeros(H + 1)), "b"),
    ("b column", lambda: RNNParams(U=U, W=W, V=V, b=b[:, None]), "b"),
    ("b of length K", lambda: RNNParams(U=U, W=W, V=V, b=c), "b"),
    ("b strings", lambda: RNNParams(U=U, W=W, V=V, b=np.array(["x"] * H)), "b"),
    ("c wrong length", lambda: RNNParams(U=U, W=W, V=V, c=np.zeros(K - 1)), "c"),
    ("c of length H", lambda: RNNParams(U=U, W=W, V=V, c=b), "c"),
    ("c scalar", lambda: RNNParams(U=U, W=W, V=V, c=np.float64(1.0)), "c"),
    ("init input_size 0", lambda: RNNParams.init(0, H, K), "input_size"),
    ("init hidden_size float", lambda: RNNParams.init(D, 4.0, K), "hidden_size"),
    ("init output_size bool", lambda: RNNParams.init(D, H, True), "output_size"),
    ("init weight_scale NaN", lambda: RNNParams.init(D, H, K, weight_scale=np.nan), "weight_scale"),
    ("astype int", lambda: P.astype(np.int32), "dtype"),
    ("replace unknown", lambda: P.replace(Z=U), "replace"),
]


@pytest.mark.parametrize(("case", "call", "arg"), PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_inconsistent_params_raise_value_error_naming_the_parameter(case, call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()


@pytest.mark.parametrize("name", ["U", "W"])
def test_ragged_parameter_names_the_parameter(name):
    arrays = {"U": U, "W": W, "V": V, name: [[1.0, 2.0], [3.0]]}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        RNNParams(**arrays)


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "a"}, "seed"),
        ({"seed": True}, "seed"),
        ({"weight_scale": "1"}, "weight_scale"),
        ({"weight_scale": None}, "weight_scale"),
        ({"weight_scale": 1j}, "weight_scale"),
        ({"weight_scale": np.ones(2)}, "weight_scale"),
        ({"weight_scale": -0.5}, "weight_scale"),
        ({"weight_scale": np.inf}, "weight_scale"),
        ({"dtype": "bogus"}, "dtype"),
        ({"dtype": np.int64}, "dtype"),
    ],
)
def test_init_names_the_bad_argument(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        RNNParams.init(D, H, K, **kwargs)


def test_init_accepts_numpy_integers_and_floats():
    a = RNNParams.init(D, H, K, seed=np.int64(3), weight_scale=np.float32(0.5))
    b = RNNParams.init(D, H, K, seed=3, weight_scale=0.5)
    assert np.array_equal(a.W, b.W)


def test_weights_whose_sum_is_inf_minus_inf_are_checked_without_a_warning():
    """W (16 entries) holds 1e308 at flat indices 0 and 8 and -1e308 at 1 and 9: numpy's
    pairwise sum adds 0 and 8 (inf), 1 and 9 (-inf), then the two (NaN, an "invalid" warning).
    The finiteness check of the parameters takes that silently, then finds every entry finite;
    the states stay 0 (U = 0, s0 = 0)."""
    import warnings

    TOK = np.random.default_rng(2024).integers(0, D, (2, 6))  # (B, T) token ids
    W = np.zeros((H, H))
    W.flat[[0, 8]] = 1e308
    W.flat[[1, 9]] = -1e308
    p = RNNParams(U=np.zeros((H, D)), W=W, V=np.zeros((K, H)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mb.forward(p, TOK)
    assert r.s.shape == (2, 6, H)


# ---------------------------------------------------------------------------------------------
# GRUParams and LSTMParams: torch's layout, read-only copies, shapes named
# ---------------------------------------------------------------------------------------------


GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


@pytest.mark.parametrize("cls", GATED)
def test_init_has_torch_layout_and_range(cls):
    G = cls.GATES
    p = cls.init(input_size=3, hidden_size=4, output_size=5, seed=0)
    shapes = {name: a.shape for name, a in p.items()}
    stacked = {"U": (G * 4, 3), "W": (G * 4, 4), "b_ih": (G * 4,), "b_hh": (G * 4,)}
    assert shapes == {**stacked, "V": (5, 4), "c": (5,)}
    assert (p.input_size, p.hidden_size, p.output_size, p.dtype) == (3, 4, 5, np.float64)
    for _, a in p.items():
        assert np.all(np.abs(a) <= 0.5) and np.all(a != 0)  # U(-1/sqrt(H), 1/sqrt(H)), H = 4
    assert not np.array_equal(p.b_ih, p.b_hh)
    assert np.array_equal(cls.init(3, 4, 5, seed=0).W, p.W)
    q = cls.init(3, 4, 5, seed=0, bias=False, dtype=np.float32)
    assert q.b_ih is None and q.b_hh is None and q.c is None and q.dtype == np.float32


@pytest.mark.parametrize("cls", GATED)
def test_params_are_read_only_copies(cls):
    p0 = cls.init(2, 3, 2, seed=1)
    arrays = {name: a.copy() for name, a in p0.items()}
    p = cls(**arrays)
    for name, a in p.items():
        assert a is not arrays[name] and not np.shares_memory(a, arrays[name])
        with pytest.raises(ValueError):
            a[...] = 0
    with pytest.raises(AttributeError):
        p.U = arrays["U"]


@pytest.mark.parametrize("cls", GATED)
def test_replace_gate_and_astype(cls):
    p = cls.init(2, 3, 2, seed=1)
    q = p.replace(b_ih=None, b_hh=None)
    assert q.b_ih is None and q.b_hh is None and type(q) is cls
    name = cls.GATE_NAMES[-1]
    assert np.array_equal(p.gate("b_hh", name), p.b_hh[(cls.GATES - 1) * 3 :])
    assert p.astype(np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="replace"):
        p.replace(b=None)
    with pytest.raises(ValueError, match="block"):
        p.gate("U", "x")


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize(
    "field, shape",
    [
        ("W", (7, 3)),
        ("W", (10, 3)),
        ("U", (7, 2)),
        ("b_ih", (5,)),
        ("b_hh", (5,)),
        ("V", (2, 4)),
        ("c", (3,)),
    ],
)
def test_shapes_not_in_the_layout_are_refused_naming_the_field(cls, field, shape):
    p = cls.init(2, 3, 2, seed=1)
    arrays = dict(p.items())
    arrays[field] = np.ones(shape)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        cls(**arrays)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("given, missing", [("b_ih", "b_hh"), ("b_hh", "b_ih")])
def test_one_recurrent_bias_without_the_other_is_refused(cls, given, missing):
    p = cls.init(2, 3, 2, seed=1)
    arrays = dict(p.items())
    del arrays[missing]
    with pytest.raises(ValueError, match=rf"^{given}: given without {missing}"):
        cls(**arrays)
