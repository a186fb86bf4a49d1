"""Bad input to a stack is a ValueError naming the argument and the problem; sizes are refused
before anything is allocated or scanned; the caller's arrays are never written; float32 inputs
are computed in float32; what takes one layer only refuses a stack, and what is a stack's only
(lengths) is refused by the one-layer types."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from stack_cases import stack_params, stack_problem, state

import manual_bptt as mb

B, T = 3, 6


def refused(message: str, call) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


def problem(variant="lstm-proj", L=2, bidirectional=True, **kw):
    spec, params, kw = stack_problem(variant, L=L, bidirectional=bidirectional, lengths="different", **kw)
    p = stack_params(spec, params, V=np.ones((4, spec.directions * spec.out_size)), c=np.zeros(4))
    s0, d_final = state(spec, kw["h0"], kw.get("c0")), state(spec, kw["d_h_n"], kw.get("d_c_n"))
    return p, kw, s0, d_final


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([1, 7, 2], "lengths: every length must be in 1..T = 1..6, got lengths[1] = 7"),
        ([3, 0, 2], "lengths: every length must be in 1..T = 1..6, got lengths[1] = 0"),
        ([3, 2, -1], "lengths: every length must be in 1..T = 1..6, got lengths[2] = -1"),
        (
            [3.0, 2.0, 1.0],
            "lengths: expected integers (the number of valid steps of each sequence), got dtype float64",
        ),
        (np.array([True, True, False]), "lengths: expected integers"),
        ([3, 2], "lengths: expected shape (B,) = (3,), one length per sequence, got (2,)"),
        ([[3, 2, 1]], "lengths: expected shape (B,) = (3,)"),
        (["3", "2", "1"], "lengths: expected integers"),
    ],
)
def test_bad_lengths_are_named(lengths, message):
    p, kw, *_ = problem()
    refused(message, lambda: mb.backward(p, kw["x"], kw["d_outputs"], lengths=lengths))
    refused(message, lambda: mb.forward(p, kw["x"], lengths=lengths))
    refused(message, lambda: mb.bptt(p, kw["x"], np.zeros((B, T), np.int64), lengths=lengths))


def test_lengths_need_a_batch_and_may_be_unsorted_or_repeated():
    p, kw, *_ = problem()
    refused("lengths: only for batched xs", lambda: mb.forward(p, kw["x"][0], lengths=[3]))
    for lengths in ([1, 6, 3], [4, 4, 2], np.array([2, 2, 2], dtype=np.uint8), (6, 1, 1)):
        r = mb.forward(p, kw["x"], lengths=lengths)
        assert np.all(r.outputs[np.arange(T)[None, :] >= np.asarray(lengths)[:, None]] == 0.0)


def test_states_of_the_wrong_shape_are_named_with_the_rows_they_need():
    p, kw, s0, d_final = problem()  # L = 2, bidirectional, H = 5, P = 4
    h0, c0 = s0
    refused(
        "s0.h: expected shape (L * dirs, B, H_out) = (4, 3, 4) (L * dirs = 2 layers x 2 directions = 4 rows, "
        "H_out = 4), got (2, 3, 4)",
        lambda: mb.forward(p, kw["x"], s0=mb.LSTMState(h0[:2], c0)),
    )
    refused("s0.h: expected shape (L * dirs, B, H_out) = (4, 3, 4)",
            lambda: mb.forward(p, kw["x"], s0=(h0[0], c0)))  # fmt: skip
    assert "this is one layer's shape" in _message(lambda: mb.forward(p, kw["x"], s0=(h0[0], c0)))
    refused("s0.c: expected shape (L * dirs, B, H) = (4, 3, 5)",
            lambda: mb.forward(p, kw["x"], s0=(h0, c0[:, :, :4])))  # fmt: skip
    refused("s0: the LSTM's initial state is a pair", lambda: mb.forward(p, kw["x"], s0=h0))
    refused("d_final.c: expected shape (L * dirs, B, H) = (4, 3, 5)",
            lambda: mb.backward(p, kw["x"], kw["d_outputs"], d_final=(d_final.h, d_final.h)))  # fmt: skip
    bad = h0.copy()
    bad[1, 2, 0] = np.nan
    refused(
        "s0.h: contains NaN or inf (first at index (1, 2, 0))", lambda: mb.forward(p, kw["x"], s0=(bad, c0))
    )
    g, kw, s0, d_final = problem("gru", L=3, bidirectional=False)
    refused("s0: an LSTMState is the LSTM's; this GRU's initial state is one array",
            lambda: mb.forward(g, kw["x"], s0=mb.LSTMState(s0, s0)))  # fmt: skip
    refused("d_final: expected shape (L * dirs, B, H_out) = (3, 3, 5) (L * dirs = 3 layers x 1 direction = 3 "
            "rows",
            lambda: mb.backward(g, kw["x"], kw["d_outputs"], d_final=d_final[:1]))  # fmt: skip
    refused("s0: expected shape (L * dirs, H_out) = (3, 5)", lambda: mb.forward(g, kw["x"][0], s0=s0))


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_upstream_gradients_and_inputs_are_checked_where_they_are_read():
    p, kw, *_ = problem()
    refused(
        "dhs: expected shape (3, 6, 8) (B = 3, T = 6, dirs * H_out = 8: the gradient of the top layer's "
        "outputs",
        lambda: mb.backward(p, kw["x"], kw["d_outputs"][:, :, :4]),
    )
    refused("dhs: required", lambda: mb.backward(p, kw["x"], None))
    n = kw["lengths"]
    b = int(np.argmax(n))  # a valid step t = 0 of row b
    dhs = kw["d_outputs"].copy()
    dhs[b, 0, 1] = np.inf
    refused(f"dhs: contains NaN or inf (first at index ({b}, 0, 1))",
            lambda: mb.backward(p, kw["x"], dhs, lengths=n))  # fmt: skip
    x = kw["x"].copy()
    x[b, n[b] - 1, 0] = np.nan
    refused("xs: contains NaN or inf at a valid step (t < lengths[b])", lambda: mb.forward(p, x, lengths=n))
    refused("xs: contains NaN or inf", lambda: mb.forward(p, x))
    ids = np.zeros((B, T), np.int64)
    ids[b, 0] = 2  # D = 2
    refused("xs: token id 2 at index", lambda: mb.forward(p, ids, lengths=n))


def test_arguments_that_do_not_fit_a_stack_are_named():
    p, kw, *_ = problem()
    refused("truncate: only for one-direction stacks (bidirectional=False), got truncate=2",
            lambda: mb.backward(p, kw["x"], kw["d_outputs"], truncate=2))  # fmt: skip
    refused(
        "truncate: only for one-direction stacks",
        lambda: mb.bptt(p, kw["x"], np.zeros((B, T), int), truncate=0),
    )
    refused("activation: a StackParams holds its own nonlinearity",
            lambda: mb.forward(p, kw["x"], activation="tanh"))  # fmt: skip
    g, kw1, _, _ = problem("gru", bidirectional=False)
    refused("truncate: expected None or an integer >= 0, got -1",
            lambda: mb.backward(g, kw1["x"], kw1["d_outputs"],
                                truncate=-1))  # fmt: skip
    no_output = mb.StackParams(p.cell, p.layers)
    refused("p.V: bptt needs the output layer", lambda: mb.bptt(no_output, kw["x"], np.zeros((B, T), int)))
    assert mb.forward(no_output, kw["x"]).o is None


def test_labels_count_where_a_sequence_runs_and_are_read_only_there():
    p, kw, *_ = problem("gru")
    n = kw["lengths"]
    ys = np.where(np.arange(T)[None, :] < n[:, None], 1, -100)
    r = mb.bptt(p, kw["x"], ys, lengths=n, reduction="mean")
    assert np.isfinite(r.loss)
    ys[0, 0] = 9  # K = 4, at a counted step
    refused("ys: label 9 at index (0, 0) (where it counts: t < lengths[b] and the mask is True) is outside "
            "[0, K)",
            lambda: mb.bptt(p, kw["x"], ys, lengths=n))  # fmt: skip
    refused("mask: no target is counted, so reduction='mean' is undefined",
            lambda: mb.bptt(p, kw["x"], np.zeros((B, T), int), lengths=n, mask=np.zeros((B, T), bool),
                            reduction="mean"))  # fmt: skip
    refused(
        "mask: expected a bool array",
        lambda: mb.bptt(p, kw["x"], np.zeros((B, T), int), mask=np.ones((B, T))),
    )
    refused("ys: expected shape (3, 6) to match xs", lambda: mb.bptt(p, kw["x"], np.zeros((B, T - 1), int)))
    refused("reduction: expected one of ['sum', 'mean']",
            lambda: mb.bptt(p, kw["x"], np.zeros((B, T), int), lengths=n, reduction="max"))  # fmt: skip


def test_one_layer_functions_and_one_layer_types_refuse_what_is_not_theirs():
    p, kw, _, _ = problem()
    ys = np.zeros((B, T), np.int64)
    for fn in (mb.decompose, mb.rtrl):
        refused("p: decompose, state_jacobian and rtrl take one layer", lambda fn=fn: fn(p, kw["x"], ys))
    refused(
        "p: decompose, state_jacobian and rtrl take one layer", lambda: mb.state_jacobian(p, kw["x"], 2, 0)
    )
    q = mb.GRUParams.init(2, 3, 4, seed=0)
    for call in (
        lambda: mb.bptt(q, kw["x"], ys, lengths=[1, 2, 3]),
        lambda: mb.forward(q, kw["x"], lengths=[1, 2, 3]),
        lambda: mb.backward(q, kw["x"], np.zeros((B, T, 3)), lengths=[1, 2, 3]),
    ):
        refused("lengths: variable lengths are a stack's (manual_bptt.StackParams)", call)
    refused("p: expected manual_bptt.RNNParams, GRUParams, LSTMParams or StackParams, got dict",
            lambda: mb.forward({}, kw["x"]))  # fmt: skip


def test_a_huge_stack_is_refused_from_the_shapes_before_anything_is_allocated_or_scanned():
    p = mb.StackParams.init("lstm", 20, 56, num_layers=2, bidirectional=True, output_size=10, seed=0)
    xs = np.broadcast_to(np.int64(1), (64, 10**6))  # a view: 512 MB if it were real
    ys = np.broadcast_to(np.int64(-7), (64, 10**6))  # out of range, but never looked at
    for call in (
        lambda: mb.bptt(p, xs, ys, lengths=np.full(64, 10), max_bytes=1 << 30),
        lambda: mb.forward(p, xs),
        lambda: mb.backward(p, xs, np.broadcast_to(0.0, (64, 10**6, 112))),
    ):
        t0 = time.perf_counter()
        with pytest.raises(mb.TooLargeError) as info:
            call()
        assert time.perf_counter() - t0 < 0.5
        msg = str(info.value)
        assert "L = 2 layers x 2 directions, T = 1000000, B = 64" in msg and "max_bytes" in msg, msg
        assert "nothing was allocated" in msg and "split the sequence into chunks" in msg
    small, kw, *_ = problem()
    with pytest.raises(mb.TooLargeError, match=r"^backward"):
        mb.backward(small, kw["x"], kw["d_outputs"], lengths=kw["lengths"], max_bytes=1000)
    refused("max_bytes: expected an integer >= 0, got -1", lambda: mb.forward(small, kw["x"], max_bytes=-1))


@pytest.mark.parametrize("variant", ["rnn-tanh", "gru", "lstm", "lstm-proj"])
def test_the_callers_arrays_are_never_written(variant):
    """Every input (parameters, xs, s0, dhs, d_final, lengths, ys, mask), with lengths (the
    drivers) and without (the fast paths), for forward, backward and bptt; read-only inputs work."""
    p, kw, s0, d_final = problem(variant, bidirectional=variant != "gru")
    rng = np.random.default_rng(0)
    ys, mask = rng.integers(0, 4, (B, T)), rng.random((B, T)) < 0.5
    arrays = {"x": kw["x"], "dhs": kw["d_outputs"], "ys": ys, "mask": mask, "lengths": kw["lengths"]}
    arrays.update({f"s0[{i}]": a for i, a in enumerate(s0 if isinstance(s0, tuple) else (s0,))})
    arrays.update(
        {f"d_final[{i}]": a for i, a in enumerate(d_final if isinstance(d_final, tuple) else (d_final,))}
    )
    before = {k: v.copy() for k, v in arrays.items()}
    params_before = [a.copy() for a in p.arrays()]
    for a in arrays.values():
        a.flags.writeable = False
    for lengths in (kw["lengths"], None):
        mb.forward(p, kw["x"], s0=s0, lengths=lengths)
        r = mb.backward(p, kw["x"], kw["d_outputs"], s0=s0, d_final=d_final, lengths=lengths)
        t = mb.bptt(p, kw["x"], ys, s0=s0, lengths=lengths, mask=mask)
        for out in (r.hs, r.dxs, t.dxs):
            assert not np.shares_memory(out, kw["x"]) and not np.shares_memory(out, kw["d_outputs"])
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for a, b in zip(p.arrays(), params_before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_float32_inputs_compute_in_float32_and_any_wider_input_in_float64():
    p, kw, s0, _ = problem("gru")
    p32 = p.astype(np.float32)
    x32, dhs32 = kw["x"].astype(np.float32), kw["d_outputs"].astype(np.float32)
    for lengths in (kw["lengths"], None):
        r = mb.backward(p32, x32, dhs32, lengths=lengths)
        assert all(a.dtype == np.float32 for a in (*r.grads.arrays(), r.dxs, r.ds0, r.hs, r.final_state))
        t = mb.bptt(p32, x32, np.zeros((B, T), int), lengths=lengths)
        assert all(a.dtype == np.float32 for a in (*t.grads.arrays(), t.dxs, t.ds0))
        wide = mb.backward(p32, x32, kw["d_outputs"], lengths=lengths)  # a float64 dhs
        assert all(a.dtype == np.float64 for a in (*wide.grads.arrays(), wide.dxs, wide.hs))
        f = mb.forward(p32, x32, s0=s0, lengths=lengths)  # a float64 s0
        assert f.outputs.dtype == np.float64 and f.h_n.dtype == np.float64


@pytest.mark.parametrize("lengths", [None, [6, 5, 6]], ids=["fast-path", "drivers"])
def test_an_overflow_names_the_layer_the_direction_and_the_step(lengths):
    """relu with large positive weights in float32: the state overflows at its fifth step (about
    1e7^2 growth a step), named with its layer, its direction and the step t in the sequence's own
    order: t = 4 going forward, t = T - 1 - 4 = 1 in reverse."""
    big, small = (np.full((4, 2), 1e7), np.full((4, 4), 1e7)), (np.full((4, 2), 1e-3), np.full((4, 4), 1e-3))
    x = np.full((B, T, 2), 1e7, dtype=np.float32)
    for (forward, reverse), d, step in (((big, small), "forward", 4), ((small, big), "reverse", 1)):
        sd = {"weight_ih_l0": forward[0], "weight_hh_l0": forward[1],
              "weight_ih_l0_reverse": reverse[0], "weight_hh_l0_reverse": reverse[1]}  # fmt: skip
        p = mb.StackParams.from_state_dict("rnn", sd, nonlinearity="relu").astype(np.float32)
        with pytest.raises(mb.NonFiniteError) as info:
            mb.forward(p, x, lengths=lengths)
        assert str(info.value).startswith(
            f"layer 0, {d} direction: s_t is not finite (NaN or inf) at step t = {step}:"
        )
        assert (info.value.what, info.value.step) == ("s_t", step)
