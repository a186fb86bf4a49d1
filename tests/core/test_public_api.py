"""The public API: one set of names over every cell, dispatching on the type of the parameters.

mb.bptt, mb.forward, mb.backward, mb.decompose, mb.rtrl and mb.state_jacobian take RNNParams,
GRUParams and LSTMParams; ``activation`` defaults to None (tanh for the Elman cell) and any
explicit value with a gated cell is a ValueError naming it; results carry the params type and,
for the LSTM, LSTMState pairs; mb.TooLargeError is the one every function raises.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
import reference as ref
from conftest import assert_identical, check_result
from manual_bptt import errors
from manual_bptt.testing import assert_close

CELLS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
D, H, K, T, B = 4, 3, 5, 6, 2


def problem(cell, seed=0):
    rng = np.random.default_rng(seed)
    p = CELLS[cell].init(D, H, K, seed=seed)
    xs = rng.standard_normal((B, T, D))
    ys = rng.integers(0, K, (B, T))
    parts = [rng.standard_normal((B, H)) for _ in range(2 if cell == "lstm" else 1)]
    s0 = mb.LSTMState(*parts) if cell == "lstm" else parts[0]
    return p, xs, ys, s0


def test_every_documented_name_is_exported():
    functions = ["bptt", "forward", "backward", "decompose", "rtrl", "state_jacobian"]
    params = ["RNNParams", "GRUParams", "LSTMParams", "LSTMState"]
    exceptions = ["NonFiniteError", "TooLargeError"]
    results = ["BPTTResult", "ForwardResult", "GatedBPTTResult", "GatedForwardResult", "LayerResult"]
    decomposition = ["Decomposition", "LagProfile", "StepTerms", "TermNorms"]
    constants = ["ACTIVATIONS", "MAX_FULL_BYTES", "MAX_RTRL_BYTES", "DEFAULT_MAX_BYTES"]
    for name in functions + params + exceptions + results + decomposition + constants:
        assert hasattr(mb, name), name
        assert name in mb.__all__, name
    assert sorted(mb.__all__) == sorted(set(mb.__all__))
    assert mb.TooLargeError is errors.TooLargeError
    assert mb.NonFiniteError is errors.NonFiniteError
    assert isinstance(mb.MAX_FULL_BYTES, int) and isinstance(mb.MAX_RTRL_BYTES, int)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_bptt_dispatches_on_the_params_type_and_matches_the_oracle(cell):
    p, xs, ys, s0 = problem(cell, seed=1)
    for tau in (None, 2):
        r = mb.bptt(p, xs, ys, s0=s0, truncate=tau)
        assert type(r.grads) is type(p)
        want = ref.bptt_cell(cell, p, xs, ys, s0=s0, truncate=tau)
        for name, _ in p.items():
            assert_close(getattr(r.grads, name), getattr(want.grads, name), name=name)
        if cell == "lstm":
            assert isinstance(r.ds0, mb.LSTMState) and isinstance(r.final_state, mb.LSTMState)
            for j in range(2):
                assert_close(r.ds0[j], want.ds0[j], name="ds0")
                assert_close(r.final_state[j], want.final_state[j], name="final_state")
        else:
            assert_close(r.ds0, want.ds0, name="ds0")
            assert_close(r.final_state, want.final_state, name="final_state")
        if r.dxs is not None:
            assert_close(r.dxs, want.dxs, name="dxs")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_forward_rtrl_decompose_and_state_jacobian_take_every_cell(cell):
    p, xs, ys, s0 = problem(cell, seed=2)
    S = 2 * H if cell == "lstm" else H
    fw = mb.forward(p, xs, s0=s0)
    h = fw.s if cell == "rnn" else fw.h
    assert h.shape == (B, T, H) and fw.o.shape == (B, T, K)
    r = mb.bptt(p, xs, ys, s0=s0)
    rt = mb.rtrl(p, xs, ys, s0=s0)
    assert type(rt.grads) is type(p)
    terms = mb.decompose(p, xs, ys, s0=s0)
    for name, _ in p.items():
        assert_close(getattr(rt.grads, name), getattr(r.grads, name), name=f"rtrl {name}")
        if name not in ("V", "c"):
            total = sum(getattr(terms, name)[t, k] for t in range(T) for k in range(t + 1))
            assert_close(total, getattr(r.grads, name), name=f"decompose {name}")
    assert mb.state_jacobian(p, xs, 4, 1, s0=s0).shape == (B, S, S)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("fn", ["bptt", "forward", "backward", "decompose", "rtrl", "state_jacobian"])
def test_an_explicit_activation_with_a_gated_cell_is_a_value_error_naming_it(cell, fn):
    p, xs, ys, _ = problem(cell)
    dhs = np.zeros((B, T, H))
    calls = {
        "bptt": lambda **kw: mb.bptt(p, xs, ys, **kw),
        "forward": lambda **kw: mb.forward(p, xs, **kw),
        "backward": lambda **kw: mb.backward(p, xs, dhs, **kw),
        "decompose": lambda **kw: mb.decompose(p, xs, ys, **kw),
        "rtrl": lambda **kw: mb.rtrl(p, xs, ys, **kw),
        "state_jacobian": lambda **kw: mb.state_jacobian(p, xs, 2, 0, **kw),
    }
    for activation in ("tanh", "relu"):
        with pytest.raises(ValueError, match="activation"):
            calls[fn](activation=activation)
    calls[fn](activation=None)  # None is the default, and allowed


def test_the_elman_activation_defaults_to_tanh_and_still_takes_a_name():
    p, xs, ys, s0 = problem("rnn", seed=3)
    assert_identical(mb.bptt(p, xs, ys, s0=s0), mb.bptt(p, xs, ys, s0=s0, activation="tanh"))
    assert_identical(mb.bptt(p, xs, ys, s0=s0, activation=None), mb.bptt(p, xs, ys, s0=s0, activation="tanh"))
    relu = mb.bptt(p, xs, ys, s0=s0, activation="relu")
    check_result(relu, ref.bptt(p, xs, ys, s0=s0, activation="relu"), record=False)
    np.testing.assert_array_equal(mb.forward(p, xs).s, mb.forward(p, xs, activation="tanh").s)
    with pytest.raises(ValueError, match="activation"):
        mb.bptt(p, xs, ys, activation="softsign")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_function_raises_the_one_too_large_error(cell):
    p, xs, ys, _ = problem(cell)
    dhs = np.zeros((B, T, H))
    tiny = 64
    calls = [
        lambda: mb.bptt(p, xs, ys, max_bytes=tiny),
        lambda: mb.bptt(p, xs, ys, truncate=1, max_bytes=tiny),
        lambda: mb.forward(p, xs, max_bytes=tiny),
        lambda: mb.backward(p, xs, dhs, max_bytes=tiny),
        lambda: mb.rtrl(p, xs, ys, max_bytes=tiny),
        lambda: mb.state_jacobian(p, xs, 2, 0, max_bytes=tiny),
        lambda: mb.decompose(p, xs, ys, max_bytes=tiny).W.full(),
    ]
    for call in calls:
        with pytest.raises(mb.TooLargeError, match="max_bytes"):
            call()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bad_params_type_and_state_kind_are_named(cell):
    p, xs, ys, s0 = problem(cell)
    with pytest.raises(ValueError, match="p: expected"):
        mb.bptt(object(), xs, ys)
    if cell == "lstm":
        with pytest.raises(ValueError, match="s0"):
            mb.bptt(p, xs, ys, s0=s0.h)  # not a pair
    else:
        with pytest.raises(ValueError, match="s0"):
            mb.bptt(p, xs, ys, s0=mb.LSTMState(s0, s0))
