"""manual_bptt.bptt against the PyTorch autograd oracle, and exact identities between calls.

Every float64 comparison uses max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values
(see manual_bptt.testing.assert_close). Sizes are drawn pairwise distinct (D != H != K !=
T != B) and all data is random, so a transpose, a wrong index or a missing factor shows.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bptt as mb
import reference as ref
from conftest import examples
from manual_bptt.testing import (
    RNNConfig,
    assert_close,
    make_problem,
    result_fields,
    rnn_configs,
    rnn_problems,
)

RTOL, ATOL = 1e-10, 1e-12


def run_both(prob, **overrides):
    """(manual_bptt result, oracle result) for a Problem, with keyword overrides."""
    kw = {**prob.kwargs(), **overrides}
    return mb.bptt(prob.params, prob.xs, prob.ys, **kw), ref.bptt(prob.params, prob.xs, prob.ys, **kw)


def assert_same_results(r1, r2, *, label, rtol=RTOL, atol=ATOL):
    """Every field of two manual_bptt results agrees (assert_close, None where None)."""
    for (name, a), (_, b) in zip(result_fields(r1), result_fields(r2), strict=True):
        assert (a is None) == (b is None), f"{label}: {name} is None in only one result"
        if a is not None:
            assert_close(a, b, name=f"{label}: {name}", rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# The main property: every field, every kind of input, against the oracle
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(1.5), deadline=None)
@given(prob=rnn_problems())
def test_bptt_matches_oracle(prob, check):
    r, o = run_both(prob)
    check(r, o, context=repr(prob))


@settings(max_examples=examples(0.25), deadline=None)
@given(prob=rnn_problems(min_T=9, max_T=40, max_H=8, max_D=9, max_K=7, weight_scales=(0.5, 1.0, 1.5)))
def test_bptt_matches_oracle_longer_sequences(prob, check):
    """Longer sequences, where truncation windows are much shorter than T."""
    r, o = run_both(prob)
    check(r, o, context=repr(prob))


# ---------------------------------------------------------------------------------------------
# Truncation
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.5), deadline=None)
@given(cfg=rnn_configs(truncation=False))
def test_truncate_zero_matches_oracle_and_explicit_formula(cfg, check):
    """truncate=0 keeps only k = t: D_t = (V^T dE_t/do_t) * f'(a_t); checked by the oracle
    and against that formula written out from the forward pass."""
    prob = make_problem(dataclasses.replace(cfg, truncate=0))
    r, o = run_both(prob)
    check(r, o, context=repr(prob))

    p, c = prob.params, prob.cfg
    fw = mb.forward(p, prob.xs, activation=c.activation, s0=prob.s0)
    batched = c.B is not None
    a, s, y_hat = (x if batched else x[None] for x in (fw.a, fw.s, fw.y_hat))  # (B, T, .)
    ys = prob.ys if batched else prob.ys[None]
    m = np.ones(ys.shape) if prob.mask is None else (prob.mask if batched else prob.mask[None]).astype(float)
    w = m / m.sum() if c.reduction == "mean" else m
    dO = (y_hat - np.eye(c.K)[ys]) * w[..., None]  # dE/do_t, (B, T, K)
    fprime = {
        "tanh": lambda: 1 - s**2,
        "sigmoid": lambda: s * (1 - s),
        "relu": lambda: (a > 0).astype(float),
        "identity": lambda: np.ones_like(a),
    }[c.activation]()
    Dk = (dO @ p.V) * fprime  # D_t = (V^T dE_t/do_t) * f'(a_t), (B, T, H)
    s0 = np.zeros((ys.shape[0], c.H)) if prob.s0 is None else np.broadcast_to(prob.s0, (ys.shape[0], c.H))
    s_prev = np.concatenate([s0[:, None], s[:, :-1]], axis=1)  # s_{t-1}
    assert_close(r.grads.W, np.einsum("bti,btj->ij", Dk, s_prev), name="grads.W (truncate=0 formula)")
    if c.bias:
        assert_close(r.grads.b, Dk.sum(axis=(0, 1)), name="grads.b (truncate=0 formula)")
    ds0_rows = Dk[:, 0] @ p.W  # dE/ds0 = W^T D_0 for each row, (B, H)
    if prob.s0 is not None and prob.s0.ndim == 1:
        ds0 = ds0_rows.sum(axis=0)  # a shared s0 collects every row
    else:
        ds0 = ds0_rows if batched else ds0_rows[0]
    assert_close(r.ds0, ds0, name="ds0 (truncate=0 formula)")


@settings(max_examples=examples(0.5), deadline=None)
@given(cfg=rnn_configs(truncation=False), extra=st.integers(0, 3))
def test_truncate_at_least_T_minus_1_equals_full(cfg, extra, check):
    """tau >= T - 1 keeps every term: oracle-checked, and equal to truncate=None."""
    tau = cfg.T - 1 + extra
    prob = make_problem(dataclasses.replace(cfg, truncate=tau))
    r, o = run_both(prob)
    check(r, o, context=repr(prob))
    full = mb.bptt(prob.params, prob.xs, prob.ys, **{**prob.kwargs(), "truncate": None})
    assert_same_results(r, full, label=f"truncate={tau} vs None")


def test_truncation_changes_the_gradient():
    """Sanity of the truncation tests: on a fixed case, truncate=1 differs from full BPTT
    (otherwise the agreement above would say nothing)."""
    prob = make_problem(
        RNNConfig(T=6, B=2, D=3, H=4, K=5, tokens=False, bias=True, activation="tanh", truncate=1,
                  reduction="sum", use_mask=False, s0_kind="shared", weight_scale=1.5, seed=7)
    )
    r = mb.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())
    full = mb.bptt(prob.params, prob.xs, prob.ys, **{**prob.kwargs(), "truncate": None})
    with pytest.raises(AssertionError):
        assert_close(r.grads.W, full.grads.W, name="W")
    assert_close(r.grads.V, full.grads.V, name="grads.V (unaffected by truncation)")


# ---------------------------------------------------------------------------------------------
# Exact identities between calls
# ---------------------------------------------------------------------------------------------
@settings(max_examples=examples(0.5))
@given(prob=rnn_problems(tokens=True))
def test_tokens_equal_one_hot_dense_inputs(prob):
    """Token ids and the equivalent one-hot dense rows give the same loss, grads, ds0 and
    final_state; and sum_t dxs[t, x_t] = sum(U * dU) (both are sum_t U[:, x_t] . D_t)."""
    p = prob.params
    onehot = np.eye(prob.cfg.D)[prob.xs]  # (.., T, D) float64
    kw = prob.kwargs()
    rt = mb.bptt(p, prob.xs, prob.ys, **kw)
    rd = mb.bptt(p, onehot, prob.ys, **kw)
    assert rt.dxs is None and rd.dxs is not None
    assert rd.dxs.shape == onehot.shape
    rd_no_dxs = dataclasses.replace(rd, dxs=None)
    assert_same_results(rt, rd_no_dxs, label="tokens vs one-hot")
    picked = np.take_along_axis(rd.dxs, prob.xs[..., None], axis=-1).sum()
    assert_close(picked, np.sum(p.U * rt.grads.U), name="sum_t dxs[t, x_t] vs sum(U * dU)")


@settings(max_examples=examples(0.5))
@given(prob=rnn_problems(batched=False))
def test_unbatched_equals_batched_with_one_row(prob):
    p, kw = prob.params, prob.kwargs()
    r1 = mb.bptt(p, prob.xs, prob.ys, **kw)
    kwb = {**kw, "mask": None if prob.mask is None else prob.mask[None]}
    rb = mb.bptt(p, prob.xs[None], prob.ys[None], **kwb)
    assert rb.final_state.shape == (1, prob.cfg.H)
    assert rb.ds0.shape == ((1, prob.cfg.H) if prob.s0 is None else (prob.cfg.H,))
    rb_squeezed = dataclasses.replace(
        rb,
        final_state=rb.final_state[0],
        ds0=rb.ds0[0] if prob.s0 is None else rb.ds0,
        dxs=None if rb.dxs is None else rb.dxs[0],
    )
    assert_same_results(r1, rb_squeezed, label="unbatched vs B=1")


@settings(max_examples=examples(0.5))
@given(prob=rnn_problems(batched=True, reductions=("sum",), min_B=2))
def test_batch_equals_sum_of_single_sequences(prob):
    """With reduction="sum", a batch is the sum of its rows run one by one: loss and grads
    add, dxs / final_state / per-row ds0 are the rows', a shared (H,) s0 sums ds0."""
    p, c = prob.params, prob.cfg
    rb = mb.bptt(p, prob.xs, prob.ys, **prob.kwargs())
    singles = []
    for i in range(c.B):
        kw = {
            **prob.kwargs(),
            "s0": None if prob.s0 is None else (prob.s0 if prob.s0.ndim == 1 else prob.s0[i]),
            "mask": None if prob.mask is None else prob.mask[i],
        }
        singles.append(mb.bptt(p, prob.xs[i], prob.ys[i], **kw))
    assert_close(rb.loss, sum(r.loss for r in singles), name="loss")
    for n in ("U", "W", "V", "b", "c"):
        g = getattr(rb.grads, n)
        assert (g is None) == (not c.bias and n in "bc")
        if g is not None:
            assert_close(g, sum(getattr(r.grads, n) for r in singles), name=f"grads.{n}")
    ds0_rows = np.stack([r.ds0 for r in singles])
    assert_close(rb.ds0, ds0_rows.sum(axis=0) if prob.s0 is not None and prob.s0.ndim == 1 else ds0_rows,
                 name="ds0")
    assert_close(rb.final_state, np.stack([r.final_state for r in singles]), name="final_state")
    if not c.tokens:
        assert_close(rb.dxs, np.stack([r.dxs for r in singles]), name="dxs")


