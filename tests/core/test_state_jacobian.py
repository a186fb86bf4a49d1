"""manual_bptt.state_jacobian: ds_t/ds_k = prod_{j=k+1..t} diag(f'(a_j)) W against
torch.func.jacrev (reference.state_jacobian), for every 0 <= k <= t and for k = -1 (s0).

Float64 comparisons: max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import manual_bptt as mb
import reference as ref
from conftest import examples, oracle_close, problem_with
from manual_bptt.testing import assert_close, rnn_problems

RTOL, ATOL = 1e-10, 1e-12
SMALL = {"max_T": 7, "max_H": 5, "max_B": 3, "truncation": False}


@settings(max_examples=examples(0.5), deadline=None)
@given(prob=rnn_problems(batched=False, **SMALL))
def test_state_jacobian_matches_jacrev(prob):
    """Unbatched: (H, H) for every 0 <= k <= t < T and k = -1; the exact identity at t == k;
    Decomposition.ds_ds gives the same matrices."""
    c = prob.cfg
    kw = {"activation": c.activation, "s0": prob.s0}
    d = mb.decompose(prob.params, prob.xs, prob.ys, activation=c.activation, s0=prob.s0)
    eye = np.eye(c.H)
    for t in range(c.T):
        for k in range(-1, t + 1):
            J = mb.state_jacobian(prob.params, prob.xs, t, k, **kw)
            assert J.shape == (c.H, c.H) and J.dtype == np.float64
            if k == t:
                assert np.array_equal(J, eye), f"ds_{t}/ds_{t} is not exactly the identity"
            label = f"ds_{t}/ds_{k} [{prob!r}]"
            oracle_close(
                J,
                ref.state_jacobian(prob.params, prob.xs, t, k, **kw),
                name=label,
                key="state_jacobian" if k >= 0 else "state_jacobian k=-1",
            )
            assert_close(d.ds_ds(t, k), J, name=f"Decomposition.ds_ds vs state_jacobian, {label}")


@settings(max_examples=examples(0.3), deadline=None)
@given(prob=rnn_problems(batched=True, **SMALL))
def test_batched_state_jacobian_is_the_per_row_result(prob):
    """Batched xs: (B, H, H), row b the unbatched Jacobian of sequence b (with its own s0
    row, or the shared (H,) s0), and the oracle's."""
    c = prob.cfg
    kw = {"activation": c.activation}
    # the s0 of sequence b alone: None, the shared (H,) state, or row b of a (B, H) s0
    s0_rows = [prob.s0 if prob.s0 is None or prob.s0.ndim == 1 else prob.s0[b] for b in range(c.B)]
    d = mb.decompose(prob.params, prob.xs, prob.ys, s0=prob.s0, **kw)
    for t in range(c.T):
        for k in range(-1, t + 1):
            J = mb.state_jacobian(prob.params, prob.xs, t, k, s0=prob.s0, **kw)
            assert J.shape == (c.B, c.H, c.H) and J.dtype == np.float64
            assert np.array_equal(d.ds_ds(t, k), J), "Decomposition.ds_ds differs from state_jacobian"
            for b in range(c.B):
                label = f"row {b} of ds_{t}/ds_{k} [{prob!r}]"
                one = mb.state_jacobian(prob.params, prob.xs[b], t, k, s0=s0_rows[b], **kw)
                assert_close(J[b], one, name=f"batched vs unbatched, {label}")
                oracle_close(
                    J[b],
                    ref.state_jacobian(prob.params, prob.xs[b], t, k, s0=s0_rows[b], **kw),
                    name=label,
                    key="state_jacobian batched",
                )


@settings(max_examples=examples(0.5), deadline=None)
@given(prob=rnn_problems(max_T=9, max_H=6, truncation=False))
def test_chain_rule(prob):
    """ds_t/ds_k = ds_t/ds_j · ds_j/ds_k for every -1 <= k <= j <= t."""
    c = prob.cfg
    kw = {"activation": c.activation, "s0": prob.s0}
    J = {
        (t, k): mb.state_jacobian(prob.params, prob.xs, t, k, **kw)
        for t in range(c.T)
        for k in range(-1, t + 1)
    }
    for (t, k), Jtk in J.items():
        for j in range(max(k, 0), t + 1):
            assert_close(J[t, j] @ J[j, k], Jtk, name=f"ds_{t}/ds_{j} · ds_{j}/ds_{k} [{prob!r}]")


@pytest.mark.parametrize("tokens", [False, True])
def test_identity_activation_gives_powers_of_W(tokens):
    """f = identity: ds_t/ds_k = W^(t-k) exactly (up to rounding), whatever the inputs."""
    prob = problem_with(
        T=8, B=None, D=3, H=5, K=4, tokens=tokens, activation="identity", s0_kind="shared",
        weight_scale=1.5, seed=99,
    )
    W = prob.params.W
    for t in range(8):
        for k in range(-1, t + 1):
            J = mb.state_jacobian(prob.params, prob.xs, t, k, activation="identity", s0=prob.s0)
            assert_close(J, np.linalg.matrix_power(W, t - k), name=f"ds_{t}/ds_{k} vs W^{t - k}")


@pytest.mark.parametrize(
    ("t", "k", "which"),
    [(5, 0, "t"), (-1, -1, "t"), (1.0, 0, "t"), (True, 0, "t"), (2, 3, "k"), (2, -2, "k"), (2, 1.0, "k")],
)
def test_bad_steps_name_t_or_k(t, k, which):
    prob = problem_with(T=5, B=2, D=3, H=4, K=6, tokens=True, bias=False, seed=5)
    with pytest.raises(ValueError, match=rf"^{which}\b"):
        mb.state_jacobian(prob.params, prob.xs, t, k)
