"""The explicit sum over k, the state Jacobians and RTRL for the gated cells (GRU, LSTM).

    dE/dθ = sum_t sum_{k<=t} term_θ[t, k]
    term_W[t, k] = dgh_k^{(t)T} h_{k-1}        term_U[t, k] = dgi_k^{(t)T} x_k

checked against torch.nn.GRU / nn.LSTM + nn.Linear + cross_entropy in float64 with our parameters
copied in (random, nonzero and different b_ih and b_hh, nonzero h0 and c0, D != H != K != T != B),
against bptt (truncated for every tau), and the state Jacobians dz_t/dz_k (z = h for the GRU,
[h; c] for the LSTM) against torch.autograd.functional.jacobian of steps written from the equations.
Every float64 comparison is max|a - b| <= 1e-10 * max|ref| + 1e-12 with NaN failing (assert_close).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import manual_bptt as mb
from conftest import examples
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState
from manual_bptt.testing import assert_close

CELLS = {"gru": GRUParams, "lstm": LSTMParams}


# ---------------------------------------------------------------------------------------------
# Problems and the torch references
# ---------------------------------------------------------------------------------------------
def problem(cell, *, T=5, B=3, D=4, H=3, K=6, tokens=False, scale=1.0, mask=False, seed=0):
    """Parameters with every bias random and nonzero (b_ih != b_hh), a nonzero initial state,
    random inputs and labels; B=None for unbatched inputs."""
    rng = np.random.default_rng(seed)
    P = CELLS[cell]
    G = 3 if cell == "gru" else 4
    p = P(
        U=scale * rng.standard_normal((G * H, D)) / np.sqrt(D),
        W=scale * rng.standard_normal((G * H, H)) / np.sqrt(H),
        b_ih=scale * rng.standard_normal(G * H),
        b_hh=scale * rng.standard_normal(G * H),
        V=rng.standard_normal((K, H)),
        c=rng.standard_normal(K),
    )
    seq = (T,) if B is None else (B, T)
    xs = rng.integers(0, D, seq) if tokens else rng.standard_normal((*seq, D))
    ys = rng.integers(0, K, seq)
    m = rng.random(seq) < 0.7 if mask else None
    if m is not None:
        m.flat[0] = True
    shape = (H,) if B is None else (B, H)
    h0 = rng.standard_normal(shape)
    s0 = h0 if cell == "gru" else LSTMState(h0, rng.standard_normal(shape))
    return p, xs, ys, m, s0


def torch_step(cell, p, x, z):
    """One step from the equations (torch's layout and gate order), z (B, S) -> (B, S)."""
    H = p.W.shape[1]
    U, W, b_ih, b_hh = (torch.tensor(np.asarray(a)) for a in (p.U, p.W, p.b_ih, p.b_hh))
    gi = x @ U.T + b_ih
    h = z[:, :H]
    gh = h @ W.T + b_hh
    if cell == "gru":
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        u = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1 - u) * n + u * h
    a = gi + gh
    i, f, g, o = (a[:, j * H : (j + 1) * H] for j in range(4))
    c = torch.sigmoid(f) * z[:, H:] + torch.sigmoid(i) * torch.tanh(g)
    return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=1)


def steps_from(cell, p, x, t, k):
    """z_k (1, S) -> z_t (S,): the steps k+1..t of one sequence x (1, T, D), from the equations."""

    def run(zk):
        for j in range(k + 1, t + 1):
            zk = torch_step(cell, p, x[:, j], zk)
        return zk[0]

    return run


def dense_inputs(p, xs):
    """(B, T, D) float64 tensor of xs (one-hot for token ids), with a batch axis."""
    D = p.U.shape[1]
    x = np.eye(D)[xs] if np.issubdtype(np.asarray(xs).dtype, np.integer) else np.asarray(xs)
    return torch.tensor(x if x.ndim == 3 else x[None])


