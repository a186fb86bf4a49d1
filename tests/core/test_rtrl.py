"""manual_bptt.rtrl (forward-mode sensitivities) against the autograd oracle and bptt, on
every field: loss, grads U/W/V/b/c, ds0, dxs, final_state.

Float64 comparisons: max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples, problem_with
from manual_bptt.testing import rnn_problems


def run_kwargs(prob):
    """rtrl/bptt keyword arguments of a Problem without truncate."""
    kw = prob.kwargs()
    del kw["truncate"]
    return kw


@settings(max_examples=examples(1.0), deadline=None)
@given(prob=rnn_problems(truncation=False, max_T=7, max_H=5, max_B=3))
def test_rtrl_matches_oracle_and_bptt(prob, check):
    kw = run_kwargs(prob)
    r = mb.rtrl(prob.params, prob.xs, prob.ys, **kw)
    check(r, ref.bptt(prob.params, prob.xs, prob.ys, **kw), context=f"rtrl vs oracle, {prob!r}")
    check(r, mb.bptt(prob.params, prob.xs, prob.ys, **kw), context=f"rtrl vs bptt, {prob!r}", record=False)


GRID = list(itertools.product(["tanh", "sigmoid", "relu", "identity"], [True, False], [None, 3]))


@pytest.mark.parametrize(("activation", "tokens", "B"), GRID)
def test_rtrl_every_input_kind(activation, tokens, B, check):
    """Every activation x tokens/dense x unbatched/batched, each with and without a mask,
    s0 and the mean reduction, so no combination depends on what Hypothesis draws."""
    for i, (use_mask, s0_kind, reduction) in enumerate(
        [(False, None, "sum"), (True, "shared", "mean"), (True, "per_row" if B else "shared", "sum")]
    ):
        prob = problem_with(
            T=6, B=B, D=4, H=5, K=2, tokens=tokens, bias=i != 1, activation=activation,
            reduction=reduction, use_mask=use_mask, s0_kind=s0_kind,
            weight_scale=1.0 if i else 1.5, seed=1000 + i,
        )
        kw = run_kwargs(prob)
        r = mb.rtrl(prob.params, prob.xs, prob.ys, **kw)
        check(r, ref.bptt(prob.params, prob.xs, prob.ys, **kw), context=f"rtrl vs oracle, {prob!r}")
        check(
            r, mb.bptt(prob.params, prob.xs, prob.ys, **kw), context=f"rtrl vs bptt, {prob!r}", record=False
        )


def test_rtrl_float32_inputs_give_float32_results(check):
    prob = problem_with(T=6, B=2, D=4, H=5, K=3, s0_kind="per_row", weight_scale=0.5, seed=8)
    kw = run_kwargs(prob)
    kw["s0"] = kw["s0"].astype(np.float32)
    r32 = mb.rtrl(prob.params.astype(np.float32), prob.xs.astype(np.float32), prob.ys, **kw)
    o = ref.bptt(prob.params.astype(np.float32), prob.xs.astype(np.float32), prob.ys, **kw)
    check(r32, o, rtol=1e-4, atol=1e-6, dtype=np.float32, record=False, context="float32 rtrl vs oracle")


# ---------------------------------------------------------------------------------------------
# The sensitivity size limit
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [True, False])
def test_rtrl_refuses_sensitivities_past_max_bytes(tokens, check):
    """Documented need: B*H*(H*H + H*D + 2H) numbers, plus T*B*H*D for dense inputs. Exactly
    that many bytes runs; one byte less raises a ValueError naming max_bytes."""
    T, B, D, H = 7, 3, 4, 5
    prob = problem_with(T=T, B=B, D=D, H=H, K=2, tokens=tokens, seed=4)
    kw = run_kwargs(prob)
    need = 8 * (B * H * (H * H + H * D + 2 * H) + (0 if tokens else T * B * H * D))
    check(
        mb.rtrl(prob.params, prob.xs, prob.ys, max_bytes=need, **kw),
        ref.bptt(prob.params, prob.xs, prob.ys, **kw),
        context="rtrl at exactly max_bytes",
    )
    with pytest.raises(ValueError, match=r"^max_bytes") as info:
        mb.rtrl(prob.params, prob.xs, prob.ys, max_bytes=need - 1, **kw)
    assert "MiB" in str(info.value) and f"H={H}" in str(info.value)


def test_rtrl_default_limit_refuses_large_hidden_size():
    """H = 300 needs B*H^3*8 bytes = 216 MiB per sequence for dW alone: 5 sequences exceed
    the 1 GiB default before anything is allocated."""
    H, D, K, B, T = 300, 2, 3, 5, 2
    p = mb.RNNParams(U=np.zeros((H, D)), W=np.zeros((H, H)), V=np.zeros((K, H)))
    xs = np.zeros((B, T), dtype=np.int64)
    with pytest.raises(ValueError, match=r"^max_bytes.*MiB"):
        mb.rtrl(p, xs, np.zeros((B, T), dtype=np.int64))
    assert mb.MAX_RTRL_BYTES == 1 << 30


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10", None])
def test_rtrl_bad_max_bytes_is_refused(bad):
    prob = problem_with(T=3, B=None, D=4, H=2, K=5, tokens=True, bias=False, seed=2)
    with pytest.raises(ValueError, match=r"^max_bytes"):
        mb.rtrl(prob.params, prob.xs, prob.ys, max_bytes=bad)
