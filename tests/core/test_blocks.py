"""bptt's block-wise work at every block size, and inputs read in place.

bptt works a block of steps at a time, blocks._ROWS = 1024 rows (t, b) per block: U x_t + b
and a_t in the forward pass, and in the backward pass (the blocks last first) the output
layer, the recursion for delta_t and each block's terms of the gradients; f'(a_t) is computed
in sub-blocks of at most blocks._NUMBERS = 2^15 numbers. Both are more than any generated test
problem has, so every other test runs single blocks. Here they are set as low as 1: many
blocks, partial last blocks and blocks of a single step, each checked against the oracle.

Batch-first dense inputs are read in place, not copied (see Batch.X), so the tests also
check that the caller's arrays are not written to, and that decompose, whose terms are
computed after it returns, keeps its own copy.
"""

from __future__ import annotations

import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples, problem_with
from manual_bptt._inputs import prepare
from manual_bptt.fast import blocks
from manual_bptt.fast import elman as fast_elman
from manual_bptt.testing import rnn_problems


def problem(**changes):
    """A small deterministic problem; B=None is unbatched."""
    return problem_with(**{"T": 5, "B": 3, "D": 4, "H": 6, "K": 2, "seed": 1, **changes})


@pytest.mark.parametrize(("rows", "numbers"), [(1, 1), (2, 13), (3, 40), (7, 100)])
@settings(max_examples=examples(0.25), deadline=None)
@given(prob=rnn_problems(max_T=12))
def test_bptt_matches_oracle_in_blocks_of_any_size(rows, numbers, prob, check):
    kw = prob.kwargs()
    with mock.patch.object(blocks, "_ROWS", rows), mock.patch.object(blocks, "_NUMBERS", numbers):
        r = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    context = f"_ROWS={rows} _NUMBERS={numbers} {prob!r}"
    check(r, ref.bptt(prob.params, prob.xs, prob.ys, **kw), context=context)


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        # batch-first xs (B=3, T=5, D=4): 7 // 3 = 2 steps per block
        (7, [(0, 2, (6, 4)), (2, 4, (6, 4)), (4, 5, (3, 4))]),
        # fewer rows than B: still one step per block
        (1, [(t, t + 1, (3, 4)) for t in range(5)]),
    ],
)
def test_small_blocks_do_split_the_work(rows, expect):
    """The patched block size really gives several blocks (else the test above is vacuous).

    The forward pass takes the blocks in order; the backward pass takes them last first, each
    through the output layer, the recursion and the weight gradients.
    """
    prob = problem()
    x_blocks, out_blocks, kept = [], [], []  # kept: every x block alive, so a copy gets a fresh address

    def spy_x(X, start, end, buf):
        x = real_x(X, start, end, buf)
        x_blocks.append((start, end, x.shape))
        kept.append(x)
        return x

    def spy_out(tr, start, end, *args):
        out_blocks.append((start, end))
        return real_out(tr, start, end, *args)

    real_x, real_out = fast_elman.x_rows, fast_elman._output_block
    with (
        mock.patch.object(blocks, "_ROWS", rows),
        mock.patch.object(fast_elman, "x_rows", spy_x),
        mock.patch.object(fast_elman, "_output_block", spy_out),
    ):
        mb.bptt(prob.params, prob.xs, prob.ys)
    assert x_blocks == expect + expect[::-1]  # U x_t forward, then dU backward
    assert out_blocks == [(start, end) for start, end, _ in expect[::-1]]
    # each of the two passes over xs copies into one reused C-contiguous block, not into a
    # new array per block
    n = len(expect)
    for one_pass in (kept[:n], kept[n:]):
        for x in one_pass:
            assert x.flags.c_contiguous and np.shares_memory(x, one_pass[0])