@settings(max_examples=examples(0.5))
@given(prob=rnn_problems(masks=True, min_T=2))
def test_labels_at_masked_positions_change_nothing(prob):
    """Labels where mask is False do not enter the loss: results are bitwise identical."""
    mask = prob.mask.copy()
    if mask.all():
        mask.flat[0] = False  # at least one masked position; T >= 2 keeps one counted
    kw = {**prob.kwargs(), "mask": mask}
    ys2 = np.where(mask, prob.ys, (prob.ys + 1) % prob.cfg.K)
    assert not np.array_equal(ys2, prob.ys)
    r1 = mb.bptt(prob.params, prob.xs, prob.ys, **kw)
    r2 = mb.bptt(prob.params, prob.xs, ys2, **kw)
    for (name, a), (_, b) in zip(result_fields(r1), result_fields(r2), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a, b), f"{name} changed when only masked labels changed"
    # ... while changing labels at counted positions changes the loss by exactly
    # sum_counted (o_t[y_t] - o_t[y'_t]) (/ count for "mean"): the mask selects, not the labels
    ys3 = np.where(mask, (prob.ys + 1) % prob.cfg.K, prob.ys)
    o = mb.forward(prob.params, prob.xs, activation=prob.cfg.activation, s0=prob.s0).o
    pick = lambda y: np.take_along_axis(o, y[..., None], axis=-1)[..., 0]  # noqa: E731
    change = np.sum(np.where(mask, pick(prob.ys) - pick(ys3), 0.0))
    if prob.cfg.reduction == "mean":
        change /= mask.sum()
    assert_close(mb.bptt(prob.params, prob.xs, ys3, **kw).loss - r1.loss, change,
                 name="loss change from counted labels", rtol=1e-9)


