"""The gated cells' fast path (manual_bptt.fast.gated) against the spec and against the oracle.

The spec is cells.gru / cells.lstm run by the generic drivers (drivers.run, backprop,
weight_grads), step by step, with its own forward; the oracle is reference.bptt_cell (plain
autograd). Every comparison is the project's strict one (manual_bptt.testing.assert_close:
max|a - b| <= 1e-10 max|ref| + 1e-12, and NaN fails).
"""

from __future__ import annotations

import tracemalloc
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bptt as mb
from conftest import examples, gated_arrays, oracle_close
from manual_bptt import drivers, gated
from manual_bptt.fast import gated as gated_fast
from manual_bptt.fast.blocks import step_blocks
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.kinds import kind_of
from manual_bptt.output import softmax_cross_entropy
from manual_bptt.testing import assert_close
from reference import bptt_cell

CELLS = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]
FIELDS = ("U", "W", "b_ih", "b_hh", "V", "c")


@dataclass(frozen=True)
class Problem:
    p: GRUParams | LSTMParams
    xs: np.ndarray
    ys: np.ndarray
    kwargs: dict


def make(cls, *, reduction="sum", **sizes) -> Problem:
    """A random problem (conftest.gated_arrays, dense inputs scaled by weight_scale too); s0_kind None
    (zeros), "shared" ((H,) for every row) or "rows" ((B, H))."""
    p, xs, ys, s0, mask = gated_arrays(cls, scale_inputs=True, **sizes)
    kwargs: dict = {"reduction": reduction}
    if mask is not None:
        kwargs["mask"] = mask
    if s0 is not None:
        kwargs["s0"] = s0
    return Problem(p, xs, ys, kwargs)


@st.composite
def problems(draw, cls, T_max=7, B_max=3, scale_max=8.0):
    return make(
        cls,
        D=draw(st.integers(1, 5)),
        H=draw(st.integers(1, 5)),
        K=draw(st.integers(2, 5)),
        T=draw(st.integers(1, T_max)),
        B=draw(st.integers(1, B_max)),
        seed=draw(st.integers(0, 2**31 - 1)),
        tokens=draw(st.booleans()),
        batched=draw(st.booleans()),
        bias=draw(st.booleans()),
        out_bias=draw(st.booleans()),
        s0_kind=draw(st.sampled_from([None, "shared", "rows"])),
        use_mask=draw(st.booleans()),
        reduction=draw(st.sampled_from(["sum", "mean"])),
        weight_scale=draw(st.floats(0.3, scale_max)),  # up to deep saturation of the gates
    )


def spec_bptt(p, xs, ys, **kwargs) -> dict:
    """Loss and gradients by the spec cell over the generic drivers, with the spec's own forward."""
    g = gated.prepare_gated(kind_of(p).cell, p, xs, ys, **kwargs)
    b, H = g.batch, g.H
    T, B, n = b.T, b.B, b.T * b.B
    w = g.step_weights()
    r = drivers.run(g.cell, w, g.input_terms(), g.s0)  # the spec's forward, step by step
    h = np.ascontiguousarray(r.outputs(H)).reshape(n, H)
    dO = h @ g.V.T + (0.0 if g.c is None else g.c)
    loss = softmax_cross_entropy(dO, b.Y.reshape(n), g.weight.reshape(n))
    dz = np.zeros((T, B, g.cell.parts * H), dtype=g.dtype)
    dz[:, :, :H] = (dO @ g.V).reshape(T, B, H)
    dgi, dgh, dz0 = drivers.backprop(g.cell, w, r, dz)
    dU, db_ih, dW, db_hh, dX = drivers.weight_grads(dgi, dgh, r.h_prev(H), g.U, b.tokens, g.X)
    bias = g.b_ih is not None
    return {
        "loss": np.asarray(float(loss)),
        "U": dU,
        "W": dW,
        "b_ih": db_ih if bias else None,
        "b_hh": db_hh if bias else None,
        "V": dO.T @ h,
        "c": None if g.c is None else dO.sum(axis=0),
        "ds0": g.fold_ds0(dz0),
        "dxs": None if dX is None else b.to_batch_first(dX),
        "final_state": g.state_out(r.s[-1]),
    }


