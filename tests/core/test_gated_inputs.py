"""The gated cells' parameters and inputs: shapes, refusals, caller arrays untouched, finite
differences, overflow named by step (never a warning, with or without truncation), sizes refused
before allocating, exact identities (a truncation that keeps every step, an unbatched call) and
the compute dtype (float32 only when every floating input is float32, else float64).
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import manual_bptt as mb
from manual_bptt import gated
from manual_bptt.errors import NonFiniteError, TooLargeError
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.kinds import kind_of
from manual_bptt.testing import assert_close, central_differences

CELLS = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]
HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def small(cls, *, seed=0, D=3, H=2, K=3, T=4, B=2, scale=1.5):
    rng = np.random.default_rng(seed)
    p = cls.init(D, H, K, seed=seed, weight_scale=scale)
    xs = rng.standard_normal((B, T, D))
    ys = rng.integers(0, K, (B, T))
    parts = [rng.standard_normal((B, H)) for _ in range(2 if cls is LSTMParams else 1)]
    s0 = LSTMState(*parts) if cls is LSTMParams else parts[0]
    return p, xs, ys, s0


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
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


@pytest.mark.parametrize("cls", CELLS)
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


@pytest.mark.parametrize("cls", CELLS)
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


@pytest.mark.parametrize("cls", CELLS)
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


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("given, missing", [("b_ih", "b_hh"), ("b_hh", "b_ih")])
def test_one_recurrent_bias_without_the_other_is_refused(cls, given, missing):
    p = cls.init(2, 3, 2, seed=1)
    arrays = dict(p.items())
    del arrays[missing]
    with pytest.raises(ValueError, match=rf"^{given}: given without {missing}"):
        cls(**arrays)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_an_activation_is_refused_for_a_gated_cell(cls, activation):
    p, xs, ys, _ = small(cls)
    with pytest.raises(ValueError, match=r"^activation:"):
        mb.bptt(p, xs, ys, activation=activation)


def test_params_of_another_model_are_refused():
    """An object with a gated cell's fields that is not one of the params types reaches no cell:
    every function refuses it, naming p (the one table, manual_bptt.kinds, has no row for it)."""
    from types import SimpleNamespace

    q = GRUParams.init(3, 2, 3, seed=0)
    p = SimpleNamespace(**dict(q.items()))
    xs, ys = np.zeros((4, 3)), np.zeros(4, int)
    want = r"^p: expected manual_bptt.RNNParams, GRUParams or LSTMParams, got SimpleNamespace$"
    calls = [
        lambda: mb.bptt(p, xs, ys),
        lambda: mb.forward(p, xs),
        lambda: mb.backward(p, xs, np.ones((4, 2))),
        lambda: mb.decompose(p, xs, ys),
        lambda: mb.rtrl(p, xs, ys),
        lambda: mb.state_jacobian(p, xs, 1, 0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=want):
            call()


@pytest.mark.parametrize(
    "s0, match",
    [
        (np.zeros((2, 2, 2)), "pair"),  # an array, not a pair
        ([np.zeros((2, 2)), np.zeros((2, 2))], "pair"),  # a list, not a tuple
        ((np.zeros((2, 2)),), "pair"),  # one part
        ((np.zeros((2, 2)),) * 3, "pair"),  # three parts
        ((np.zeros((2, 2)), np.zeros(2)), "same shape"),  # parts of different shapes
        ((np.zeros(2), np.zeros((2, 2))), "same shape"),
        ((np.zeros(3), np.zeros(3)), "shape"),  # H = 2
        ((np.zeros(2), np.array([0.0, np.nan])), "NaN"),
        ((np.zeros(2), np.array(["a", "b"])), "numeric"),
    ],
)
def test_a_bad_lstm_initial_state_is_refused_naming_s0(s0, match):
    p, xs, ys, _ = small(LSTMParams)
    with pytest.raises(ValueError, match=rf"^s0:.*{match}"):
        mb.bptt(p, xs, ys, s0=s0)


@pytest.mark.parametrize(
    "s0, match",
    [
        (LSTMState(np.zeros(2), np.zeros(2)), "LSTMState"),
        (np.zeros(3), "shape"),
        (np.zeros((3, 2)), "shape"),  # B = 2
        (np.array([np.inf, 0.0]), "NaN or inf"),
    ],
)
def test_a_bad_gru_initial_state_is_refused_naming_s0(s0, match):
    p, xs, ys, _ = small(GRUParams)
    with pytest.raises(ValueError, match=rf"^s0:.*{match}"):
        mb.bptt(p, xs, ys, s0=s0)


@pytest.mark.parametrize("cls", CELLS)
def test_unbatched_xs_refuses_a_batched_s0(cls):
    p, xs, ys, s0 = small(cls)
    with pytest.raises(ValueError, match=r"^s0:.*shape"):
        mb.bptt(p, xs[0], ys[0], s0=s0)


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"truncate": -1}, "truncate"),
        ({"truncate": 1.5}, "truncate"),
        ({"reduction": "max"}, "reduction"),
        ({"mask": np.ones(3, bool)}, "mask"),
        ({"max_bytes": -1}, "max_bytes"),
    ],
)
def test_bad_arguments_are_refused_by_name(cls, kwargs, name):
    p, xs, ys, _ = small(cls)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        mb.bptt(p, xs, ys, **kwargs)


@pytest.mark.parametrize("cls", CELLS)
def test_bad_xs_and_ys_are_refused_by_name(cls):
    p, xs, ys, _ = small(cls)
    with pytest.raises(ValueError, match=r"^xs:"):
        mb.bptt(p, xs[..., :2], ys)
    with pytest.raises(ValueError, match=r"^ys:"):
        mb.bptt(p, xs, ys + 10)
    with pytest.raises(ValueError, match=r"^xs:"):
        mb.forward(p, np.full((2, 3), 99))


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("truncate", [None, 1])
def test_caller_arrays_are_untouched(cls, truncate):
    p, xs, ys, s0 = small(cls)
    mask = np.ones(ys.shape, bool)
    mask[0, 1] = False
    before = [a.copy() for a in (xs, ys, mask, *((s0,) if cls is GRUParams else s0))]
    params_before = [a.copy() for _, a in p.items()]
    r = mb.bptt(p, xs, ys, s0=s0, mask=mask, truncate=truncate, reduction="mean")
    mb.forward(p, xs, s0=s0)
    after = [xs, ys, mask, *((s0,) if cls is GRUParams else s0)]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    for b, (_, a) in zip(params_before, p.items(), strict=True):
        np.testing.assert_array_equal(a, b)
    parts = (r.final_state,) if cls is GRUParams else tuple(r.final_state)
    for part in parts:  # the final state is the caller's to keep, sharing nothing
        assert not any(np.shares_memory(part, a) for a in after)


# ---------------------------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_equal_central_finite_differences(cls, seed):
    p, xs, ys, s0 = small(cls, seed=seed)
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


# ---------------------------------------------------------------------------------------------
# Results: shapes, dtypes, ds0 folding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
def test_result_types_and_shapes(cls):
    p, xs, ys, s0 = small(cls)
    H = p.hidden_size
    r = mb.bptt(p, xs, ys, s0=s0)
    assert type(r.grads) is cls and isinstance(r.loss, float)
    for name, a in r.grads.items():
        assert a.shape == getattr(p, name).shape, name
    assert r.dxs.shape == xs.shape
    shared = mb.bptt(p, xs, ys, s0=tuple(a[0] for a in s0) if cls is LSTMParams else s0[0])
    unbatched = mb.bptt(p, xs[0], ys[0])
    tokens = mb.bptt(p, np.zeros((2, 4), int), ys)
    assert tokens.dxs is None
    if cls is LSTMParams:
        assert isinstance(r.ds0, LSTMState) and isinstance(r.final_state, LSTMState)
        assert r.ds0.h.shape == r.ds0.c.shape == (2, H) and r.final_state.c.shape == (2, H)
        assert shared.ds0.h.shape == (H,) and unbatched.ds0.c.shape == (H,)
    else:
        assert r.ds0.shape == (2, H) and shared.ds0.shape == (H,) and unbatched.final_state.shape == (H,)


@pytest.mark.parametrize("cls", CELLS)
def test_a_shared_initial_state_gets_the_sum_over_rows(cls):
    p, xs, ys, s0 = small(cls)
    lstm = cls is LSTMParams
    shared = LSTMState(s0.h[0], s0.c[0]) if lstm else s0[0]
    rows = LSTMState(np.stack([s0.h[0]] * 2), np.stack([s0.c[0]] * 2)) if lstm else np.stack([s0[0]] * 2)
    a, b = mb.bptt(p, xs, ys, s0=shared), mb.bptt(p, xs, ys, s0=rows)
    for x, y in zip(a.ds0 if lstm else [a.ds0], b.ds0 if lstm else [b.ds0], strict=True):
        assert_close(x, y.sum(axis=0), name="ds0")


@pytest.mark.parametrize("cls", CELLS)
def test_float32_inputs_compute_in_float32(cls):
    p, xs, ys, s0 = small(cls)
    p32 = p.astype(np.float32)
    r = mb.bptt(p32, xs.astype(np.float32), ys)
    assert all(a.dtype == np.float32 for _, a in r.grads.items()) and r.dxs.dtype == np.float32
    r64 = mb.bptt(p, xs, ys)
    assert_close(r.grads.W, r64.grads.W, name="float32 W", rtol=1e-4, atol=1e-5)
    mixed = mb.bptt(p32, xs.astype(np.float32), ys, s0=s0)  # a float64 s0 makes it float64
    assert mixed.grads.W.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Overflow and size
# ---------------------------------------------------------------------------------------------
def overflowing(cls):
    """Parameters and dense inputs (T = 5, D = 1) whose state is exactly 0 for steps 0..2, about 1
    (every unit, same sign) at step 3, and NaN from step 4 on: there W h_3 overflows to inf and
    meets an opposite infinity (GRU: r_4 = σ(-inf) = 0 times gh_n = inf; LSTM: gi_4 = -inf + gh_4 = inf).
    """
    xs = np.array([[0.0], [0.0], [0.0], [10.0], [0.0]])
    if cls is GRUParams:  # H = 2, blocks r, z, n
        U = np.array([[10.0]] * 2 + [[-10.0]] * 2 + [[10.0]] * 2)  # step 3: r = 1, z = 0, n = 1: h_3 = 1
        W = np.zeros((6, 2))
        W[:2], W[4:] = -1e308, 1e308  # step 4: gh_r = -inf, gh_n = +inf
    else:  # H = 3; step 3: every gate saturated, c_3 = 1, h_3 = tanh(1); step 4: gh = +inf
        U, W = np.full((12, 1), 10.0), np.full((12, 3), 1e308)
        xs[4] = -1e308  # gi_4 = -inf
    return cls(U=U, W=W, V=np.ones((2, W.shape[1]))), xs


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cls", CELLS)
def test_a_state_that_stops_being_finite_is_named_by_its_first_step(cls):
    p, xs = overflowing(cls)
    mb.forward(p, xs[:4])  # finite up to step 3
    with pytest.raises(NonFiniteError, match="t = 4") as info:
        mb.bptt(p, xs, np.zeros(5, int))
    assert (info.value.what, info.value.step) == ("z_t", 4)
    with pytest.raises(NonFiniteError, match="t = 4"):
        mb.forward(p, xs)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cls", CELLS)
def test_logits_that_overflow_are_named_by_their_first_step(cls):
    p, xs = overflowing(cls)
    p = p.replace(V=np.full(p.V.shape, 1e308))  # o_3 = V h_3 overflows; o_0..o_2 = 0
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs[:4], np.zeros(4, int))
    assert (info.value.what, info.value.step) == ("o_t", 3)


@pytest.mark.parametrize("cls", CELLS)
def test_a_call_over_max_bytes_is_refused_before_allocating(cls):
    p = cls.init(5, 64, 3, seed=0)
    xs = np.zeros(1_000_000, dtype=np.int64)
    ys = np.zeros(1_000_000, dtype=np.int64)
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError, match=r"bytes.*max_bytes") as info:
            mb.bptt(p, xs, ys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, peak  # the refused call needs about 7.7 GB (GRU) to 10.8 GB (LSTM)
    assert "T steps of B*(" in str(info.value)
    with pytest.raises(TooLargeError):
        mb.forward(p, xs[:1000], max_bytes=1000)
    mb.bptt(p, xs[:10], ys[:10], max_bytes=10**6)  # small enough: runs


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("truncate", [0, 1, 2])
def test_truncated_bptt_names_the_first_step_whose_logits_overflow(cls, truncate):
    """Unbatched, T = 4: o_t = V h_t is 0 at steps 0..2 and overflows at step 3 (see overflowing);
    the windowed recursion names the logits and that step, with the whole message."""
    p, xs = overflowing(cls)
    p = p.replace(V=np.full(p.V.shape, 1e308))
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs[:4], np.zeros(4, int), truncate=truncate)
    assert (info.value.what, info.value.step) == ("o_t", 3)
    assert str(info.value) == (
        "o_t: not finite from step t = 3 on (the computation overflowed); scale the parameters or inputs down"
    )


def saturated_output(cls, a=1e308):
    """H = D = 1, K = 2, no weights (U = W = 0), the candidate's bias 0.2: 0 < h_t < 0.2 at every
    step; V = (a, -a). The logits ±a h_t are finite and so is the loss (2 a h_t per step, label 1),
    but dE_t/dh_t = V^T (y_hat_t - onehot(1)) = V^T (1, -1) = 2a overflows at every step."""
    G = cls.GATES
    b_ih = np.zeros(G)
    b_ih[2] = 0.2  # the GRU's n block, the LSTM's g block
    p = cls(U=np.zeros((G, 1)), W=np.zeros((G, 1)), b_ih=b_ih, b_hh=np.zeros(G), V=np.array([[a], [-a]]))
    return p, np.zeros((3, 1)), np.ones(3, dtype=np.int64)


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("truncate", [None, 0, 1])
def test_a_gradient_from_the_output_layer_that_overflows_is_named_dE_dgh_t(cls, truncate):
    """Finite states, logits and loss, an infinite dE_t/dh_t from step 0 on: full and truncated
    BPTT name the first step whose dE/dgh_t is not finite, with the whole message."""
    p, xs, ys = saturated_output(cls)
    h = mb.forward(p.replace(V=np.ones((2, 1))), xs).h
    assert np.all((h > 0) & (h < 0.2))
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(p, xs, ys, truncate=truncate)
    assert (info.value.what, info.value.step) == ("dE/dgh_t", 0)
    assert str(info.value) == (
        "dE/dgh_t: not finite from step t = 0 on (the computation overflowed); "
        "scale the parameters or inputs down"
    )


@pytest.mark.parametrize("cls", CELLS)
def test_overflow_is_named_and_never_a_warning_with_or_without_truncation(cls):
    """forward, full and truncated bptt and the truncated layer backward raise NonFiniteError
    for logits or gradients that overflow, and numpy warns of nothing on the way."""
    p, xs = overflowing(cls)
    big_v = p.replace(V=np.full(p.V.shape, 1e308))
    q, xs_q, ys_q = saturated_output(cls)
    calls = {
        "forward, o_t": lambda: mb.forward(big_v, xs[:4]),
        "bptt, o_t": lambda: mb.bptt(big_v, xs[:4], np.zeros(4, int)),
        "bptt truncate=1, o_t": lambda: mb.bptt(big_v, xs[:4], np.zeros(4, int), truncate=1),
        "bptt, dE/dgh_t": lambda: mb.bptt(q, xs_q, ys_q),
        "bptt truncate=1, dE/dgh_t": lambda: mb.bptt(q, xs_q, ys_q, truncate=1),
        "backward truncate=1, z_t": lambda: mb.backward(p, xs, np.ones((5, p.hidden_size)), truncate=1),
    }
    for label, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a RuntimeWarning is an error, not NonFiniteError
            try:
                call()
            except NonFiniteError:
                continue
            except RuntimeWarning as w:
                pytest.fail(f"{label}: numpy warned: {w}")
        pytest.fail(f"{label}: no NonFiniteError")


# ---------------------------------------------------------------------------------------------
# Exact identities: a truncation that keeps every step, an unbatched call
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
def test_a_truncation_that_keeps_every_step_is_full_bptt_bitwise(cls):
    """truncate >= T - 1 keeps every term and runs the full recursion itself: every result is the
    untruncated one to the last bit (the windowed recursion adds the same terms by other code,
    which differs in the last bits)."""
    p, xs, ys, s0 = small(cls, T=6, B=3, H=4, D=3)
    full = mb.bptt(p, xs, ys, s0=s0)
    parts = (lambda r: [r.ds0]) if cls is GRUParams else (lambda r: list(r.ds0))
    finals = (lambda r: [r.final_state]) if cls is GRUParams else (lambda r: list(r.final_state))
    for tau in (5, 6, 7, 50):
        r = mb.bptt(p, xs, ys, s0=s0, truncate=tau)
        assert r.loss == full.loss, tau
        for name, a in full.grads.items():
            assert np.array_equal(getattr(r.grads, name), a), (tau, name)
        assert np.array_equal(r.dxs, full.dxs), tau
        for a, b in zip(parts(r) + finals(r), parts(full) + finals(full), strict=True):
            assert np.array_equal(a, b), tau
    lagged = mb.bptt(p, xs, ys, s0=s0, truncate=4)  # drops the lag-5 terms
    assert not np.array_equal(lagged.grads.W, full.grads.W)


@pytest.mark.parametrize("cls", CELLS)
def test_an_unbatched_call_is_the_one_row_batched_call_bitwise(cls):
    """Every result of an unbatched call is row 0 of the same call batched with B = 1, to the
    last bit, signed zeros included. The LSTM's forget gate is closed (f_t = 0 exactly), so
    dE/dc0 = dE/dc_0 ⊙ f_0 is a zero that keeps the sign of dE/dc_0."""
    p, xs, ys, _ = small(cls, B=1, H=4, seed=3)
    if cls is LSTMParams:
        b_ih = p.b_ih.copy()
        b_ih[4:8] = -1000.0  # gate_f = σ(-1000 + ...) = 0
        p = p.replace(b_ih=b_ih)
    one, row = mb.bptt(p, xs[0], ys[0]), mb.bptt(p, xs, ys)

    def same(a, b, what):
        assert a.shape == b.shape and np.array_equal(a, b), what
        assert np.array_equal(np.signbit(a), np.signbit(b)), f"{what}: the signs of zero differ"

    assert one.loss == row.loss
    for name, a in one.grads.items():
        same(a, getattr(row.grads, name), name)
    same(one.dxs, row.dxs[0], "dxs")
    if cls is LSTMParams:
        assert np.all(one.ds0.c == 0) and np.signbit(one.ds0.c).any()  # -0.0 among them
        for name in ("h", "c"):
            same(getattr(one.ds0, name), getattr(row.ds0, name)[0], f"ds0.{name}")
            same(getattr(one.final_state, name), getattr(row.final_state, name)[0], f"final_state.{name}")
    else:
        same(one.ds0, row.ds0[0], "ds0")
        same(one.final_state, row.final_state[0], "final_state")


# ---------------------------------------------------------------------------------------------
# The compute dtype: float32 only when every floating input is float32, else float64
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
def test_an_integer_initial_state_is_rounded_once_to_the_compute_dtype(cls):
    """An integer s0 is s0.astype(compute dtype): 2**60 + 2**36 + 1 rounds to 2**60 + 2**37 in
    float32 (rounded through float64 first it would be the tie 2**60 + 2**36, then 2**60). The
    float32 call gives the results of the float32 s0 bitwise; with W = 0 and the update (GRU)
    or forget (LSTM) gate saturated open, h0 (GRU) or c0 (LSTM) is carried unchanged to T - 1."""
    G, H = cls.GATES, 2
    big = np.array([[2**60 + 2**36 + 1, -(2**60) - 2**36 - 1]], dtype=np.int64)
    assert int(big.astype(np.float32)[0, 0]) == 2**60 + 2**37
    b_ih = np.zeros(G * H)
    b_ih[H : 2 * H] = 100.0  # z_t = 1 (GRU), gate_f = 1 (LSTM)
    if cls is LSTMParams:
        b_ih[:H] = -100.0  # gate_i = 0: c_t = c_{t-1} exactly
    p = cls(
        U=np.ones((G * H, 1)), W=np.zeros((G * H, H)), b_ih=b_ih, b_hh=np.zeros(G * H), V=np.ones((2, H))
    ).astype(np.float32)
    xs = np.ones((1, 3, 1), dtype=np.float32)
    s0 = big if cls is GRUParams else LSTMState(np.zeros((1, H), dtype=np.int64), big)
    s0_32 = big.astype(np.float32) if cls is GRUParams else LSTMState(*(a.astype(np.float32) for a in s0))
    r, r32 = mb.forward(p, xs, s0=s0), mb.forward(p, xs, s0=s0_32)
    carried = r.final_state if cls is GRUParams else r.final_state.c
    assert carried.dtype == np.float32 and np.array_equal(carried, big.astype(np.float32))
    for name in ("h", "o", "y_hat"):
        assert np.array_equal(getattr(r, name), getattr(r32, name)), name


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize(
    "s0_dtype, dtype", [(None, np.float32), (np.float32, np.float32), (np.float64, np.float64)]
)
def test_prepare_gated_gives_every_array_in_the_compute_dtype(cls, s0_dtype, dtype):
    """float32 parameters and dense inputs: the inputs, the initial state, the weights and the
    parameters are all in float32, or all in float64 when s0 is float64."""
    p, xs, ys, s0 = small(cls)
    s0 = (
        None
        if s0_dtype is None
        else (s0.astype(s0_dtype) if cls is GRUParams else LSTMState(*(a.astype(s0_dtype) for a in s0)))
    )
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    g = gated.prepare_gated(kind_of(p).cell, p32, xs32, ys, s0=s0, reduction="mean")
    assert g.dtype == dtype
    arrays = {
        "X": g.X,
        "s0": g.s0,
        "weight": g.weight,
        "U": g.U,
        "W": g.W,
        "b_ih": g.b_ih,
        "b_hh": g.b_hh,
        "V": g.V,
        "c": g.c,
    }
    assert {name: a.dtype for name, a in arrays.items()} == dict.fromkeys(arrays, np.dtype(dtype))


def longdouble_s0(cls, s0):
    """s0 (float64 values) as np.longdouble, and as float64."""
    if cls is GRUParams:
        return s0.astype(np.longdouble), s0
    return LSTMState(*(a.astype(np.longdouble) for a in s0)), s0


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("cls", CELLS)
def test_a_longdouble_initial_state_is_never_narrowed_to_float32(cls):
    """float32 only when every floating input is float32: a longdouble s0 with float32 parameters
    and inputs gives the float64 call's results to float64 accuracy."""
    p, xs, ys, s0 = small(cls)
    wide_s0, s0_64 = longdouble_s0(cls, s0)
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    r = mb.bptt(p32, xs32, ys, s0=wide_s0, reduction="mean")
    ref = mb.bptt(p32.astype(np.float64), xs32.astype(np.float64), ys, s0=s0_64, reduction="mean")
    assert r.grads.W.dtype != np.float32
    assert abs(r.loss - ref.loss) <= 1e-10 * abs(ref.loss)
    for name, a in ref.grads.items():
        assert_close(getattr(r.grads, name), a, name=f"grads.{name}")
    assert_close(r.dxs, ref.dxs, name="dxs")


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("truncate", [None, 1])
def test_a_longdouble_initial_state_computes_in_float64_like_the_elman_cell(cls, truncate):
    """A floating dtype other than float32 and float64 computes in float64 (as the Elman cell's
    inputs do): a longdouble s0 of float64 values gives the float64 call's results bitwise, and
    float64 gradients (never longdouble: parameters hold float32 or float64 only), also for
    forward and the layer backward."""
    p, xs, ys, s0 = small(cls)
    wide_s0, s0_64 = longdouble_s0(cls, s0)
    p32, xs32 = p.astype(np.float32), xs.astype(np.float32)
    kw = {"reduction": "mean", "truncate": truncate}
    r = mb.bptt(p32, xs32, ys, s0=wide_s0, **kw)
    ref = mb.bptt(p32.astype(np.float64), xs32.astype(np.float64), ys, s0=s0_64, **kw)
    assert r.grads.dtype == np.float64 and r.loss == ref.loss
    for name, a in ref.grads.items():
        assert getattr(r.grads, name).dtype == np.float64 and np.array_equal(getattr(r.grads, name), a), name
    assert np.array_equal(r.dxs, ref.dxs) and r.dxs.dtype == np.float64
    assert mb.forward(p32, xs32, s0=wide_s0).h.dtype == np.float64
    dhs = np.ones((2, 4, p.hidden_size))
    assert mb.backward(p, xs, dhs, s0=wide_s0, truncate=truncate).grads.dtype == np.float64