@settings(max_examples=examples(0.5))
@given(prob=rnn_problems(reductions=("mean",)))
def test_mean_equals_sum_divided_by_count(prob):
    n = prob.ys.size if prob.mask is None else int(prob.mask.sum())
    rm = mb.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())
    rs = mb.bptt(prob.params, prob.xs, prob.ys, **{**prob.kwargs(), "reduction": "sum"})
    for (name, a), (_, b) in zip(result_fields(rm), result_fields(rs), strict=True):
        assert (a is None) == (b is None)
        if a is None:
            continue
        expected = b if name == "final_state" else b / n
        assert_close(a, expected, name=f"{name} (mean vs sum / {n})")


@settings(max_examples=examples(0.5))
@given(cfg=rnn_configs(min_T=2, reductions=("sum",)), data=st.data())
def test_two_chunks_equal_one_run(cfg, data):
    """Chunked (truncated) BPTT: chunk 2 started from chunk 1's final_state continues the
    sequence exactly: losses add, final states agree, and dV, dc (untouched by truncation
    and by the chunk boundary) add up to the whole run's."""
    prob = make_problem(cfg)
    split = data.draw(st.integers(1, cfg.T - 1), label="split")
    p, kw = prob.params, prob.kwargs()

    def cut(a, sl):
        return None if a is None else (a[sl] if cfg.B is None else a[:, sl])

    whole = mb.bptt(p, prob.xs, prob.ys, **kw)
    first = slice(0, split)
    second = slice(split, None)
    r1 = mb.bptt(p, cut(prob.xs, first), cut(prob.ys, first), **{**kw, "mask": cut(prob.mask, first)})
    r2 = mb.bptt(p, cut(prob.xs, second), cut(prob.ys, second),
                 **{**kw, "mask": cut(prob.mask, second), "s0": r1.final_state})
    assert_close(r1.loss + r2.loss, whole.loss, name="loss")
    assert_close(r2.final_state, whole.final_state, name="final_state")
    assert_close(r1.grads.V + r2.grads.V, whole.grads.V, name="grads.V")
    if cfg.bias:
        assert_close(r1.grads.c + r2.grads.c, whole.grads.c, name="grads.c")


