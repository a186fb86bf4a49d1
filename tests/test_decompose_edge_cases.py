"""The decomposition (and RTRL) at their edges: float32 terms and factors stay float32, softmax
factors with extreme logits, uncounted targets whose y_hat underflows, steps past the end,
max_bytes = 0, and the names in size refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import manual_bptt as mb
from manual_bptt import RNNParams, TooLargeError, decompose, rtrl, state_jacobian

D, H, K, B, T = 3, 4, 5, 2, 6
RNG = np.random.default_rng(77)
P = RNNParams.init(D, H, K, seed=9)
P32 = P.astype(np.float32)
TOK = RNG.integers(0, D, (B, T))
YS = RNG.integers(0, K, (B, T))
DENSE32 = RNG.standard_normal((B, T, D)).astype(np.float32)
F32 = np.dtype(np.float32)


# ---------------------------------------------------------------------------------------------
# float32 problems give float32 terms and factors (every output, tokens and dense)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("xs", [TOK, DENSE32], ids=["tokens", "dense"])
def test_float32_decomposition_outputs_are_float32(xs):
    # Every term, view, factor and Jacobian of a float32 problem is float32: one array
    # allocated in float64 anywhere would promote the float32 work to float64.
    dec = decompose(P32, xs, YS)
    arrays = {
        "W.full": dec.W.full(), "U.full": dec.U.full(), "b.full": dec.b.full(),
        "asarray(W)": np.asarray(dec.W), "asarray(U)": np.asarray(dec.U),
        "W[1, 3] (k > t)": dec.W[1, 3], "U[1, 3]": dec.U[1, 3], "b[1, 3]": dec.b[1, 3],
        "U[3, 1]": dec.U[3, 1], "W[3, 1]": dec.W[3, 1],
        "ds_dW": dec.ds_dW(2), "ds_dU": dec.ds_dU(2), "ds_db": dec.ds_db(2), "ds_ds": dec.ds_ds(4, 1),
        "ds_ds s0": dec.ds_ds(3, -1), "state_jacobian": state_jacobian(P32, xs, 4, 1),
    }
    for st in dec.iter_t():
        arrays.update({f"iter_t W {st.t}": st.W, f"iter_t U {st.t}": st.U, f"iter_t b {st.t}": st.b})
    for name, a in arrays.items():
        assert a.dtype == F32, name
    # and the values: the term sums are the float32 BPTT gradient at float32 accuracy
    r = mb.bptt(P32, xs, YS)
    for name in ("W", "U", "b"):
        np.testing.assert_allclose(arrays[f"{name}.full"].sum(axis=(0, 1)), getattr(r.grads, name),
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lag_profile_jacobian_norms_are_those_of_ds_ds(dtype):
    # lag_profile's J_L[k] and ds_ds(k + L, k) are the same products in the same order and
    # dtype (the lag-0 identity included), so their norms agree exactly.
    p = P.astype(dtype)
    xs = DENSE32.astype(dtype)
    dec = decompose(p, xs, YS)
    prof = dec.lag_profile()
    for L in range(T):
        fro = [np.linalg.norm(dec.ds_ds(k + L, k), axis=(1, 2)) for k in range(T - L)]
        assert prof.jac_fro_max[L] == np.max(fro), L


# ---------------------------------------------------------------------------------------------
# softmax factors with extreme logits, and uncounted targets whose y_hat underflows
# ---------------------------------------------------------------------------------------------
# identity activation, s_t = x_t: row 0 has logits (1000, 2000), row 1 (-1000, -2000), so a max
# over the whole batch (instead of per row) underflows row 1, and o + max overflows row 0.
EXT_P = RNNParams(U=[[1.0]], W=[[0.0]], V=[[1.0], [2.0]])
EXT_XS = np.array([[[1000.0], [1000.0]], [[-1000.0], [-1000.0]]])  # (B=2, T=2, D=1)


def torch_softmax(o):
    return torch.softmax(torch.tensor(o, dtype=torch.float64), dim=-1).numpy()


def test_softmax_factors_with_extreme_logits_match_torch():
    # the maximum is subtracted (not added), per row (not over the whole batch)
    ys = np.array([[1, 1], [0, 0]])
    dec = decompose(EXT_P, EXT_XS, ys, activation="identity")
    for t in range(2):
        o = EXT_XS[:, t, :] @ EXT_P.V.T  # (B, K)
        y = torch_softmax(o)
        y_label = y[np.arange(2), ys[:, t]]  # about 1: the labels are the largest logits
        np.testing.assert_allclose(dec.dE_dyhat(t), np.eye(2)[ys[:, t]] * (-1 / y_label)[:, None])
        J = np.einsum("bi,ij->bij", y, np.eye(2)) - y[:, :, None] * y[:, None, :]
        np.testing.assert_allclose(dec.dyhat_ds(t), J @ EXT_P.V, atol=1e-300)


def test_dE_dyhat_uncounted_underflowed_target_is_exactly_zero_and_counted_is_inf():
    # only counted targets are written (an uncounted one would be 0 / 0 = nan), and the -inf
    # of a counted one comes without a divide-by-zero warning
    ys = np.array([[0, 0], [1, 1]])  # every label has y_hat[y] = exp(-1000) = 0
    mask = np.array([[False, True], [True, False]])
    dec = decompose(EXT_P, EXT_XS, ys, mask=mask, activation="identity")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g0, g1 = dec.dE_dyhat(0), dec.dE_dyhat(1)
    assert np.array_equal(g0, [[0.0, 0.0], [0.0, -np.inf]])
    assert np.array_equal(g1, [[-np.inf, 0.0], [0.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def test_steps_past_the_end_are_value_errors():
    # the upper bound is T - 1: past it, the ValueError naming the step (not an IndexError
    # or a wrong answer)
    dec = decompose(P, TOK, YS)
    with pytest.raises(ValueError, match=rf"^t: expected 0 <= t <= {T - 1}, got {T}$"):
        dec.dE_dyhat(T)
    for k in (T, T + 1):
        with pytest.raises(ValueError, match=rf"^k: expected 0 <= k <= {T - 1}, got {k}$"):
            dec.ds_dW(k)


def test_max_bytes_zero_is_allowed():
    # max_bytes = 0 is a valid limit (only negative ones are refused): the lazy terms still
    # work, and everything that needs memory is refused
    dec = decompose(P, TOK, YS, max_bytes=0)
    np.testing.assert_array_equal(dec.W[3, 1], decompose(P, TOK, YS).W[3, 1])
    with pytest.raises(TooLargeError, match=r"^terms\.W: an array of shape"):
        dec.W.full()
    with pytest.raises(ValueError, match=r"^max_bytes: RTRL sensitivities for B=2, H=4, D=3, T=6 need"):
        rtrl(P, TOK, YS, max_bytes=0)


def test_lag_profile_refusal_names_the_jacobians():
    # the TooLargeError names what was refused
    need = T * B * H * H * 8
    dec = decompose(P, TOK, YS, max_bytes=need - 1)
    shape = rf"\({T}, {B}, {H}, {H}\)"
    msg = rf"^lag_profile: the Jacobians .* of one lag: an array of shape {shape} would take {need} bytes"
    with pytest.raises(TooLargeError, match=msg):
        dec.lag_profile()



# ---------------------------------------------------------------------------------------------
# the unrolled run behind decompose, state_jacobian and rtrl: overflow, sizes, owned inputs
# ---------------------------------------------------------------------------------------------
def _accumulating():
    """Identity activation, W = I, U's column of token 1 is 1e308: the state is 1e308 after
    the first token 1 and inf after the second."""
    U = np.zeros((2, 2))
    U[:, 1] = 1e308
    return mb.RNNParams(U=U, W=np.eye(2), V=np.zeros((2, 2)))


def test_an_overflowing_recurrence_is_named_at_its_first_step_by_every_unrolled_method():
    import warnings

    p, xs, ys = _accumulating(), np.array([0, 1, 0, 0, 1, 0]), np.zeros(6, dtype=np.int64)
    calls = {
        "decompose": lambda: mb.decompose(p, xs, ys, activation="identity"),
        "state_jacobian": lambda: mb.state_jacobian(p, xs, 5, 1, activation="identity"),
        "rtrl": lambda: mb.rtrl(p, xs, ys, activation="identity"),
    }
    for name, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(mb.NonFiniteError) as info:
                call()
        err = info.value
        assert (err.what, err.step) == ("z_t", 4), name
        want = f"{name}: the state z_t is not finite from step t = 4 on (the recurrence overflowed)"
        assert str(err) == want


def test_a_loss_that_overflows_is_refused_by_decompose():
    """Finite states and logits (1.7e308, -1.7e308) whose cross-entropy for label 1 is inf."""
    U = np.array([[0.0, 100.0], [0.0, 100.0]])
    V = np.array([[1.7e308, 0.0], [-1.7e308, 0.0]])
    p = mb.RNNParams(U=U, W=np.zeros((2, 2)), V=V)
    with pytest.raises(mb.NonFiniteError) as info:
        mb.decompose(p, np.array([0, 1]), np.array([1, 1]))
    assert (info.value.what, info.value.step) == ("E", None)
    assert str(info.value) == "decompose: the loss is not finite (inf)"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_forward_run_refuses_the_input_terms_then_the_states_by_name_and_size(cell):
    """state_jacobian holds its forward run to max_bytes (decompose to at least 1 GiB)."""
    params = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}[cell]
    G, P = {"rnn": (1, 1), "gru": (3, 1), "lstm": (4, 2)}[cell]
    T_, B_, H_ = 6, 2, 3
    p = params.init(4, H_, 2, seed=0)
    xs = np.zeros((B_, T_), np.int64)
    terms = T_ * B_ * G * H_ * 8
    states = (T_ + 1) * B_ * P * H_ * 8
    with pytest.raises(mb.TooLargeError) as info:
        mb.state_jacobian(p, xs, 3, 1, max_bytes=terms - 1)
    assert str(info.value).startswith(
        f"state_jacobian: the input terms gi_t = U x_t + b_ih: an array of shape ({T_}, {B_}, {G * H_}) "
        f"would take {terms} bytes"
    )
    if states > terms:
        with pytest.raises(mb.TooLargeError) as info:
            mb.state_jacobian(p, xs, 3, 1, max_bytes=states - 1)
        assert str(info.value).startswith(
            f"state_jacobian: the states z_t: an array of shape ({T_ + 1}, {B_}, {P * H_}) would take "
            f"{states} bytes"
        )
    if cell != "rnn":  # the gated cells' step caches are wider than their states
        caches = r"^state_jacobian: the step caches: an array of shape \(6, 2, "
        with pytest.raises(mb.TooLargeError, match=caches):
            mb.state_jacobian(p, xs, 3, 1, max_bytes=max(terms, states))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gated_decomposition_keeps_its_own_copy_of_the_inputs(cell):
    """The terms are computed lazily: changing the caller's xs, s0 or labels after the call
    must not change them."""
    params = {"gru": mb.GRUParams, "lstm": mb.LSTMParams}[cell]
    rng = np.random.default_rng(3)
    p = params.init(3, 4, 2, seed=1)
    xs, ys = rng.standard_normal((2, 5, 3)), rng.integers(0, 2, (2, 5))
    want = mb.decompose(p, xs.copy(), ys.copy())
    dec = mb.decompose(p, xs, ys)
    xs += 1.0
    ys[:] = 1 - ys
    for name in ("U", "W"):
        assert np.array_equal(getattr(dec, name).full(), getattr(want, name).full()), name