def test_full_bptt_keeps_no_array_of_every_step_but_the_states():
    """Peak memory of bptt: the states, dE/dxs and blocks; no (T, B, H) array of a, e or delta.

    Such an array is as large as the states, so it would raise the peak to at least twice
    their size; the blocks here are a tenth of it.
    """
    T, B, D, H, K = 4000, 2, 3, 64, 5
    prob = problem_with(T=T, B=B, D=D, H=H, K=K, seed=4)
    states = (T + 1) * B * H * 8
    dxs = T * B * D * 8
    mb.bptt(prob.params, prob.xs, prob.ys)  # warm: first-call allocations are not counted
    tracemalloc.start()
    try:
        r = mb.bptt(prob.params, prob.xs, prob.ys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.dxs.shape == (B, T, D)
    assert states + dxs < peak < 1.5 * states + dxs, (peak, states, dxs)


@pytest.mark.parametrize("tokens", [False, True])
def test_caller_inputs_are_read_not_written(tokens):
    prob = problem(T=6, K=3, tokens=tokens, seed=2)
    saved = [np.array(a, copy=True) for a in (prob.xs, prob.ys)]
    for rows in (1, 1024):
        with mock.patch.object(blocks, "_ROWS", rows):
            mb.bptt(prob.params, prob.xs, prob.ys)
    for before, after in zip(saved, (prob.xs, prob.ys), strict=True):
        np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("tokens", [False, True])
def test_decompose_keeps_its_own_copy_of_the_inputs(tokens):
    """Terms are computed lazily; changing xs or ys after decompose returns changes nothing."""
    prob = problem(B=None, H=3, tokens=tokens, seed=3)
    xs, ys = np.array(prob.xs, copy=True), np.array(prob.ys, copy=True)
    d = mb.decompose(prob.params, xs, ys)
    xs[...] = 0 if tokens else 100.0
    ys[...] = (ys + 1) % 2
    fresh = mb.decompose(prob.params, prob.xs, prob.ys)
    for name in ("W", "U", "b"):
        np.testing.assert_array_equal(getattr(d, name).full(), getattr(fresh, name).full(), err_msg=name)


@pytest.mark.parametrize("rows", [1, 4, 1024])
def test_time_major_backed_xs_give_batch_first_dxs(rows, check):
    """xs as a batch-first view of a time-major array: Batch.X is then C-contiguous, not
    copied, while dE/dxs is written batch-first through a block of its own."""
    prob = problem(T=6, B=3)
    xs_tm = np.ascontiguousarray(np.swapaxes(prob.xs, 0, 1))  # (T, B, D) in memory
    xs = xs_tm.swapaxes(0, 1)  # (B, T, D), the caller's shape
    assert not xs.flags.c_contiguous
    with mock.patch.object(blocks, "_ROWS", rows):
        r = mb.bptt(prob.params, xs, prob.ys)
    assert r.dxs.shape == xs.shape and r.dxs.flags.c_contiguous
    check(r, ref.bptt(prob.params, prob.xs, prob.ys), context=f"_ROWS={rows}")


@pytest.mark.parametrize("truncate", [None, 1])
def test_scratch_blocks_are_in_the_compute_dtype(truncate):
    """float32 inputs: dE/do and f'(a_t) are computed in float32 blocks, as documented
    (a float64 block would silently change the rounding of every float32 result)."""
    prob = problem(T=6)
    p32, xs32 = prob.params.astype(np.float32), np.asarray(prob.xs, dtype=np.float32)
    seen = []

    def spy_out(tr, start, end, VT, dO_buf, *args):
        seen.append(("dE/do", dO_buf.dtype))
        return real_out(tr, start, end, VT, dO_buf, *args)

    def spy_prime(batch, steps):
        buf = real_prime(batch, steps)
        seen.append(("f'(a)", buf.dtype))
        return buf

    real_out, real_prime = fast_elman._output_block, fast_elman._fprime_buffer
    with (
        mock.patch.object(fast_elman, "_output_block", spy_out),
        mock.patch.object(fast_elman, "_fprime_buffer", spy_prime),
    ):
        r = mb.bptt(p32, xs32, prob.ys, truncate=truncate)
    assert r.grads.W.dtype == np.float32
    kinds = {k for k, _ in seen}
    assert ("f'(a)" in kinds) == (truncate is None) and "dE/do" in kinds
    assert all(dt == np.float32 for _, dt in seen), seen


@pytest.mark.parametrize("rows", [1, 4])
def test_forward_in_blocks_keeps_every_a_t(rows):
    """forward() keeps a_t for every step (keep_a): blocks must fill all of it, in place."""
    prob = problem(T=7, B=3)
    whole = mb.forward(prob.params, prob.xs)
    with mock.patch.object(blocks, "_ROWS", rows):
        blocked = mb.forward(prob.params, prob.xs)
    for name in ("a", "s", "o", "y_hat", "final_state"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name), err_msg=name)


def test_trace_keeps_a_only_when_asked():
    prob = problem()
    batch = prepare(prob.params, prob.xs, prob.ys, activation="tanh", s0=None)
    kept = fast_elman.run_forward(prob.params, batch)
    assert kept.a.shape == (batch.T, batch.B, batch.H)
    assert fast_elman.run_forward(prob.params, batch, keep_a=False).a is None