def result_items(r) -> dict:
    """The fields of a bptt result (our GatedBPTTResult or the oracle's GatedResult) by name."""
    out = {"loss": np.asarray(float(r.loss))}
    out |= {name: getattr(r.grads, name) for name in FIELDS}
    out |= {"ds0": r.ds0, "dxs": r.dxs, "final_state": r.final_state}
    return out


def assert_same(got: dict, want: dict, where: str, keys=None) -> None:
    """Every entry equal within the strict tolerance (NaN fails); None exactly where None."""
    for name in keys or want:
        a, b = got[name], want[name]
        if b is None:
            assert a is None, f"{where}: {name} should be None"
            continue
        pairs = zip(a, b, strict=True) if isinstance(b, LSTMState) else [(a, b)]
        for part, (x, y) in enumerate(pairs):
            assert np.shape(x) == np.shape(y), (where, name, np.shape(x), np.shape(y))
            assert_close(x, y, name=f"{where}: {name}" + (f"[{part}]" if isinstance(b, LSTMState) else ""))


# ---------------------------------------------------------------------------------------------
# The fast path against the spec and the oracle
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@settings(max_examples=examples(0.5))
@given(data=st.data())
def test_fast_bptt_equals_the_spec_over_the_generic_drivers(cls, data):
    prob = data.draw(problems(cls))
    r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs)
    assert_same(result_items(r), spec_bptt(prob.p, prob.xs, prob.ys, **prob.kwargs), "fast vs spec")


@pytest.mark.parametrize("cls", CELLS)
@settings(max_examples=examples(0.25))
@given(data=st.data())
def test_fast_bptt_equals_the_autograd_oracle(cls, data):
    prob = data.draw(problems(cls, scale_max=4.0))
    cell = "lstm" if cls is LSTMParams else "gru"
    r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs)
    ref = bptt_cell(cell, prob.p, prob.xs, prob.ys, **prob.kwargs)
    got, want = result_items(r), result_items(ref)
    for name, b in want.items():
        if b is None:
            assert got[name] is None, name
            continue
        for x, y in zip(got[name], b, strict=True) if isinstance(b, LSTMState) else [(got[name], b)]:
            oracle_close(x, y, name=name, key=f"{cell}.fast.{name}")


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("B, T", [(40, 60), (1, 1100), (1500, 2)])
def test_fast_bptt_over_several_blocks_of_steps_equals_the_spec(cls, B, T):
    assert len(step_blocks(T, B)) > 1 or T * B > 1024
    prob = make(cls, D=3, H=3, K=4, T=T, B=B, seed=11, use_mask=True, s0_kind="rows")
    r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs)
    assert_same(result_items(r), spec_bptt(prob.p, prob.xs, prob.ys, **prob.kwargs), f"B={B} T={T}")


@pytest.mark.parametrize("cls", CELLS)
def test_saturated_gates_give_exact_gradients_without_warnings(cls):
    # weight_scale 60: exp(-a) of the sigmoids overflows to inf for many entries (sigmoid 0)
    prob = make(cls, D=4, H=5, K=3, T=9, B=3, seed=2, weight_scale=60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs)
    assert_same(result_items(r), spec_bptt(prob.p, prob.xs, prob.ys, **prob.kwargs), "saturated")


@pytest.mark.parametrize("cls", CELLS)
def test_fast_bptt_in_float32_stays_float32_and_near_float64(cls):
    prob = make(cls, D=4, H=5, K=3, T=20, B=3, seed=4, s0_kind=None)
    p32 = cls(**{k: getattr(prob.p, k).astype(np.float32) for k in FIELDS})
    r32 = mb.bptt(p32, prob.xs.astype(np.float32), prob.ys)
    r64 = mb.bptt(prob.p, prob.xs, prob.ys)
    for name in FIELDS:
        a, b = getattr(r32.grads, name), getattr(r64.grads, name)
        assert a.dtype == np.float32, name
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max() + 1e-6, name
    assert r32.dxs.dtype == np.float32