# ---------------------------------------------------------------------------------------------
# Numerically hard cases
# ---------------------------------------------------------------------------------------------
def _large_weight_case(scaled):
    p = mb.RNNParams.init(5, 4, 3, seed=3)
    if scaled == "V_and_c":
        p = p.replace(V=p.V * 1e3, c=p.c * 1e3)
    else:
        p = mb.RNNParams(**{n: a * 1e3 for n, a in p.items()})
    rng = np.random.default_rng(11)
    return p, rng.standard_normal((2, 7, 5)), rng.integers(0, 3, (2, 7))


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
def test_large_logits_are_finite_and_match_oracle(activation, check):
    """V and c scaled by 1e3: logits far beyond exp's range (|o| > 710) still give a finite
    loss and gradients equal to the oracle's at the usual 1e-10 (log-sum-exp, not a naive
    softmax). The hidden layer is in its normal regime, so the problem is well conditioned."""
    p, xs, ys = _large_weight_case("V_and_c")
    fw = mb.forward(p, xs, activation=activation)
    assert np.abs(fw.o).max() > 710, "the logits are not large enough to overflow exp"
    r, o = mb.bptt(p, xs, ys, activation=activation), ref.bptt(p, xs, ys, activation=activation)
    assert np.isfinite(r.loss) and r.loss > 1e3
    check(r, o, context=f"{activation}, V and c x1e3")


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
def test_all_weights_times_1e3_are_finite_and_match_oracle(activation, check):
    """Every weight scaled by 1e3: tanh/sigmoid saturate, relu/identity explode (loss ~1e21+).
    Everything stays finite, and agrees with the oracle at rtol 1e-6 -- not 1e-10, because
    the gradients are ill-conditioned here, in any implementation: f'(a) = 1 - s^2 (or
    s(1 - s)) from s within a few ulps of its limit turns one-ulp differences between numpy's
    and torch's tanh into relative errors ~1e-10..1e-8 of f', and for identity dE/db is a sum
    of terms ~1e7 times larger than the result. Measured worst over 40 seeds x 4 activations:
    2.3e-7 (identity, grads.b); on this test's fixed case: 8.2e-10 (tanh, dxs)."""
    p, xs, ys = _large_weight_case("all")
    r, o = mb.bptt(p, xs, ys, activation=activation), ref.bptt(p, xs, ys, activation=activation)
    assert np.isfinite(r.loss) and r.loss > 1e3
    check(r, o, rtol=1e-6, atol=1e-12, record=False, context=f"{activation}, all weights x1e3")


@pytest.mark.parametrize("tokens", [True, False])
def test_relu_derivative_at_exactly_zero_is_zero_like_torch(tokens, check):
    """relu'(0) = 0, as in PyTorch. Random data never lands on the kink, so put it there:
    no bias, s0 = 0 and an input whose U-column is zero give a_0 = 0.0 exactly."""
    D, H, K, T = 3, 4, 5, 6
    p0 = mb.RNNParams.init(D, H, K, seed=17, bias=False)
    U = p0.U.copy()
    U[:, 0] = 0.0  # U x_0 = 0 for token 0 / for the unit vector e_0
    p = p0.replace(U=U)
    rng = np.random.default_rng(4)
    tok = np.concatenate([[0], rng.integers(1, D, T - 1)])
    xs = tok if tokens else np.eye(D)[tok]
    ys = rng.integers(0, K, T)
    assert np.all(mb.forward(p, xs, activation="relu").a[0] == 0.0)
    r = mb.bptt(p, xs, ys, activation="relu")
    check(r, ref.bptt(p, xs, ys, activation="relu"), context=f"relu kink, tokens={tokens}")
    assert np.all(r.ds0 == 0.0)  # ds0 = W^T (dE/da_0) and dE/da_0 = (...) * relu'(0) = 0


def test_ten_thousand_steps_match_oracle(check):
    """A 10,000-step sequence (H = 4) runs, and matches the oracle's full BPTT.
    (On an idle 2-core machine the oracle's unrolled loop takes ~2.5 s here, manual_bptt
    ~0.05 s.)"""
    T = 10_000
    p = mb.RNNParams.init(6, 4, 5, seed=21, weight_scale=1.2)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((T, 6))
    ys = rng.integers(0, 5, T)
    mask = rng.random(T) < 0.8
    s0 = rng.standard_normal(4)
    t0 = time.perf_counter()
    r = mb.bptt(p, xs, ys, s0=s0, mask=mask, reduction="mean")
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, f"bptt on T={T} took {elapsed:.2f} s"
    o = ref.bptt(p, xs, ys, s0=s0, mask=mask, reduction="mean")
    check(r, o, context=f"T={T}")
