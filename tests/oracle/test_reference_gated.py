"""The GRU and LSTM oracles of `reference` against PyTorch's native nn.GRU / nn.LSTM, and against themselves.

Every float64 comparison is max|a - b| <= 1e-10 * max|ref| + 1e-12 on finite values (NaN fails).
The problems are random and unequal in every size (D != H != K != T != B), with random nonzero and
different b_ih and b_hh, a nonzero initial state (h0 and c0), weights scaled so that the gates run
both in and out of saturation, and random (never all-ones) targets and masks.

What is proven here:
- the oracle equals nn.GRU / nn.LSTM + nn.Linear + cross-entropy in every field (loss, grads,
  ds0, dxs, final state), for token and dense inputs, batched or not, sum or mean, masked or not;
- the comparison fails for the classic layout bugs (the reset gate before W_n, b_hn outside the
  reset gate, the gate order i, f, o, g, a missing tanh of the cell state);
- the per-(t, k) terms of the untied-weights oracle sum to the gradient, and the truncated oracle
  equals their windowed sum for every tau;
- the state Jacobian equals the chain-rule product of one-step Jacobians of nn.GRUCell / nn.LSTMCell;
- the adapters to and from torch modules round-trip exactly; bad input is a ValueError; caller
  arrays are left untouched.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import reference as ref
from conftest import examples, oracle_close
from manual_bptt.testing import assert_close, central_differences
from reference import gated

RTOL, ATOL = 1e-10, 1e-12
G = {"gru": 3, "lstm": 4}
NATIVE = {"gru": "nn.GRU", "lstm": "nn.LSTM"}
FIELDS = ("U", "W", "b_ih", "b_hh", "V", "c")


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------
def gated_problem(
    cell: str,
    *,
    T: int,
    B: int | None,
    D: int,
    H: int,
    K: int,
    tokens: bool = False,
    bias: bool = True,
    out_bias: bool = True,
    s0_kind: str | None = "per_row",
    use_mask: bool = False,
    reduction: str = "sum",
    scale: float = 1.0,
    seed: int = 0,
) -> tuple[SimpleNamespace, np.ndarray, np.ndarray, dict]:
    """(p, xs, ys, kwargs) for one random problem; B None means unbatched.

    p: U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) independent (or None), V (K, H), c (K,) or None.
    `scale` multiplies every weight and bias (3.0 drives the gates into saturation).
    s0_kind: None (zeros), "shared" ((H,) parts) or "per_row" ((B, H) parts; (H,) when unbatched).
    """
    rng = np.random.default_rng(seed)
    GH = G[cell] * H
    p = SimpleNamespace(
        U=scale * rng.normal(size=(GH, D)) / np.sqrt(D),
        W=scale * rng.normal(size=(GH, H)) / np.sqrt(H),
        b_ih=scale * rng.normal(size=GH) if bias else None,
        b_hh=scale * rng.normal(size=GH) if bias else None,
        V=rng.normal(size=(K, H)),
        c=rng.normal(size=K) if out_bias else None,
    )
    lead = () if B is None else (B,)
    xs = rng.integers(0, D, size=(*lead, T)) if tokens else rng.normal(size=(*lead, T, D))
    ys = rng.integers(0, K, size=(*lead, T))
    kwargs: dict = {"reduction": reduction}
    if use_mask:
        mask = rng.random(size=ys.shape) < 0.6
        mask.flat[rng.integers(mask.size)] = True  # at least one counted target
        kwargs["mask"] = mask
    if s0_kind is not None:
        shape = (H,) if (s0_kind == "shared" or B is None) else (B, H)
        h0 = rng.normal(size=shape)
        kwargs["s0"] = h0 if cell == "gru" else (h0, 0.5 * rng.normal(size=shape) + 0.3)
    return p, xs, ys, kwargs


def state_parts(cell: str, s) -> tuple:
    """A GRU state (an array) or an LSTM state (a pair) as a tuple of arrays."""
    return (s,) if cell == "gru" else tuple(s)


def assert_results_agree(cell: str, actual, expected, *, label: str, key: str | None = None) -> None:
    """Every field of two GatedResults agrees to the project tolerance (None exactly where None).

    With `key`, the relative errors are recorded in the end-of-run summary under "key field".
    """

    def close(a, e, name):
        if key is None:
            assert_close(a, e, name=f"{label}: {name}", rtol=RTOL, atol=ATOL)
        else:
            oracle_close(a, e, name=f"{label}: {name}", key=f"{key} {name}", rtol=RTOL, atol=ATOL)

    close(np.array(actual.loss), np.array(expected.loss), "loss")
    for name in FIELDS:
        a, e = getattr(actual.grads, name), getattr(expected.grads, name)
        assert (a is None) == (e is None), f"{label}: grads.{name} is None in only one result"
        if a is not None:
            close(a, e, f"grads.{name}")
    assert (actual.dxs is None) == (expected.dxs is None), f"{label}: dxs is None in only one result"
    if actual.dxs is not None:
        close(actual.dxs, expected.dxs, "dxs")
    for part, (a, e) in enumerate(
        zip(state_parts(cell, actual.ds0), state_parts(cell, expected.ds0), strict=True)
    ):
        close(a, e, f"ds0[{part}]")
    for part, (a, e) in enumerate(
        zip(state_parts(cell, actual.final_state), state_parts(cell, expected.final_state), strict=True)
    ):
        close(a, e, f"final_state[{part}]")


def native_result(cell: str, p, xs, ys, kwargs) -> gated.GatedResult:
    """The same problem run by the native torch module built from p."""
    module, linear = ref.to_torch(p, cell)
    return ref.torch_gated_bptt(module, linear, xs, ys, **kwargs)


# ---------------------------------------------------------------------------------------------
# The oracle against the native modules
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("reduction,use_mask", [("sum", False), ("mean", True), ("sum", True)])
@pytest.mark.parametrize(
    "B,s0_kind",
    [(None, None), (None, "shared"), (3, None), (3, "shared"), (3, "per_row")],
    ids=["unbatched-zero-s0", "unbatched-s0", "batched-zero-s0", "batched-shared-s0", "batched-per-row-s0"],
)
def test_oracle_equals_native_module(cell, tokens, B, reduction, use_mask, s0_kind):
    p, xs, ys, kw = gated_problem(
        cell, T=6, B=B, D=4, H=5, K=7, tokens=tokens, s0_kind=s0_kind, use_mask=use_mask,
        reduction=reduction, seed=11,
    )  # fmt: skip
    assert_results_agree(
        cell, ref.bptt_cell(cell, p, xs, ys, **kw), native_result(cell, p, xs, ys, kw),
        label=f"{cell} vs {NATIVE[cell]}", key=f"{cell}/{NATIVE[cell]}",
    )  # fmt: skip


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bias,out_bias", [(False, False), (False, True), (True, False)])
def test_oracle_equals_native_module_without_biases(cell, bias, out_bias):
    p, xs, ys, kw = gated_problem(cell, T=5, B=2, D=3, H=4, K=6, bias=bias, out_bias=out_bias, seed=3)
    o = ref.bptt_cell(cell, p, xs, ys, **kw)
    present = (o.grads.b_ih is not None, o.grads.b_hh is not None, o.grads.c is not None)
    assert present == (bias, bias, out_bias)
    assert_results_agree(cell, o, native_result(cell, p, xs, ys, kw), label=f"{cell} no bias")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("scale", [0.3, 3.0, 6.0], ids=["linear", "saturating", "saturated"])
def test_oracle_equals_native_module_in_and_out_of_saturation(cell, scale):
    p, xs, ys, kw = gated_problem(cell, T=8, B=2, D=3, H=5, K=4, scale=scale, seed=5)
    o = ref.bptt_cell(cell, p, xs, ys, **kw)
    assert_results_agree(cell, o, native_result(cell, p, xs, ys, kw), label=f"{cell} scale {scale}")


@st.composite
def gated_problems(draw, cell: str):
    """A random problem: five pairwise-distinct sizes T, B, D, H, K in 1..8, every option drawn."""
    T, B, D, H, K = draw(st.lists(st.integers(1, 8), min_size=5, max_size=5, unique=True))
    batched = draw(st.booleans())
    return gated_problem(
        cell,
        T=T,
        B=B if batched else None,
        D=D,
        H=H,
        K=K,
        tokens=draw(st.booleans()),
        bias=draw(st.booleans()),
        out_bias=draw(st.booleans()),
        s0_kind=draw(st.sampled_from([None, "shared", "per_row"])),
        use_mask=draw(st.booleans()),
        reduction=draw(st.sampled_from(["sum", "mean"])),
        scale=draw(st.sampled_from([0.5, 1.0, 3.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@settings(max_examples=examples(0.25), deadline=None)
@given(data=st.data())
def test_oracle_equals_native_module_on_random_problems(cell, data):
    p, xs, ys, kw = data.draw(gated_problems(cell), label="problem")
    assert_results_agree(
        cell, ref.bptt_cell(cell, p, xs, ys, **kw), native_result(cell, p, xs, ys, kw),
        label=f"{cell} vs {NATIVE[cell]}", key=f"{cell}/{NATIVE[cell]}",
    )  # fmt: skip


def test_native_module_from_make_and_params_from_torch_equals_oracle():
    """The other direction: seeded torch modules, their parameters read out, the oracle on those."""
    rng = np.random.default_rng(2)
    xs, ys = rng.normal(size=(2, 5, 3)), rng.integers(0, 6, size=(2, 5))
    for cell, make in (("gru", ref.make_torch_gru), ("lstm", ref.make_torch_lstm)):
        module, linear = make(3, 4, 6, bias=True, seed=7)
        with torch.no_grad():  # torch's init draws both biases from one range; make them clearly differ
            module.bias_hh_l0.add_(0.5)
        p = ref.params_from_torch(module, linear)
        assert not np.allclose(p.b_ih, p.b_hh)
        expected = ref.torch_gated_bptt(module, linear, xs, ys)
        assert_results_agree(cell, ref.bptt_cell(cell, p, xs, ys), expected, label=f"{cell} from torch")
        assert all(q.grad is None for q in (*module.parameters(), *linear.parameters()))


def test_gru_bias_gradients_differ_only_in_the_n_block():
    """b_ir, b_hr (and b_iz, b_hz) enter the same sum: equal gradients. b_hn sits inside r ⊙ (.), b_in
    outside: their gradients differ (by the factor r), which is what a nonzero b_hn probes."""
    p, xs, ys, kw = gated_problem("gru", T=6, B=3, D=4, H=5, K=2, seed=9)
    g = ref.gru_bptt(p, xs, ys, **kw).grads
    assert_close(g.b_ih[:10], g.b_hh[:10], name="b_ir, b_iz vs b_hr, b_hz")
    assert np.max(np.abs(g.b_ih[10:] - g.b_hh[10:])) > 1e-3 * np.max(np.abs(g.b_ih[10:]))


def test_lstm_bias_gradients_are_equal():
    """Every LSTM gate sees b_ih + b_hh: the two gradients are the same array."""
    p, xs, ys, kw = gated_problem("lstm", T=6, B=3, D=4, H=5, K=2, seed=9)
    g = ref.lstm_bptt(p, xs, ys, **kw).grads
    assert_close(g.b_ih, g.b_hh, name="LSTM b_ih vs b_hh")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_oracle_gradients_equal_finite_differences(cell):
    """Central differences of the oracle's own loss, on a tiny problem (tolerance of differences)."""
    p, xs, ys, kw = gated_problem(cell, T=3, B=2, D=2, H=3, K=4, seed=4)
    o = ref.bptt_cell(cell, p, xs, ys, **kw)
    for name in FIELDS:
        theta = getattr(p, name)

        def loss_of(x, name=name):
            q = SimpleNamespace(**{**vars(p), name: x})
            return ref.bptt_cell(cell, q, xs, ys, **kw).loss

        numeric = central_differences(loss_of, theta)
        assert_close(getattr(o.grads, name), numeric, name=name, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The native comparison catches the classic layout bugs
# ---------------------------------------------------------------------------------------------
def gru_step_reset_before_product(U, W, b_ih, b_hh, x_t, state, tokens):
    """The tutorial GRU: n_t = tanh(U_n x_t + b_in + W_n (r_t ⊙ h_{t-1}) + b_hn)."""
    (h_prev,) = state
    H = h_prev.shape[1]
    ix_r, ix_z, ix_n = gated.input_part(U, b_ih, x_t, tokens).split(H, dim=1)
    hh_r, hh_z, _ = gated.hidden_part(W, b_hh, h_prev).split(H, dim=1)
    r_t, z_t = torch.sigmoid(ix_r + hh_r), torch.sigmoid(ix_z + hh_z)
    n_t = torch.tanh(ix_n + (r_t * h_prev) @ W[2 * H :].T + b_hh[2 * H :])
    return ((1 - z_t) * n_t + z_t * h_prev,)


def gru_step_b_hn_outside_reset(U, W, b_ih, b_hh, x_t, state, tokens):
    """n_t = tanh(U_n x_t + b_in + b_hn + r_t ⊙ (W_n h_{t-1})): one fused bias for n."""
    (h_prev,) = state
    H = h_prev.shape[1]
    ix_r, ix_z, ix_n = gated.input_part(U, b_ih, x_t, tokens).split(H, dim=1)
    hh_r, hh_z, _ = gated.hidden_part(W, b_hh, h_prev).split(H, dim=1)
    r_t, z_t = torch.sigmoid(ix_r + hh_r), torch.sigmoid(ix_z + hh_z)
    n_t = torch.tanh(ix_n + b_hh[2 * H :] + r_t * (h_prev @ W[2 * H :].T))
    return ((1 - z_t) * n_t + z_t * h_prev,)


def lstm_step_gate_order_ifog(U, W, b_ih, b_hh, x_t, state, tokens):
    """Blocks read in the order i, f, o, g instead of PyTorch's i, f, g, o."""
    h_prev, cell_prev = state
    H = h_prev.shape[1]
    gates = gated.input_part(U, b_ih, x_t, tokens) + gated.hidden_part(W, b_hh, h_prev)
    a_i, a_f, a_o, a_g = gates.split(H, dim=1)
    cell_t = torch.sigmoid(a_f) * cell_prev + torch.sigmoid(a_i) * torch.tanh(a_g)
    return (torch.sigmoid(a_o) * torch.tanh(cell_t), cell_t)


def lstm_step_no_tanh_of_cell(U, W, b_ih, b_hh, x_t, state, tokens):
    """h_t = out_gate_t ⊙ cell_t (the tanh of the cell state forgotten)."""
    h_prev, cell_prev = state
    H = h_prev.shape[1]
    gates = gated.input_part(U, b_ih, x_t, tokens) + gated.hidden_part(W, b_hh, h_prev)
    a_i, a_f, a_g, a_o = gates.split(H, dim=1)
    cell_t = torch.sigmoid(a_f) * cell_prev + torch.sigmoid(a_i) * torch.tanh(a_g)
    return (torch.sigmoid(a_o) * cell_t, cell_t)


@pytest.mark.parametrize(
    "cell,wrong_step",
    [
        ("gru", gru_step_reset_before_product),
        ("gru", gru_step_b_hn_outside_reset),
        ("lstm", lstm_step_gate_order_ifog),
        ("lstm", lstm_step_no_tanh_of_cell),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_native_comparison_catches_a_wrong_cell(cell, wrong_step, monkeypatch):
    p, xs, ys, kw = gated_problem(cell, T=5, B=2, D=3, H=4, K=6, seed=1)
    expected = native_result(cell, p, xs, ys, kw)
    assert_results_agree(cell, ref.bptt_cell(cell, p, xs, ys, **kw), expected, label="control")
    monkeypatch.setitem(gated.STEPS, cell, wrong_step)
    with pytest.raises(AssertionError):
        assert_results_agree(cell, ref.bptt_cell(cell, p, xs, ys, **kw), expected, label=wrong_step.__name__)


# ---------------------------------------------------------------------------------------------
# Decomposition: the (t, k) terms and truncation
# ---------------------------------------------------------------------------------------------
TERM_FIELDS = ("U", "W", "b_ih", "b_hh")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize(
    "tokens,B,reduction,use_mask", [(False, 2, "mean", True), (True, None, "sum", False)]
)
def test_terms_sum_to_the_gradient_and_vanish_above_the_diagonal(cell, tokens, B, reduction, use_mask):
    p, xs, ys, kw = gated_problem(
        cell, T=5, B=B, D=3, H=4, K=6, tokens=tokens, reduction=reduction, use_mask=use_mask, seed=8
    )
    o = ref.bptt_cell(cell, p, xs, ys, **kw)
    terms = ref.gated_terms(cell, p, xs, ys, **kw)
    T = 5
    for name in TERM_FIELDS:
        tk = getattr(terms, name)
        assert tk.shape[:2] == (T, T) and tk.shape[2:] == getattr(p, name).shape
        upper = tk[np.triu_indices(T, 1)]
        assert np.all(upper == 0.0), f"{name}: a term with k > t is nonzero"
        assert np.any(tk[np.tril_indices(T, -1)] != 0.0), f"{name}: no term with k < t (no recurrence seen)"
        oracle_close(tk.sum(axis=(0, 1)), getattr(o.grads, name), name=name, key=f"{cell}/terms {name}")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_truncated_oracle_equals_windowed_sum_of_terms_for_every_tau(cell):
    T = 6
    p, xs, ys, kw = gated_problem(cell, T=T, B=2, D=3, H=4, K=5, use_mask=True, seed=12)
    terms = ref.gated_terms(cell, p, xs, ys, **kw)
    full = ref.bptt_cell(cell, p, xs, ys, **kw)
    t_idx, k_idx = np.indices((T, T))
    for tau in range(T + 1):
        r = ref.bptt_cell(cell, p, xs, ys, truncate=tau, **kw)
        window = (k_idx <= t_idx) & (k_idx >= t_idx - tau)  # keep t - tau <= k <= t
        for name in TERM_FIELDS:
            tk = getattr(terms, name)
            windowed = (tk * window.reshape(T, T, *([1] * (tk.ndim - 2)))).sum(axis=(0, 1))
            oracle_close(
                getattr(r.grads, name), windowed, name=f"tau={tau} {name}", key=f"{cell}/trunc {name}"
            )
        assert_close(np.array(r.loss), np.array(full.loss), name=f"tau={tau} loss")
        for name in ("V", "c"):  # no recurrence: unaffected
            assert_close(getattr(r.grads, name), getattr(full.grads, name), name=f"tau={tau} {name}")
        for part, (a, e) in enumerate(
            zip(state_parts(cell, r.final_state), state_parts(cell, full.final_state), strict=True)
        ):
            assert_close(a, e, name=f"tau={tau} final_state[{part}]")
        if tau < T - 1:  # a window that drops terms changes the gradient: the test sees the window
            assert np.max(np.abs(r.grads.W - full.grads.W)) > 1e-6 * np.max(np.abs(full.grads.W))
    assert_results_agree(cell, ref.bptt_cell(cell, p, xs, ys, truncate=T - 1, **kw), full, label="tau=T-1")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_truncated_ds0_reaches_only_the_first_tau_plus_one_losses(cell):
    """s0 enters through step 0, so with truncate=0 only E_0 reaches it: ds0 equals that of a
    one-step problem."""
    p, xs, ys, kw = gated_problem(cell, T=5, B=2, D=3, H=4, K=6, seed=6)
    r = ref.bptt_cell(cell, p, xs, ys, truncate=0, **kw)
    one = ref.bptt_cell(cell, p, xs[:, :1], ys[:, :1], **kw)
    for part, (a, e) in enumerate(zip(state_parts(cell, r.ds0), state_parts(cell, one.ds0), strict=True)):
        assert_close(a, e, name=f"ds0[{part}]")


# ---------------------------------------------------------------------------------------------
# State Jacobian against one-step Jacobians of the native cells, composed
# ---------------------------------------------------------------------------------------------
def native_cell(cell: str, p) -> nn.Module:
    """nn.GRUCell / nn.LSTMCell holding p's weights (float64)."""
    H, D = np.shape(p.W)[1], np.shape(p.U)[1]
    m = (nn.GRUCell if cell == "gru" else nn.LSTMCell)(D, H, bias=p.b_ih is not None, dtype=torch.float64)
    with torch.no_grad():
        m.weight_ih.copy_(torch.tensor(p.U))
        m.weight_hh.copy_(torch.tensor(p.W))
        if p.b_ih is not None:
            m.bias_ih.copy_(torch.tensor(p.b_ih))
            m.bias_hh.copy_(torch.tensor(p.b_hh))
    return m


def chained_jacobian(cell: str, p, xs_row: np.ndarray, z0: np.ndarray, t: int, k: int) -> np.ndarray:
    """dz_t/dz_k for one sequence as the product of one-step Jacobians of the native cell.

    xs_row: (T,) ids or (T, D) dense; z0: the initial state z_{-1}, (S,) with S = H or 2H.
    """
    m = native_cell(cell, p)
    D, H = m.input_size, m.hidden_size
    if np.issubdtype(xs_row.dtype, np.integer):
        x = F.one_hot(torch.tensor(xs_row, dtype=torch.int64), D).to(torch.float64)
    else:
        x = torch.tensor(xs_row)

    def one_step(z: torch.Tensor, j: int) -> torch.Tensor:
        """z_{j-1} (S,) -> z_j (S,) by the native cell."""
        if cell == "gru":
            return m(x[j], z)
        h, c = m(x[j], (z[:H], z[H:]))
        return torch.cat([h, c])

    z = torch.tensor(z0)
    J = torch.eye(z.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for j in range(k + 1):  # z_k
            z = one_step(z, j)
    for j in range(k + 1, t + 1):
        J_j = torch.autograd.functional.jacobian(lambda zz, j=j: one_step(zz, j), z)  # dz_j/dz_{j-1}
        J = J_j @ J
        with torch.no_grad():
            z = one_step(z, j)
    return J.numpy()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
def test_state_jacobian_equals_composed_native_one_step_jacobians(cell, tokens):
    T, H = 6, 4
    p, xs, _, kw = gated_problem(cell, T=T, B=2, D=3, H=H, K=5, tokens=tokens, s0_kind="per_row", seed=13)
    S = H if cell == "gru" else 2 * H
    z0 = np.concatenate(state_parts(cell, kw["s0"]), axis=-1)  # (B, S)
    pairs = [(0, -1), (3, -1), (5, 1), (4, 2), (5, 4), (2, 2), (-1, -1)]
    for t, k in pairs:
        J = ref.gated_state_jacobian(cell, p, xs, t, k, s0=kw["s0"])
        assert J.shape == (2, S, S)
        for row in range(2):
            expected = chained_jacobian(cell, p, xs[row], z0[row], t, k)
            oracle_close(J[row], expected, name=f"dz_{t}/dz_{k} row {row}", key=f"{cell}/jacobian")
            if t == k:
                assert np.array_equal(J[row], np.eye(S))
        if t - k >= 2:  # a real chain: not the identity, and the rows differ
            assert not np.allclose(J[0], np.eye(S)) and not np.allclose(J[0], J[1])
    # Unbatched: the Jacobian of the single sequence, (S, S).
    s0_row = kw["s0"][0] if cell == "gru" else gated.LSTMState(kw["s0"][0][0], kw["s0"][1][0])
    J1 = ref.gated_state_jacobian(cell, p, xs[0], 5, 1, s0=s0_row)
    assert J1.shape == (S, S)
    assert_close(J1, chained_jacobian(cell, p, xs[0], z0[0], 5, 1), name="unbatched")


def test_named_jacobian_and_terms_entries_equal_the_generic_ones():
    for cell, jac, terms_of in (
        ("gru", ref.gru_state_jacobian, ref.gru_terms),
        ("lstm", ref.lstm_state_jacobian, ref.lstm_terms),
    ):
        p, xs, ys, kw = gated_problem(cell, T=4, B=None, D=3, H=2, K=5, seed=14)
        generic = ref.gated_state_jacobian(cell, p, xs, 3, 0, s0=kw["s0"])
        assert np.array_equal(jac(p, xs, 3, 0, s0=kw["s0"]), generic)
        a, b = terms_of(p, xs, ys, **kw), ref.gated_terms(cell, p, xs, ys, **kw)
        assert all(np.array_equal(getattr(a, n), getattr(b, n)) for n in TERM_FIELDS)
    p, xs, ys, kw = gated_problem("gru", T=4, B=2, D=3, H=2, K=5, seed=14)
    assert ref.gru_bptt(p, xs, ys, **kw).loss == ref.gated_bptt("gru", p, xs, ys, **kw).loss
    p, xs, ys, kw = gated_problem("lstm", T=4, B=2, D=3, H=2, K=5, seed=14)
    r = ref.lstm_bptt(p, xs, ys, **kw)
    assert isinstance(r.ds0, ref.LSTMState) and isinstance(r.final_state, ref.LSTMState)


# ---------------------------------------------------------------------------------------------
# Adapters, dispatch, bad input, caller arrays
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_and_params_from_torch_round_trip_exactly(cell, bias):
    p, *_ = gated_problem(cell, T=2, B=None, D=3, H=4, K=5, bias=bias, out_bias=bias, seed=0)
    module, linear = ref.to_torch(p)  # the cell inferred from W's shape
    assert isinstance(module, nn.GRU if cell == "gru" else nn.LSTM) and module.batch_first
    assert module.bias == bias and (linear.bias is not None) == bias
    q = ref.params_from_torch(module, linear)
    for name in FIELDS:
        a, b = getattr(p, name), getattr(q, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert b.dtype == np.float64 and np.array_equal(a, b), name


def test_params_from_torch_keeps_the_elman_layout_for_nn_rnn():
    rnn, linear = ref.make_torch_rnn(3, 4, 5, nonlinearity="tanh", bias=True, seed=0)
    q = ref.params_from_torch(rnn, linear)
    assert set(vars(q)) == {"U", "W", "V", "b", "c"}
    assert np.array_equal(q.b, (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy())


def test_bptt_cell_rnn_is_the_elman_oracle():
    rng = np.random.default_rng(0)
    p = SimpleNamespace(U=rng.normal(size=(4, 3)), W=rng.normal(size=(4, 4)), V=rng.normal(size=(5, 4)),
                        b=rng.normal(size=4), c=rng.normal(size=5))  # fmt: skip
    xs, ys = rng.normal(size=(2, 6, 3)), rng.integers(0, 5, size=(2, 6))
    a = ref.bptt_cell("rnn", p, xs, ys, activation="sigmoid", truncate=2)
    b = ref.bptt(p, xs, ys, activation="sigmoid", truncate=2)
    assert a.loss == b.loss and np.array_equal(a.grads.W, b.grads.W) and np.array_equal(a.ds0, b.ds0)


def bad(cell: str, **changes):
    p, xs, ys, kw = gated_problem(cell, T=3, B=2, D=3, H=2, K=4, seed=0)
    return SimpleNamespace(**{**vars(p), **changes}), xs, ys, kw


@pytest.mark.parametrize(
    "cell,changes,match",
    [
        ("gru", {"W": np.zeros((7, 2))}, "p.W"),
        ("lstm", {"W": np.zeros((6, 2))}, "p.W"),  # a GRU's W given to the LSTM
        ("gru", {"U": np.zeros((5, 3))}, "p.U"),
        ("gru", {"b_hh": None}, "b_ih and p.b_hh"),
        ("lstm", {"b_ih": None}, "b_ih and p.b_hh"),
        ("lstm", {"b_hh": np.zeros(7)}, "p.b_hh"),
        ("gru", {"V": np.zeros((4, 3))}, "p.V"),
        ("lstm", {"c": np.zeros(3)}, "p.c"),
    ],
)
def test_bad_params_are_a_value_error(cell, changes, match):
    p, xs, ys, kw = bad(cell, **changes)
    for call in (
        lambda: ref.bptt_cell(cell, p, xs, ys, **kw),
        lambda: ref.gated_terms(cell, p, xs, ys, **kw),
        lambda: ref.gated_state_jacobian(cell, p, xs, 1, 0, s0=kw["s0"]),
        lambda: ref.to_torch(p, cell),
    ):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    "s0,match",
    [
        (np.zeros((2, 2)), "pair"),
        ([np.zeros((2, 2)), np.zeros((2, 2))], "pair"),
        ((np.zeros((2, 2)),) * 3, "pair"),
        ((np.zeros((2, 2)), np.zeros(2)), "same shape"),
        ((np.zeros((2, 2)), None), "both"),
    ],
)
def test_bad_lstm_state_is_a_value_error(s0, match):
    p, xs, ys, _ = bad("lstm")
    module, linear = ref.to_torch(p)
    for call in (
        lambda: ref.lstm_bptt(p, xs, ys, s0=s0),
        lambda: ref.gated_terms("lstm", p, xs, ys, s0=s0),
        lambda: ref.lstm_state_jacobian(p, xs, 1, 0, s0=s0),
        lambda: ref.torch_lstm_bptt(module, linear, xs, ys, s0=s0),
    ):
        with pytest.raises(ValueError, match=match):
            call()


def test_other_bad_arguments_are_a_value_error():
    p, xs, ys, _ = bad("gru")
    with pytest.raises(ValueError, match="cell"):
        ref.bptt_cell("elman", p, xs, ys)
    for tau in (-1, 1.5, True):
        with pytest.raises(ValueError, match="truncate"):
            ref.gru_bptt(p, xs, ys, truncate=tau)
    with pytest.raises(ValueError, match="activation"):
        ref.bptt_cell("gru", p, xs, ys, activation="tanh")
    with pytest.raises(ValueError, match="one array"):
        ref.gru_bptt(p, xs, ys, s0=(np.zeros((2, 2)),))
    assert ref.bptt_cell("gru", p, xs, ys, activation=None).loss == ref.gru_bptt(p, xs, ys).loss
    with pytest.raises(ValueError, match="reduction"):
        ref.gru_bptt(p, xs, ys, reduction="max")
    with pytest.raises(ValueError, match="k <= t"):
        ref.gru_state_jacobian(p, xs, 1, 2)
    with pytest.raises(ValueError, match="cell"):
        ref.to_torch(SimpleNamespace(**{**vars(p), "W": np.zeros((10, 2))}))
    module, linear = ref.to_torch(p)
    with pytest.raises(ValueError, match=r"nn\.LSTM"):
        ref.torch_lstm_bptt(module, linear, xs, ys)
    with pytest.raises(ValueError, match="batch_first"):
        ref.torch_gru_bptt(nn.GRU(3, 2, dtype=torch.float64), linear, xs, ys)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_caller_arrays_are_left_untouched(cell):
    p, xs, ys, kw = gated_problem(cell, T=4, B=2, D=3, H=2, K=5, use_mask=True, seed=1)
    arrays = [*(getattr(p, n) for n in FIELDS), xs, ys, kw["mask"], *state_parts(cell, kw["s0"])]
    copies = [a.copy() for a in arrays]
    r = ref.bptt_cell(cell, p, xs, ys, **kw)
    ref.bptt_cell(cell, p, xs, ys, truncate=1, **kw)
    ref.gated_terms(cell, p, xs, ys, **kw)
    ref.gated_state_jacobian(cell, p, xs, 3, -1, s0=kw["s0"])
    module, linear = ref.to_torch(p)
    ref.torch_gated_bptt(module, linear, xs, ys, **kw)
    for a, before in zip(arrays, copies, strict=True):
        assert np.array_equal(a, before)
    for name in FIELDS:  # the results share no memory with the inputs
        assert not np.shares_memory(getattr(r.grads, name), getattr(p, name))