@pytest.mark.parametrize("cls", CELLS)
def test_fast_bptt_leaves_the_inputs_unchanged(cls):
    prob = make(cls, T=5, B=3, seed=8, use_mask=True)
    before = [a.copy() for a in (*prob.p.arrays(), prob.xs, prob.ys)]
    mb.bptt(prob.p, prob.xs, prob.ys, **prob.kwargs)
    for a, b in zip((*prob.p.arrays(), prob.xs, prob.ys), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", CELLS)
def test_overflowing_logits_name_their_first_step(cls):
    prob = make(cls, T=40, B=30, seed=9, s0_kind=None)  # 1200 rows: two blocks of steps
    h00 = mb.forward(prob.p, prob.xs).h[0, 0]  # h_0 of row 0
    V = prob.p.V.copy()
    V[0] = 1.7e308 * np.sign(h00)  # o_0[0] = 1.7e308 (sum |h_0| + 1) overflows; every entry finite
    c = np.zeros(prob.p.output_size)
    c[0] = 1.7e308
    huge = prob.p.replace(V=V, c=c)
    with pytest.raises(mb.NonFiniteError) as info:
        mb.bptt(huge, prob.xs, prob.ys)
    assert info.value.what == "o_t" and info.value.step == 0


def test_a_comparison_with_nan_fails():
    # the helper these tests compare with must reject NaN where the reference is finite
    with pytest.raises(AssertionError):
        assert_same({"U": np.array([np.nan, 1.0])}, {"U": np.array([0.0, 1.0])}, "nan")


# ---------------------------------------------------------------------------------------------
# The layer alone (mb.backward) by the fast path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@settings(max_examples=examples(0.25))
@given(data=st.data(), with_final=st.booleans())
def test_fast_layer_backward_equals_the_spec(cls, data, with_final):
    prob = data.draw(problems(cls))
    p, xs = prob.p, prob.xs
    s0 = prob.kwargs.get("s0")
    g = gated.prepare_gated(kind_of(p).cell, p, xs, None, s0=s0, labels_required=False)
    b, H, S = g.batch, g.H, g.cell.parts * g.H
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    dhs_tm = rng.standard_normal((b.T, b.B, H))
    dhs = b.to_batch_first(dhs_tm)
    d_final = None
    dz = np.zeros((b.T, b.B, S))
    dz[:, :, :H] = dhs_tm
    if with_final:
        parts = [rng.standard_normal((b.B, H) if b.batched else (H,)) for _ in range(S // H)]
        d_final = LSTMState(*parts) if cls is LSTMParams else parts[0]
        dz[-1] += np.concatenate([np.broadcast_to(q, (b.B, H)) for q in parts], axis=1)
    lb = mb.backward(p, xs, dhs, s0=s0, d_final=d_final)
    w = g.step_weights()
    r = drivers.run(g.cell, w, g.input_terms(), g.s0)
    dgi, dgh, dz0 = drivers.backprop(g.cell, w, r, dz)
    dU, db_ih, dW, db_hh, dX = drivers.weight_grads(dgi, dgh, r.h_prev(H), g.U, b.tokens, g.X)
    bias = g.b_ih is not None
    want = {
        "U": dU,
        "W": dW,
        "b_ih": db_ih if bias else None,
        "b_hh": db_hh if bias else None,
        "ds0": g.fold_ds0(dz0),
        "dxs": None if dX is None else b.to_batch_first(dX),
        "hs": b.to_batch_first(np.ascontiguousarray(r.outputs(H))),
    }
    got = {name: getattr(lb.grads, name) for name in ("U", "W", "b_ih", "b_hh")}
    got |= {"ds0": lb.ds0, "dxs": lb.dxs, "hs": lb.hs}
    assert_same(got, want, "layer fast vs spec")


# ---------------------------------------------------------------------------------------------
# Memory: linear in T, about what the backward must keep
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
def test_peak_memory_is_linear_in_T_and_near_the_kept_buffers(cls):
    B, D, H, K = 8, 4, 32, 8
    lstm = cls is LSTMParams
    kept_per_row = (1 + 4 + (2 if lstm else 0)) * H  # h_t, the gates; c_t and tanh(c_t)
    peaks, kept = {}, {}
    for T in (256, 1024):
        prob = make(cls, D=D, H=H, K=K, T=T, B=B, seed=1, tokens=True, s0_kind=None)
        mb.bptt(prob.p, prob.xs, prob.ys)
        tracemalloc.start()
        mb.bptt(prob.p, prob.xs, prob.ys)
        peaks[T] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        kept[T] = 8 * T * B * kept_per_row
        assert kept[T] <= peaks[T] <= 1.3 * kept[T] + 3_000_000, (T, peaks[T], kept[T])
    # the growth per step is what the backward keeps per step (blocks of steps are a constant)
    slope = (peaks[1024] - peaks[256]) / (kept[1024] - kept[256])
    assert 0.95 <= slope <= 1.25, (slope, peaks, kept)


def peak_bytes(call) -> int:
    """The peak of the bytes allocated (tracemalloc) during call(), after one untraced warm-up call."""
    call()
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cls", CELLS)
def test_a_float32_call_takes_half_the_memory_of_the_float64_call(cls):
    # every float buffer (states, gates, scratch, direct gradients, logits, the negated U^T and
    # W^T) has the compute dtype, so float32 halves the peak; the one exception is the boolean
    # finiteness scan of a block (a byte per entry, at most (rows, 4H)), which halving the float64
    # peak counts only half of. One block of 1024 rows: the block buffers weigh as much as the rest.
    T, B, D, H, K = 1, 1024, 2, 64, 64
    prob = make(cls, D=D, H=H, K=K, T=T, B=B, seed=3, s0_kind=None)
    p32, xs32 = prob.p.astype(np.float32), prob.xs.astype(np.float32)
    slack = T * B * 4 * H // 2 + 32 * 1024
    calls = {
        "bptt": (lambda: mb.bptt(prob.p, prob.xs, prob.ys), lambda: mb.bptt(p32, xs32, prob.ys)),
        "forward": (lambda: mb.forward(prob.p, prob.xs), lambda: mb.forward(p32, xs32)),
    }
    for name, (call64, call32) in calls.items():
        peak64, peak32 = peak_bytes(call64), peak_bytes(call32)
        assert peak32 <= peak64 / 2 + slack, (name, peak32, peak64)


@pytest.mark.parametrize("cls", CELLS)
def test_dense_inputs_are_copied_one_block_of_steps_at_a_time(cls):
    # batch-first xs is read time-major through one block-sized copy of x_t, reused for every
    # block (forward and backward); D dominates, so the peak counts those copies
    B, T, D, H, K = 32, 64, 256, 2, 2  # two blocks of 1024 rows (t, b)
    prob = make(cls, D=D, H=H, K=K, T=T, B=B, seed=5, s0_kind=None)
    rows = step_blocks(T, B)[0][1] * B
    assert rows == T * B // 2
    block = 8 * rows * D  # one block of x_t in float64
    dxs = 8 * T * B * D  # dE/dxs, the result
    # forward: the copy of one block (and the small states)
    assert peak_bytes(lambda: mb.forward(prob.p, prob.xs)) <= 1.5 * block
    # bptt: dE/dxs, and per block the copy of x_t and the block's dE/dx_t = dgi_t U
    assert peak_bytes(lambda: mb.bptt(prob.p, prob.xs, prob.ys)) <= dxs + 2.5 * block


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_token_inputs_hold_at_most_two_arrays_the_size_of_U(cls, dtype):
    # a vocabulary far larger than the sequence: U dominates. The forward holds U with its
    # sigmoid rows negated and that transposed (U x_t is a row of it), the backward dU^T, which
    # the tokens' rows are added to, and dU; never a third array of U's size, in U's dtype
    prob = make(cls, D=4096, H=8, K=4, T=4, B=2, seed=6, tokens=True, s0_kind=None)
    p = prob.p.astype(dtype)
    assert peak_bytes(lambda: mb.bptt(p, prob.xs, prob.ys)) <= 2.25 * p.U.nbytes


# ---------------------------------------------------------------------------------------------
# The forward buffers and the backward's inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_forward_keeps_its_buffers_in_the_compute_dtype_and_the_gru_no_cell_state(cls, dtype):
    T, B, D, H = 5, 3, 3, 4
    prob = make(cls, D=D, H=H, T=T, B=B, seed=13, s0_kind=None)
    p, xs = prob.p.astype(dtype), prob.xs.astype(dtype)
    g = gated.prepare_gated(kind_of(p).cell, p, xs, None, labels_required=False)
    fw = gated.fast_forward(g)
    assert fw.H == H and fw.G == (4 if cls is LSTMParams else 3)
    assert fw.hs.shape == (T + 1, B, H) and fw.gates.shape == (T, B, 4 * H)
    kept = [fw.hs, fw.gates]
    if cls is LSTMParams:
        assert fw.cs.shape == (T + 1, B, H) and fw.tanh_c.shape == (T, B, H)
        kept += [fw.cs, fw.tanh_c]
        np.testing.assert_array_equal(fw.tanh_c, np.tanh(fw.cs[1:]))
    else:
        assert fw.cs is None and fw.tanh_c is None
    assert [a.dtype for a in kept] == [np.dtype(dtype)] * len(kept)
    np.testing.assert_array_equal(g.batch.to_batch_first(fw.hs[1:]), mb.forward(p, xs).h)


@pytest.mark.parametrize("cls", CELLS)
def test_the_backward_reads_the_final_state_gradient_without_writing_to_it(cls):
    # gated_fast.backward overwrites fw's gates (documented) and nothing else it is given
    T, B, D, H = 4, 3, 3, 4
    prob = make(cls, D=D, H=H, T=T, B=B, seed=12)
    s0 = prob.kwargs["s0"]
    g = gated.prepare_gated(kind_of(prob.p).cell, prob.p, prob.xs, None, s0=s0, labels_required=False)
    rng = np.random.default_rng(12)
    dhs_tm = rng.standard_normal((T, B, H))
    dz_final = rng.standard_normal((B, g.cell.parts * H))
    before = dz_final.copy()

    def from_caller(start: int, end: int, out: np.ndarray) -> float:
        np.copyto(out, dhs_tm[start:end])
        return 0.0

    fw = gated.fast_forward(g)
    dxs_tm = np.empty((T, B, D))
    sw = gated_fast.backward(fw, g.U, g.W, True, None, g.X, from_caller, dz_final, dxs_tm)
    np.testing.assert_array_equal(dz_final, before)
    # what it computed is the layer's vector-Jacobian product with that final-state gradient
    d_final = LSTMState(before[:, :H], before[:, H:]) if cls is LSTMParams else before
    lb = mb.backward(prob.p, prob.xs, g.batch.to_batch_first(dhs_tm), s0=s0, d_final=d_final)
    assert_close(sw.dW, lb.grads.W, name="W")
    assert_close(sw.ds0, np.concatenate(lb.ds0, axis=1) if cls is LSTMParams else lb.ds0, name="ds0")


# ---------------------------------------------------------------------------------------------
# Overflow over several blocks of steps
# ---------------------------------------------------------------------------------------------
ROWS_OF_ONE_STEP = 1100  # B > blocks._ROWS: every block of steps is one step


def overflowing_rows(cls, B: int = ROWS_OF_ONE_STEP):
    """Parameters and dense inputs (B, T = 5, D = 1), every row alike, whose state is exactly 0 for
    steps 0..2, about 1 at step 3 and NaN from step 4 on (W h_3 overflows to inf and meets an
    opposite infinity: GRU r_4 = σ(-inf) = 0 times gh_n = inf; LSTM gi_4 = -inf + gh_4 = inf)."""
    xs = np.array([[0.0], [0.0], [0.0], [10.0], [0.0]])
    if cls is GRUParams:  # H = 2, blocks r, z, n; step 3: r = 1, z = 0, n = 1
        U = np.array([[10.0]] * 2 + [[-10.0]] * 2 + [[10.0]] * 2)
        W = np.zeros((6, 2))
        W[:2], W[4:] = -1e308, 1e308
    else:  # H = 3; step 3: every gate saturated, c_3 = 1, h_3 = tanh(1)
        U, W = np.full((12, 1), 10.0), np.full((12, 3), 1e308)
        xs[4] = -1e308
    return cls(U=U, W=W, V=np.ones((2, W.shape[1]))), np.broadcast_to(xs, (B, *xs.shape)).copy()


def overflow_message(what: str, t: int) -> str:
    return (
        f"{what}: not finite from step t = {t} on (the computation overflowed); "
        "scale the parameters or inputs down"
    )


@pytest.mark.parametrize("cls", CELLS)
def test_a_state_that_overflows_in_a_later_block_is_named_by_its_step_in_the_sequence(cls):
    p, xs = overflowing_rows(cls)
    assert step_blocks(5, xs.shape[0]) == [(t, t + 1) for t in range(5)]
    for call in (lambda: mb.forward(p, xs), lambda: mb.bptt(p, xs, np.zeros(xs.shape[:2], int))):
        with pytest.raises(mb.NonFiniteError) as info:
            call()
        assert (info.value.what, info.value.step) == ("z_t", 4)
        assert str(info.value) == overflow_message("z_t", 4)


@pytest.mark.parametrize("cls", CELLS)
def test_a_call_after_one_that_overflowed_computes_as_if_alone(cls):
    # the overflowing call leaves NaN states in memory it frees; the next call of the same
    # shapes checks each block's states only once computed, so it never sees them
    p, xs = overflowing_rows(cls)
    calm = xs.copy()
    calm[:, 3] = 0.0  # every state exactly 0
    for _ in range(3):
        with pytest.raises(mb.NonFiniteError):
            mb.forward(p, xs)
        fw = mb.forward(p, calm)
        assert not fw.h.any() and (fw.cell_state is None or not fw.cell_state.any())


@pytest.mark.parametrize("cls", CELLS)
def test_logits_that_overflow_in_a_later_block_are_named_by_their_step_in_the_sequence(cls):
    # the states are exactly 0 up to step 2 and about 1 from step 3 on (a saturated step): the
    # logits o_t[0] = 1.7e308 (sum_i h_t[i] + 1) are finite up to step 2 and overflow from step 3
    H = 2
    blocks = (10.0, -10.0, 10.0) if cls is GRUParams else (10.0,) * 4  # GRU r = 1, z = 0; LSTM all gates open
    U = np.repeat(np.array(blocks), H)[:, None]
    V = np.zeros((2, H))
    V[0] = 1.7e308
    p = cls(U=U, W=np.zeros((U.shape[0], H)), V=V, c=np.array([1.7e308, 0.0]))
    xs = np.zeros((ROWS_OF_ONE_STEP, 5, 1))
    xs[:, 3] = 10.0
    h = mb.forward(p, xs[:, :3]).h
    assert not h.any()
    with pytest.raises(mb.NonFiniteError) as info:
        mb.bptt(p, xs, np.zeros(xs.shape[:2], int))
    assert (info.value.what, info.value.step) == ("o_t", 3)
    assert str(info.value) == overflow_message("o_t", 3)