def z0_of(s0, B):
    parts = [s0] if isinstance(s0, np.ndarray) else list(s0)
    return torch.tensor(np.concatenate([np.broadcast_to(a, (B, a.shape[-1])) for a in parts], axis=1))


def native_grads(cell, p, xs, ys, mask, s0, reduction="sum"):
    """Loss and gradients by torch.nn.GRU / nn.LSTM + nn.Linear + cross_entropy, float64."""
    D, H, K = p.U.shape[1], p.W.shape[1], p.V.shape[0]
    rnn = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(D, H, batch_first=True).double()
    lin = torch.nn.Linear(H, K).double()
    with torch.no_grad():
        for name, a in (
            ("weight_ih_l0", p.U),
            ("weight_hh_l0", p.W),
            ("bias_ih_l0", p.b_ih),
            ("bias_hh_l0", p.b_hh),
        ):
            getattr(rnn, name).copy_(torch.tensor(np.asarray(a)))
        lin.weight.copy_(torch.tensor(np.asarray(p.V)))
        lin.bias.copy_(torch.tensor(np.asarray(p.c)))
    x = dense_inputs(p, xs)
    B = x.shape[0]
    parts = [s0] if cell == "gru" else list(s0)
    hx = [torch.tensor(np.broadcast_to(a, (B, H)).copy())[None] for a in parts]
    out, _ = rnn(x, hx[0] if cell == "gru" else tuple(hx))
    logits = lin(out).reshape(-1, K)
    y = torch.tensor(np.asarray(ys).reshape(-1))
    w = (
        torch.ones(len(y), dtype=torch.float64)
        if mask is None
        else torch.tensor(np.asarray(mask).reshape(-1) * 1.0)
    )
    if reduction == "mean":
        w = w / w.sum()
    loss = (torch.nn.functional.cross_entropy(logits, y, reduction="none") * w).sum()
    names = {"U": "weight_ih_l0", "W": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
    params = [getattr(rnn, n) for n in names.values()]
    grads = torch.autograd.grad(loss, params)
    return loss.item(), {n: g.numpy() for n, g in zip(names, grads, strict=True)}


def term_sums(d):
    return {n: getattr(d, n).full().sum(axis=(0, 1)) for n in ("U", "W", "b_ih", "b_hh")}


# ---------------------------------------------------------------------------------------------
# The terms sum to the gradient
# ---------------------------------------------------------------------------------------------
CASES = [
    pytest.param(
        cell,
        tokens,
        B,
        mask,
        reduction,
        scale,
        id=f"{cell}-{'tok' if tokens else 'dense'}-B{B}-{'mask' if mask else 'nomask'}-{reduction}-x{scale}",
    )
    for cell in ("gru", "lstm")
    for tokens, B, mask, reduction, scale in [
        (False, 3, False, "sum", 0.3),
        (True, 3, True, "mean", 1.0),
        (False, None, True, "sum", 4.0),
        (True, None, False, "mean", 2.0),
    ]
]


@pytest.mark.parametrize(("cell", "tokens", "B", "mask", "reduction", "scale"), CASES)
def test_gated_terms_sum_to_the_native_torch_gradient_and_to_bptt(cell, tokens, B, mask, reduction, scale):
    p, xs, ys, m, s0 = problem(
        cell, tokens=tokens, B=B, mask=mask, scale=scale, seed=hash((cell, B, scale)) % 1000
    )
    d = mb.decompose(p, xs, ys, s0=s0, mask=m, reduction=reduction)
    r = mb.bptt(p, xs, ys, s0=s0, mask=m, reduction=reduction)
    loss, ref = native_grads(cell, p, xs, ys, m, s0, reduction)
    assert_close(d.loss, loss, name="decompose loss vs torch")
    assert (d.b is None) and d.b_ih is not None and d.b_hh is not None
    for name, total in term_sums(d).items():
        assert_close(total, ref[name], name=f"sum of terms.{name} vs nn.{cell.upper()}")
        assert_close(total, getattr(r.grads, name), name=f"sum of terms.{name} vs bptt")
    if cell == "gru":  # the n block: dE/db_hn = r ⊙ dE/db_in, so a swap or a misplaced r shows
        assert not np.allclose(ref["b_ih"], ref["b_hh"]), (
            "b_ih and b_hh gradients coincide: the check is weak"
        )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_lazy_terms_iter_t_and_norms_agree_with_full(cell):
    p, xs, ys, m, s0 = problem(cell, tokens=True, B=3, mask=True, seed=3)
    d = mb.decompose(p, xs, ys, s0=s0, mask=m)
    T = xs.shape[1]
    fulls = {n: getattr(d, n).full() for n in ("U", "W", "b_ih", "b_hh")}
    for t in range(T):
        for k in range(T):
            for n, full in fulls.items():
                if k > t:
                    assert np.all(full[t, k] == 0) and np.all(getattr(d, n)[t, k] == 0)
                else:
                    assert_close(getattr(d, n)[t, k], full[t, k], name=f"terms.{n}[{t}, {k}]")
    for steps in d.iter_t():
        for n, full in fulls.items():
            assert_close(getattr(steps, n), full[steps.t, : steps.t + 1], name=f"iter_t {n} t={steps.t}")
    norms = d.norms()
    for n, full in fulls.items():
        assert_close(getattr(norms, n), np.linalg.norm(full.reshape(T, T, -1), axis=2), name=f"norms().{n}")


# ---------------------------------------------------------------------------------------------
# Truncation is the windowed sum of terms, for every tau
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("tokens", [False, True])
def test_gated_truncated_bptt_is_the_windowed_sum_of_terms(cell, tokens):
    T = 6
    p, xs, ys, m, s0 = problem(cell, T=T, tokens=tokens, B=2, mask=True, scale=2.0, seed=11)
    d = mb.decompose(p, xs, ys, s0=s0, mask=m)
    fulls = {n: getattr(d, n).full() for n in ("U", "W", "b_ih", "b_hh")}
    t_idx, k_idx = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    for tau in range(T + 1):
        r = mb.bptt(p, xs, ys, s0=s0, mask=m, truncate=tau)
        window = ((t_idx - tau <= k_idx) & (k_idx <= t_idx)).astype(float)
        for n, full in fulls.items():
            want = np.tensordot(window, full, axes=([0, 1], [0, 1]))
            assert_close(getattr(r.grads, n), want, name=f"bptt(truncate={tau}).grads.{n} vs windowed terms")


# ---------------------------------------------------------------------------------------------
# State Jacobians over the full state, and the named factors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("B", [None, 2])
def test_gated_state_jacobian_matches_torch_jacobian_of_the_unrolled_steps(cell, B):
    T = 5
    p, xs, ys, _, s0 = problem(cell, T=T, B=B, scale=2.0, seed=5)
    Bn = 1 if B is None else B
    x = dense_inputs(p, xs)
    S = (1 if cell == "gru" else 2) * p.W.shape[1]
    z = [z0_of(s0, Bn)]
    with torch.no_grad():
        for j in range(T):
            z.append(torch_step(cell, p, x[:, j], z[-1]))  # z[j + 1] = z_j
    d = mb.decompose(p, xs, ys, s0=s0)
    for t in range(T):
        for k in range(-1, t + 1):
            J = mb.state_jacobian(p, xs, t, k, s0=s0)
            assert J.shape == ((S, S) if B is None else (B, S, S))
            Jb = J.reshape(Bn, S, S)
            for b in range(Bn):
                want = torch.autograd.functional.jacobian(
                    steps_from(cell, p, x[b : b + 1], t, k), z[k + 1][b : b + 1]
                )
                assert_close(Jb[b], want[:, 0].numpy(), name=f"{cell} dz_{t}/dz_{k} row {b}")
            assert np.array_equal(d.ds_ds(t, k), J)
            if k == t:
                assert np.array_equal(Jb, np.broadcast_to(np.eye(S), Jb.shape))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_terms_rebuilt_from_named_factors(cell):
    p, xs, ys, m, s0 = problem(cell, T=5, B=2, tokens=True, mask=True, seed=8)
    d = mb.decompose(p, xs, ys, s0=s0, mask=m)
    for t in range(5):
        e = d.dE_ds(t)
        assert_close(
            np.einsum("bk,bks->bs", d.dE_dyhat(t), d.dyhat_ds(t)), e, name=f"dE_dyhat·dyhat_ds t={t}"
        )
        for k in range(t + 1):
            eJ = np.einsum("bi,bij->bj", e, d.ds_ds(t, k))
            assert_close(np.einsum("bj,bjmn->mn", eJ, d.ds_dW(k)), d.W[t, k], name=f"W factors {t},{k}")
            assert_close(np.einsum("bj,bjmn->mn", eJ, d.ds_dU(k)), d.U[t, k], name=f"U factors {t},{k}")
            assert_close(
                np.einsum("bj,bjm->m", eJ, d.ds_db_ih(k)), d.b_ih[t, k], name=f"b_ih factors {t},{k}"
            )
            assert_close(
                np.einsum("bj,bjm->m", eJ, d.ds_db_hh(k)), d.b_hh[t, k], name=f"b_hh factors {t},{k}"
            )
    with pytest.raises(ValueError, match=r"^ds_db"):
        d.ds_db(0)


# ---------------------------------------------------------------------------------------------
# RTRL equals BPTT
# ---------------------------------------------------------------------------------------------
def assert_results_agree(a, b, cell, what):
    assert_close(a.loss, b.loss, name=f"{what} loss")
    for n in ("U", "W", "b_ih", "b_hh", "V", "c"):
        assert_close(getattr(a.grads, n), getattr(b.grads, n), name=f"{what} grads.{n}")
    parts = ("h", "c") if cell == "lstm" else (None,)
    for part in parts:
        get = (lambda s, part=part: getattr(s, part)) if part else (lambda s: s)
        assert_close(get(a.ds0), get(b.ds0), name=f"{what} ds0 {part or ''}")
        assert_close(get(a.final_state), get(b.final_state), name=f"{what} final_state {part or ''}")
    assert (a.dxs is None) == (b.dxs is None)
    if a.dxs is not None:
        assert_close(a.dxs, b.dxs, name=f"{what} dxs")


@pytest.mark.parametrize(("cell", "tokens", "B", "mask", "reduction", "scale"), CASES)
def test_gated_rtrl_equals_bptt(cell, tokens, B, mask, reduction, scale):
    p, xs, ys, m, s0 = problem(cell, tokens=tokens, B=B, mask=mask, scale=scale, seed=21)
    r = mb.rtrl(p, xs, ys, s0=s0, mask=m, reduction=reduction)
    assert isinstance(r.grads, CELLS[cell]) and (cell != "lstm" or isinstance(r.ds0, LSTMState))
    assert_results_agree(r, mb.bptt(p, xs, ys, s0=s0, mask=m, reduction=reduction), cell, "rtrl vs bptt")
    _, ref = native_grads(cell, p, xs, ys, m, s0, reduction)
    for n, g in ref.items():
        assert_close(getattr(r.grads, n), g, name=f"rtrl grads.{n} vs nn.{cell.upper()}")


@settings(max_examples=examples(0.15), deadline=None)
@given(
    cell=st.sampled_from(["gru", "lstm"]),
    T=st.integers(1, 6),
    B=st.sampled_from([None, 1, 2, 3]),
    D=st.integers(1, 4),
    H=st.integers(1, 3),
    K=st.integers(2, 5),
    tokens=st.booleans(),
    mask=st.booleans(),
    reduction=st.sampled_from(["sum", "mean"]),
    scale=st.sampled_from([0.3, 1.0, 2.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_gated_decompose_rtrl_and_bptt_agree_on_random_problems(
    cell, T, B, D, H, K, tokens, mask, reduction, scale, seed
):
    p, xs, ys, m, s0 = problem(
        cell, T=T, B=B, D=D, H=H, K=K, tokens=tokens, mask=mask, scale=scale, seed=seed
    )
    r = mb.bptt(p, xs, ys, s0=s0, mask=m, reduction=reduction)
    d = mb.decompose(p, xs, ys, s0=s0, mask=m, reduction=reduction)
    for name, total in term_sums(d).items():
        assert_close(total, getattr(r.grads, name), name=f"sum of terms.{name}")
    assert_results_agree(mb.rtrl(p, xs, ys, s0=s0, mask=m, reduction=reduction), r, cell, "rtrl vs bptt")


# ---------------------------------------------------------------------------------------------
# Bad input and size limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", ["decompose", "rtrl", "state_jacobian"])
def test_gated_functions_refuse_an_activation_and_a_bad_lstm_state(fn):
    p, xs, ys, _, s0 = problem("lstm", B=2, seed=1)
    call = {
        "decompose": lambda **kw: mb.decompose(p, xs, ys, **kw),
        "rtrl": lambda **kw: mb.rtrl(p, xs, ys, **kw),
        "state_jacobian": lambda **kw: mb.state_jacobian(p, xs, 2, 0, **kw),
    }[fn]
    with pytest.raises(ValueError, match=r"^activation"):
        call(activation="tanh", s0=s0)
    with pytest.raises(ValueError, match=r"^s0"):
        call(s0=s0.h)  # not a pair
    with pytest.raises(ValueError, match=r"^s0"):
        call(s0=(s0.h, s0.c[0]))  # parts of different shapes
    before = [np.array(a, copy=True) for a in (xs, ys, s0.h, s0.c)]
    call(s0=s0)
    for a, b in zip(before, (xs, ys, s0.h, s0.c), strict=True):
        assert np.array_equal(a, b), "a caller's array was modified"


def test_token_terms_never_build_a_vocabulary_identity():
    """D = 8000 token inputs: one U term is (G*H, D); norms() needs nothing of size D per step."""
    p, xs, ys, _, s0 = problem("gru", T=40, B=2, D=8000, H=4, tokens=True, seed=2)
    d = mb.decompose(p, xs, ys, s0=s0)
    start = time.perf_counter()
    n = d.norms()
    term = d.U[39, 3]
    elapsed = time.perf_counter() - start
    assert term.shape == (12, 8000)
    assert_close(n.U[39, 3], np.linalg.norm(term), name="norms().U vs the term's norm")
    assert elapsed < 2.0, elapsed


def test_lag_profile_at_T_60000_is_refused_by_its_own_check_before_allocating():
    rng = np.random.default_rng(0)
    T, D, H, K = 60000, 3, 4, 2
    p = mb.RNNParams.init(D, H, K, seed=0)
    d = mb.decompose(p, rng.integers(0, D, T), rng.integers(0, K, T))
    with pytest.raises(mb.TooLargeError, match=r"^lag_profile: the \(T, T\) term norms") as info:
        d.lag_profile()
    assert f"would take {3 * T * T * 8} bytes" in str(info.value)
    with pytest.raises(mb.TooLargeError, match=r"^terms\.norms\(\)") as info:
        d.norms()
    assert f"would take {3 * T * T * 8} bytes" in str(info.value)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_rtrl_refuses_sensitivities_past_max_bytes(cell):
    p, xs, ys, _, s0 = problem(cell, T=4, B=2, D=3, H=2, seed=4)
    G, S = (3, 2) if cell == "gru" else (4, 4)
    B, T, D, H = 2, 4, 3, 2
    need = 8 * (B * S * (G * H * H + G * H * D + 2 * G * H + S) + T * B * S * D)
    mb.rtrl(p, xs, ys, s0=s0, max_bytes=need)
    with pytest.raises(mb.TooLargeError, match=rf"^max_bytes: RTRL sensitivities .* need {need} bytes"):
        mb.rtrl(p, xs, ys, s0=s0, max_bytes=need - 1)
