"""bptt's block-wise work at every block size, and inputs read in place.

bptt does three things a block at a time: the output layer (dE/do never exists for all t
at once) and the time-major copy of batch-first dense inputs for U x_t and dU, in blocks of
core._ROWS = 1024 rows (t, b); and f'(a_t) in the backward recursion, in blocks of steps of
at most core._NUMBERS = 2^15 numbers. Both are more than any generated test problem has, so
every other test runs single blocks. Here they are set as low as 1: many blocks, partial
last blocks and blocks of a single step, each checked against the oracle.

Batch-first dense inputs are read in place, not copied (see Batch.X), so the tests also
check that the caller's arrays are not written to, and that decompose, whose terms are
computed after it returns, keeps its own copy.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples, problem_with
from manual_bptt import core
from manual_bptt.testing import rnn_problems


def problem(**changes):
    """A small deterministic problem; B=None is unbatched."""
    return problem_with(**{"T": 5, "B": 3, "D": 4, "H": 6, "K": 2, "seed": 1, **changes})


@pytest.mark.parametrize(("rows", "numbers"), [(1, 1), (2, 13), (3, 40), (7, 100)])
@settings(max_examples=examples(0.25), deadline=None)
@given(prob=rnn_problems(max_T=12))
def test_bptt_matches_oracle_in_blocks_of_any_size(rows, numbers, prob, check):
    kw = prob.kwargs()
    with mock.patch.object(core, "_ROWS", rows), mock.patch.object(core, "_NUMBERS", numbers):
        r = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    context = f"_ROWS={rows} _NUMBERS={numbers} {prob!r}"
    check(r, ref.bptt(prob.params, prob.xs, prob.ys, **kw), context=context)


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        # batch-first xs (B=3, T=5, D=4): 7 // 3 = 2 steps per block, for U x_t and for dU
        (7, [(0, 2, (6, 4)), (2, 4, (6, 4)), (4, 5, (3, 4))]),
        # fewer rows than B: still one step per block
        (1, [(t, t + 1, (3, 4)) for t in range(5)]),
    ],
)
def test_small_blocks_do_split_the_work(rows, expect):
    """The patched block size really gives several blocks (else the test above is vacuous)."""
    prob = problem()
    blocks = []
    real = core._input_blocks

    kept = []  # every yielded block, kept alive, so that a fresh copy gets a fresh address

    def spy(X):
        for steps, x in real(X):
            blocks.append((steps.start, min(steps.stop, X.shape[0]), x.shape))
            kept.append(x)
            yield steps, x

    with mock.patch.object(core, "_ROWS", rows), mock.patch.object(core, "_input_blocks", spy):
        mb.bptt(prob.params, prob.xs, prob.ys)
    assert blocks == expect * 2
    # each of the two passes over xs (U x_t, then dU) copies into one reused C-contiguous
    # block, not into a new array per block
    n = len(expect)
    for one_pass in (kept[:n], kept[n:]):
        for x in one_pass:
            assert x.flags.c_contiguous and np.shares_memory(x, one_pass[0])


@pytest.mark.parametrize("tokens", [False, True])
def test_caller_inputs_are_read_not_written(tokens):
    prob = problem(T=6, K=3, tokens=tokens, seed=2)
    saved = [np.array(a, copy=True) for a in (prob.xs, prob.ys)]
    for rows in (1, 1024):
        with mock.patch.object(core, "_ROWS", rows):
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
