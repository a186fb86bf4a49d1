"""mb.backward, the vector-Jacobian product of the recurrent layer alone, against its oracle.

L = sum_t <dhs_t, h_t> + <d_final, final state> for the Elman cell, the GRU and the LSTM, by
hand (manual_bptt.layer) and by plain unrolled autograd (reference.layer). Every field (grads
U, W and the biases, dxs, ds0, hs, final_state) must satisfy max|a - b| <= 1e-10 max|ref| + 1e-12,
NaN failing. The upstream gradients are random normal draws (never all ones, never symmetric),
D, H, T, B are drawn independently, biases random and nonzero (b_ih != b_hh), s0 and d_final
random when given, and every truncation tau from 0 to past T is drawn.

Then: mb.bptt is this backward with dhs_t = V^T dE/do_t (the identity that makes bptt "backward
plus the output layer"), truncation keeps exactly the steps t - tau <= k <= t of each chain,
d_final's documented meaning under truncation, and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bptt as mb
import reference as ref
from conftest import examples, oracle_close
from manual_bptt.testing import assert_close

CELLS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
BIASES = {"rnn": ("b",), "gru": ("b_ih", "b_hh"), "lstm": ("b_ih", "b_hh")}


def make(
    cell,
    *,
    D=3,
    H=4,
    T=5,
    B=2,
    seed=0,
    tokens=False,
    batched=True,
    bias=True,
    s0_kind="rows",
    d_final=True,
    weight_scale=1.0,
):
    """(p, xs, dhs, s0, d_final): random parameters, inputs and upstream gradients."""
    rng = np.random.default_rng(seed)
    p = CELLS[cell].init(D, H, 3, seed=seed, bias=bias, weight_scale=weight_scale)
    lead = (B, T) if batched else (T,)
    xs = rng.integers(0, D, lead) if tokens else rng.standard_normal((*lead, D))
    dhs = rng.standard_normal((*lead, H))
    state_shape = (B, H) if batched else (H,)
    parts = 2 if cell == "lstm" else 1

    def state(kind):
        if kind is None:
            return None
        shape = (H,) if kind == "shared" else state_shape
        arrays = [rng.standard_normal(shape) for _ in range(parts)]
        return mb.LSTMState(*arrays) if cell == "lstm" else arrays[0]

    return p, xs, dhs, state(s0_kind), state("rows") if d_final else None


def check_against_oracle(cell, p, xs, dhs, *, s0, d_final, truncate, activation=None, record=True):
    got = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=truncate, activation=activation)
    want = ref.layer_backward(
        cell, p, xs, dhs, s0=s0, d_final=d_final, truncate=truncate, activation=activation or "tanh"
    )
    close = oracle_close if record else (lambda a, e, name, key: assert_close(a, e, name=name))
    for name in ("U", "W", *BIASES[cell]):
        if getattr(p, name) is None:
            assert getattr(got.grads, name) is None, name
            continue
        close(getattr(got.grads, name), want.grads[name], name=f"grads.{name}", key=f"layer.{cell}.{name}")
    assert got.grads.V is None and got.grads.c is None
    if want.dxs is None:
        assert got.dxs is None
    else:
        close(got.dxs, want.dxs, name="dxs", key=f"layer.{cell}.dxs")
    if cell == "lstm":
        assert isinstance(got.ds0, mb.LSTMState) and isinstance(got.final_state, mb.LSTMState)
        for j, part in enumerate("hc"):
            close(got.ds0[j], want.ds0[j], name=f"ds0.{part}", key=f"layer.{cell}.ds0")
            close(
                got.final_state[j], want.final_state[j], name=f"final_state.{part}", key=f"layer.{cell}.final"
            )
    else:
        close(got.ds0, want.ds0, name="ds0", key=f"layer.{cell}.ds0")
        close(got.final_state, want.final_state, name="final_state", key=f"layer.{cell}.final")
    close(got.hs, want.hs, name="hs", key=f"layer.{cell}.hs")
    return got


@st.composite
def layer_problems(draw):
    cell = draw(st.sampled_from(sorted(CELLS)))
    T = draw(st.integers(1, 7))
    fields = {
        "D": draw(st.integers(1, 5)),
        "H": draw(st.integers(1, 5)),
        "T": T,
        "B": draw(st.integers(1, 4)),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "tokens": draw(st.booleans()),
        "batched": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "s0_kind": draw(st.sampled_from([None, "shared", "rows"])),
        "d_final": draw(st.booleans()),
        "weight_scale": draw(st.sampled_from([0.5, 1.0, 3.0])),
    }
    truncate = draw(st.one_of(st.none(), st.integers(0, T + 1)))
    activation = (
        draw(st.sampled_from([None, "tanh", "sigmoid", "relu", "identity"])) if cell == "rnn" else None
    )
    return cell, fields, truncate, activation


@settings(max_examples=examples(1.0))
@given(layer_problems())
def test_backward_matches_the_autograd_oracle_for_every_cell_input_and_truncation(problem):
    cell, fields, truncate, activation = problem
    p, xs, dhs, s0, d_final = make(cell, **fields)
    check_against_oracle(cell, p, xs, dhs, s0=s0, d_final=d_final, truncate=truncate, activation=activation)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("truncate", [None, 0, 1, 2, 5])
def test_backward_on_fixed_unequal_sizes(cell, tokens, truncate):
    # D != H != T != B, s0 and d_final given: a fixed point of the property above
    p, xs, dhs, s0, d_final = make(cell, D=5, H=3, T=7, B=2, seed=11, tokens=tokens)
    check_against_oracle(cell, p, xs, dhs, s0=s0, d_final=d_final, truncate=truncate)


def output_upstream(p, xs, ys, **kw):
    """dhs_t = V^T dE/do_t with dE/do_t = y_hat_t - onehot(y_t) (reduction "sum", no mask)."""
    fw = mb.forward(p, xs, **kw)
    dO = fw.y_hat.copy()
    np.put_along_axis(dO, ys[..., None], np.take_along_axis(dO, ys[..., None], -1) - 1.0, -1)
    return dO @ p.V


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("truncate", [None, 0, 2])
@pytest.mark.parametrize("tokens", [False, True])
def test_bptt_is_backward_with_dhs_from_the_output_layer(cell, truncate, tokens):
    p, xs, _, s0, _ = make(cell, D=4, H=3, T=6, B=3, seed=5, tokens=tokens)
    ys = np.random.default_rng(1).integers(0, p.output_size, xs.shape[:2])
    dhs = output_upstream(p, xs, ys, s0=s0)
    r = mb.bptt(p, xs, ys, s0=s0, truncate=truncate)
    lb = mb.backward(p, xs, dhs, s0=s0, truncate=truncate)
    for name in ("U", "W", *BIASES[cell]):
        assert_close(getattr(lb.grads, name), getattr(r.grads, name), name=name)
    if not tokens:
        assert_close(lb.dxs, r.dxs, name="dxs")
    for a, b in zip(
        np.atleast_1d(lb.ds0) if cell != "lstm" else lb.ds0,
        np.atleast_1d(r.ds0) if cell != "lstm" else r.ds0,
        strict=True,
    ):
        assert_close(a, b, name="ds0")
    h = mb.forward(p, xs, s0=s0)
    np.testing.assert_array_equal(lb.hs, h.s if cell == "rnn" else h.h)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_d_final_is_the_upstream_of_the_last_step(cell):
    # Documented: d_final belongs to step T - 1. For the Elman cell and the GRU (whose final
    # state is h_{T-1}), it is the same as adding it to dhs_{T-1}, with or without truncation.
    p, xs, dhs, s0, d_final = make(cell, T=6, seed=3)
    for tau in (None, 0, 2):
        with_final = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=tau)
        if cell == "lstm":
            # the c part of d_final reaches back tau steps only, like the h part
            only_h = mb.backward(
                p, xs, dhs, s0=s0, d_final=mb.LSTMState(d_final.h, 0 * d_final.c), truncate=tau
            )
            assert not np.allclose(with_final.grads.W, only_h.grads.W)
            continue
        folded = dhs.copy()
        folded[:, -1] += d_final
        plain = mb.backward(p, xs, folded, s0=s0, truncate=tau)
        assert_close(with_final.grads.W, plain.grads.W, name="W")
        assert_close(with_final.ds0, plain.ds0, name="ds0")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_truncation_keeps_exactly_the_window_of_each_chain(cell):
    # An upstream at step t alone: with tau, the gradient of x_k is nonzero exactly for
    # t - tau <= k <= t, and s0 is reached only when t <= tau.
    T, t = 7, 5
    p, xs, _, s0, _ = make(cell, T=T, B=1, batched=False, seed=9, weight_scale=1.0)
    dhs = np.zeros((T, p.hidden_size))
    dhs[t] = np.random.default_rng(2).standard_normal(p.hidden_size)
    for tau in range(T + 1):
        r = mb.backward(p, xs, dhs, s0=s0, truncate=tau)
        reached = np.abs(r.dxs).max(axis=1) > 0
        want = np.array([t - tau <= k <= t for k in range(T)])
        np.testing.assert_array_equal(reached, want, err_msg=f"tau = {tau}")
        ds0 = np.concatenate(r.ds0) if cell == "lstm" else r.ds0
        assert (np.abs(ds0).max() > 0) == (t <= tau), f"tau = {tau}"


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_float32_only_when_every_floating_input_is_float32(cell):
    p, xs, dhs, _, _ = make(cell, seed=4, s0_kind=None, d_final=False)
    p32 = p.astype(np.float32)
    assert mb.backward(p32, xs.astype(np.float32), dhs.astype(np.float32)).grads.W.dtype == np.float32
    ints = np.round(dhs * 4).astype(np.int64)  # integers are not floating: float32 stays
    assert mb.backward(p32, xs.astype(np.float32), ints).grads.W.dtype == np.float32
    r = mb.backward(p32, xs.astype(np.float32), dhs)  # float64 upstream: computed in float64
    assert r.grads.W.dtype == np.float64 and r.hs.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda dhs: dhs[:, :-1], r"dhs: expected shape \(2, 5, 4\)"),
        (lambda dhs: dhs[..., :-1], r"dhs: expected shape"),
        (lambda dhs: dhs[0], r"dhs: expected shape"),
        (
            lambda dhs: np.where(np.arange(dhs.size).reshape(dhs.shape) == 7, np.nan, dhs),
            r"dhs: contains NaN",
        ),
        (
            lambda dhs: np.where(np.arange(dhs.size).reshape(dhs.shape) == 3, np.inf, dhs),
            r"dhs: contains NaN or inf",
        ),
        (lambda dhs: dhs > 0, r"dhs: expected a real numeric array"),
        (lambda dhs: dhs.astype(complex), r"dhs: expected a real numeric array"),
        (lambda dhs: "not numbers", r"dhs: expected a real numeric array"),
        (lambda dhs: [[1.0, 2.0], [3.0]], r"dhs: cannot be read"),
    ],
)
def test_bad_dhs_is_a_value_error_naming_dhs(cell, change, match):
    p, xs, dhs, _, _ = make(cell)
    with pytest.raises(ValueError, match=match):
        mb.backward(p, xs, change(dhs))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_bad_d_final_is_a_value_error_naming_d_final(cell):
    p, xs, dhs, _, _ = make(cell)
    H = p.hidden_size
    if cell == "lstm":
        for bad, match in [
            (np.zeros((2, H)), r"d_final: the LSTM's final-state gradient is a pair"),
            ((np.zeros((2, H)),), r"of length 1"),
            (mb.LSTMState(np.zeros((2, H)), np.zeros((2, H + 1))), r"d_final\.c: expected shape \(2, 4\)"),
            (mb.LSTMState(np.full((2, H), np.nan), np.zeros((2, H))), r"d_final\.h: contains NaN"),
            (mb.LSTMState(np.zeros(H), np.zeros(H)), r"d_final\.h: expected shape \(2, 4\)"),
        ]:
            with pytest.raises(ValueError, match=match):
                mb.backward(p, xs, dhs, d_final=bad)
        return
    for bad, match in [
        (np.zeros(H), r"d_final: expected shape \(2, 4\)"),
        (np.zeros((2, H, 1)), r"d_final: expected shape"),
        (np.full((2, H), np.inf), r"d_final: contains NaN or inf"),
        (mb.LSTMState(np.zeros((2, H)), np.zeros((2, H))), r"d_final: an LSTMState is the LSTM's"),
        ("x", r"d_final: expected a real numeric array"),
    ]:
        with pytest.raises(ValueError, match=match):
            mb.backward(p, xs, dhs, d_final=bad)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_an_activation_with_a_gated_cell_is_refused(cell):
    p, xs, dhs, _, _ = make(cell)
    with pytest.raises(ValueError, match="activation: applies to the Elman cell only"):
        mb.backward(p, xs, dhs, activation="tanh")


def test_other_bad_arguments_are_named():
    p, xs, dhs, _, _ = make("rnn")
    for kwargs, match in [
        ({"truncate": -1}, "truncate"),
        ({"truncate": 1.5}, "truncate"),
        ({"max_bytes": -3}, "max_bytes"),
        ({"activation": "softsign"}, "activation"),
    ]:
        with pytest.raises(ValueError, match=match):
            mb.backward(p, xs, dhs, **kwargs)
    with pytest.raises(ValueError, match="p: expected"):
        mb.backward(object(), xs, dhs)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("truncate", [None, 1])
def test_sizes_over_max_bytes_are_refused_before_allocating(cell, truncate):
    p, xs, dhs, _, _ = make(cell, T=5, B=2)
    with pytest.raises(mb.TooLargeError, match="max_bytes") as info:
        mb.backward(p, xs, dhs, truncate=truncate, max_bytes=100)
    assert "nothing was allocated" in str(info.value)
    assert mb.backward(p, xs, dhs, truncate=truncate).hs.shape == dhs.shape  # the default fits


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("truncate", [None, 1])
def test_caller_arrays_are_untouched(cell, truncate):
    p, xs, dhs, s0, d_final = make(cell, seed=8)
    args = [xs, dhs, *((s0, d_final) if cell != "lstm" else (*s0, *d_final))]
    before = [a.copy() for a in args]
    r = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=truncate)
    for a, b in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(r.hs, dhs) and not np.shares_memory(r.dxs, xs)


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_truncation_that_keeps_every_step_is_the_full_backward_bitwise(cell):
    """truncate >= T - 1 keeps every term, and runs the full recursion itself: the result is
    the untruncated one to the last bit (the sum over lags, which adds the same terms in
    another order, differs in the last bits, so this pins which code runs)."""
    p, xs, dhs, s0, d_final = make(cell, D=4, H=5, T=7, B=3, seed=3)
    full = mb.backward(p, xs, dhs, s0=s0, d_final=d_final)
    for tau in (6, 7, 50):
        r = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=tau)
        for name, a in full.grads.items():
            assert np.array_equal(getattr(r.grads, name), a), (tau, name)
        assert np.array_equal(r.dxs, full.dxs), tau
    lagged = mb.backward(p, xs, dhs, s0=s0, d_final=d_final, truncate=5)  # drops the lag-6 terms
    assert not np.array_equal(lagged.grads.W, full.grads.W)


# ---------------------------------------------------------------------------------------------
# Whole messages, and upstream arrays of other dtypes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_dhs_messages_whole(cell):
    p, xs, dhs, _, _ = make(cell, T=5, B=2, H=4)
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs, dhs[:, :-1])
    assert str(info.value) == (
        "dhs: expected shape (2, 5, 4) (B = 2, T = 5, H = 4: one gradient per output h_t, "
        "batch-first like xs), got (2, 4, 4)"
    )
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs[0], dhs)
    assert str(info.value) == (
        "dhs: expected shape (5, 4) (T = 5, H = 4: one gradient per output h_t, like the unbatched "
        "xs), got (2, 5, 4)"
    )
    bad = dhs.copy()
    bad[1, 3, 2] = np.nan
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs, bad)
    assert str(info.value) == "dhs: contains NaN or inf (first at index (1, 3, 2))"


def test_the_d_final_messages_whole():
    p, xs, dhs, _, _ = make("lstm", H=4)
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs, dhs, d_final=np.zeros((2, 4)))
    assert str(info.value) == (
        "d_final: the LSTM's final-state gradient is a pair, manual_bptt.LSTMState(dh, dc) or a tuple "
        "(dh, dc), got ndarray"
    )
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs, dhs, d_final=(np.zeros((2, 4)),) * 3)
    assert str(info.value).endswith("got tuple of length 3")
    for i, part in enumerate(("h", "c")):
        pair = [np.zeros((2, 4)), np.zeros((2, 4))]
        pair[i] = "x"
        want = rf"^d_final\.{part}: expected a real numeric array, got dtype <U1$"
        with pytest.raises(ValueError, match=want):
            mb.backward(p, xs, dhs, d_final=tuple(pair))
    p, xs, dhs, _, _ = make("rnn", H=4)
    with pytest.raises(ValueError) as info:
        mb.backward(p, xs, dhs, d_final=mb.LSTMState(np.zeros((2, 4)), np.zeros((2, 4))))
    assert str(info.value) == (
        "d_final: an LSTMState is the LSTM's; this cell's final state is one array (H,) or (B, H)"
    )
    want = r"^p: expected manual_bptt.RNNParams, GRUParams, LSTMParams or StackParams, got dict$"
    with pytest.raises(ValueError, match=want):
        mb.backward({}, xs, dhs)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_size_refusal_of_the_layer_names_backward(cell):
    p, xs, dhs, _, _ = make(cell, T=5, B=2)
    with pytest.raises(mb.TooLargeError) as info:
        mb.backward(p, xs, dhs, max_bytes=100)
    assert str(info.value).startswith("backward")


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_upstream_gradients_are_taken_in_the_compute_dtype(cell, dtype):
    """Integer dhs and d_final are numbers like any other: the result is that of the same
    values as floats, in the parameters' dtype."""
    p, xs, dhs, s0, d_final = make(cell, seed=6)
    p = p.astype(dtype)
    xs = xs.astype(dtype)
    if s0 is not None:
        s0 = mb.LSTMState(*(a.astype(dtype) for a in s0)) if cell == "lstm" else s0.astype(dtype)
    ints = np.round(dhs * 3).astype(np.int64)
    if cell == "lstm":
        fin = mb.LSTMState(*(np.round(a * 3).astype(np.int64) for a in d_final))
        fin_f = mb.LSTMState(*(a.astype(dtype) for a in fin))
    else:
        fin = np.round(d_final * 3).astype(np.int64)
        fin_f = fin.astype(dtype)
    for truncate in (None, 1):
        got = mb.backward(p, xs, ints, s0=s0, d_final=fin, truncate=truncate)
        want = mb.backward(p, xs, ints.astype(dtype), s0=s0, d_final=fin_f, truncate=truncate)
        assert got.grads.W.dtype == dtype
        for name, a in want.grads.items():
            assert np.array_equal(getattr(got.grads, name), a), (truncate, name)


def test_a_half_precision_upstream_computes_in_float64():
    """float32 only when every floating input is float32: float16 dhs is floating and not float32."""
    p, xs, dhs, _, _ = make("rnn", seed=4, s0_kind=None, d_final=False)
    r = mb.backward(p.astype(np.float32), xs.astype(np.float32), dhs.astype(np.float16))
    assert r.grads.W.dtype == np.float64
