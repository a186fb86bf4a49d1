"""The decomposition (and RTRL) at their edges: float32 terms and factors stay float32 (and
float32 sizes count 4 bytes a number), softmax factors with extreme logits, uncounted targets
whose y_hat underflows, steps past the end, max_bytes = 0, the whole messages of size refusals,
the inputs a decomposition owns, and the bias views it has."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import torch

import manual_bptt as mb
import reference as ref
from manual_bptt import RNNParams, TooLargeError, decompose, rtrl, state_jacobian
from manual_bptt.testing import assert_close

D, H, K, B, T = 3, 4, 5, 2, 6
PARAMS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}  # the params type of each cell
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
    params = PARAMS[cell]
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
    params = PARAMS[cell]
    rng = np.random.default_rng(3)
    p = params.init(3, 4, 2, seed=1)
    xs, ys = rng.standard_normal((2, 5, 3)), rng.integers(0, 2, (2, 5))
    want = mb.decompose(p, xs.copy(), ys.copy())
    dec = mb.decompose(p, xs, ys)
    xs += 1.0
    ys[:] = 1 - ys
    for name in ("U", "W"):
        assert np.array_equal(getattr(dec, name).full(), getattr(want, name).full()), name


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_a_decomposition_of_unbatched_token_ids_keeps_its_own_copy(cell):
    """Unbatched int64 token ids and labels are read time-major without a conversion (a view of
    the caller's arrays): the lazy terms and factors must still not see later changes."""
    params = PARAMS[cell]
    rng = np.random.default_rng(4)
    p = params.init(3, 2, 2, seed=2)
    xs, ys = rng.integers(0, 3, 5), rng.integers(0, 2, 5)
    want = mb.decompose(p, xs.copy(), ys.copy())
    dec = mb.decompose(p, xs, ys)
    xs[:] = (xs + 1) % 3
    ys[:] = 1 - ys
    for name in ("U", "W"):
        assert np.array_equal(getattr(dec, name).full(), getattr(want, name).full()), name
    for t in range(5):
        assert np.array_equal(dec.dE_dyhat(t), want.dE_dyhat(t)), t
        assert np.array_equal(dec.ds_dU(t), want.ds_dU(t)), t


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_state_jacobian_reads_dense_inputs_without_copying_them(cell):
    """state_jacobian's result does not outlive the call, so the caller's float64 xs is read in
    place: the traced peak stays far below the size of xs (3.2 MB)."""
    params = PARAMS[cell]
    xs = np.random.default_rng(5).standard_normal((2, 50, 4000))
    p = params.init(4000, 2, 2, seed=0)
    tracemalloc.start()
    try:
        J = mb.state_jacobian(p, xs, 49, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert J.shape[0] == 2
    assert peak < xs.nbytes / 2, (peak, xs.nbytes)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_gradient_methods_require_labels(cell):
    """decompose and rtrl of a gated cell refuse ys=None with the ValueError naming ys."""
    params = PARAMS[cell]
    p = params.init(3, 2, 2, seed=0)
    xs = np.zeros((2, 4), np.int64)
    for call in (mb.decompose, mb.rtrl):
        with pytest.raises(ValueError) as info:
            call(p, xs, None)
        assert str(info.value) == "ys: required (integer labels in [0, K)), got None", call.__name__


def test_a_loss_that_overflows_or_is_nan_is_named_without_a_warning():
    """The logits' overflow (an inf - inf in the shift of log-sum-exp gives NaN) and an infinite
    loss are reported by the NonFiniteError alone, never by a numpy RuntimeWarning."""
    U = np.array([[0.0, 100.0], [0.0, 100.0]])  # token 1: h_t = (tanh(100), tanh(100)) = (1, 1)
    cases = {
        "inf": (np.array([[1.7e308, 0.0], [-1.7e308, 0.0]]), np.array([1, 1])),  # logits (1.7e308, -1.7e308)
        "nan": (np.array([[1.7e308, 1.7e308], [0.0, 0.0]]), np.array([0, 0])),  # logits (inf, 0)
    }
    for value, (V, ys) in cases.items():
        p = mb.RNNParams(U=U, W=np.zeros((2, 2)), V=V)
        for name, call in (("decompose", mb.decompose), ("rtrl", mb.rtrl)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with pytest.raises(mb.NonFiniteError) as info:
                    call(p, np.array([0, 1]), ys)
            assert str(info.value) == f"{name}: the loss is not finite ({value})"


# ---------------------------------------------------------------------------------------------
# float32 sizes are counted at 4 bytes a number, and float32 work is not widened
# ---------------------------------------------------------------------------------------------
def test_float32_full_tensors_and_lag_profile_fit_their_exact_float32_size():
    """A float32 term tensor of exactly max_bytes is allowed (one byte less is refused), and so
    are lag_profile's float32 Jacobians (T, B, H, H) and step caches (T, B*H, H), equal in size."""
    for name, shape in (("W", (T, T, H, H)), ("U", (T, T, H, D)), ("b", (T, T, H))):
        size = int(np.prod(shape)) * 4
        full = getattr(decompose(P32, TOK, YS, max_bytes=size), name).full()
        assert full.dtype == F32 and full.nbytes == size, name
        with pytest.raises(TooLargeError, match=rf"^terms\.{name}: an array of shape"):
            getattr(decompose(P32, TOK, YS, max_bytes=size - 1), name).full()
    xs, ys = TOK[:, :4], YS[:, :4]  # T = 4: the (3, T, T) float64 norms (384 bytes) fit as well
    jac = 4 * B * H * H * 4
    prof = decompose(P32, xs, ys, max_bytes=jac).lag_profile()
    assert prof.jac_fro_max[0] == pytest.approx(2.0)  # the lag-0 identity, H = 4
    with pytest.raises(TooLargeError, match=rf"^lag_profile: the Jacobians .* would take {jac} bytes"):
        decompose(P32, xs, ys, max_bytes=jac - 1).lag_profile()


def test_float32_forward_run_fits_its_exact_float32_size():
    """state_jacobian holds its forward run to max_bytes at 4 bytes a float32 number: the
    states (T + 1, B, H), the largest array, fit exactly; one byte less names them."""
    states = (T + 1) * B * H * 4
    J = state_jacobian(P32, TOK, 4, 1, max_bytes=states)
    assert J.dtype == F32
    np.testing.assert_array_equal(J, state_jacobian(P32, TOK, 4, 1))
    with pytest.raises(TooLargeError) as info:
        state_jacobian(P32, TOK, 4, 1, max_bytes=states - 1)
    assert str(info.value).startswith(
        f"state_jacobian: the states z_t: an array of shape ({T + 1}, {B}, {H}) would take {states} bytes"
    )


def test_float32_token_norms_sum_the_columns_in_float32_like_the_terms():
    """For token inputs norms().U adds the rows of dgi with equal tokens into a float32 column,
    exactly as the float32 term U[t, k] does: a row of dgi = 1e-10 vanishes next to one of 1 in
    both, so the norm is exactly that of the term.

    Identity activation, W = 1, s0 = (100, -23), V = (0, 1)^T, labels 0: dgi = (1, 1.03e-10)."""
    f32 = np.float32
    p = mb.RNNParams(U=np.zeros((1, 1), f32), W=np.ones((1, 1), f32), V=np.array([[0.0], [1.0]], f32))
    s0 = np.array([[100.0], [-23.0]], f32)
    dec = decompose(p, np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64), activation="identity", s0=s0)
    dgi = dec.dE_ds(0)[:, 0]
    assert dgi[0] == 1 and 0 < dgi[1] < 2e-10 and dgi.dtype == F32
    term = dec.U[0, 0]
    assert term.dtype == F32 and term[0, 0] == 1  # 1 + 1.03e-10 rounds to 1 in float32
    assert dec.norms().U[0, 0] == np.linalg.norm(term.astype(np.float64)) == 1.0


def test_float32_parameters_with_a_float64_state_are_computed_in_float64():
    """float32 parameters widened by a float64 s0: the compute dtype is float64 for every array,
    token inputs and no bias included (U's columns are then the input terms as they stand), so
    the terms are float64 and sum to the float64 BPTT gradient."""
    rng = np.random.default_rng(6)
    p = mb.RNNParams(U=rng.standard_normal((H, D)), W=0.5 * rng.standard_normal((H, H)),
                     V=rng.standard_normal((K, H))).astype(np.float32)
    s0 = rng.standard_normal((B, H))  # float64
    dec = decompose(p, TOK, YS, s0=s0)
    r = mb.bptt(p, TOK, YS, s0=s0)
    o = ref.bptt(p, TOK, YS, s0=s0)
    for name in ("W", "U"):
        full = getattr(dec, name).full()
        assert full.dtype == np.float64, name
        assert_close(full.sum(axis=(0, 1)), getattr(r.grads, name), name=f"sum of terms.{name} vs bptt")
        assert_close(full.sum(axis=(0, 1)), getattr(o.grads, name), name=f"sum of terms.{name} vs oracle")
    J = state_jacobian(p, TOK, 4, 1, s0=s0)
    assert J.dtype == np.float64
    np.testing.assert_array_equal(J, dec.ds_ds(4, 1))


# ---------------------------------------------------------------------------------------------
# whole messages of the refusals, and the step checks of every factor
# ---------------------------------------------------------------------------------------------
def _size_message(what, shape, limit, hint=""):
    """The whole TooLargeError message for a float64 array of ``shape`` over ``limit`` bytes."""
    size = int(np.prod(shape)) * 8
    return (f"{what}: an array of shape {shape} would take {size} bytes ({size / 2**20:.1f} MiB), over the "
            f"limit of {limit} bytes ({limit / 2**20:.1f} MiB, max_bytes); nothing was allocated"
            + (f". {hint}" if hint else ""))


def test_full_and_norms_refusals_say_what_to_do_instead():
    """The whole messages of a refused full() and norms(): what, shape, bytes, limit, and the
    lazier way to get the terms."""
    dec = decompose(P, TOK, YS, max_bytes=100)
    with pytest.raises(TooLargeError) as info:
        dec.W.full()
    assert str(info.value) == _size_message(
        "terms.W",
        (T, T, H, H),
        100,
        "Index one term at a time (terms.W[t, k]), iterate with terms.iter_t(), use terms.norms(), "
        "or pass a larger max_bytes",
    )
    with pytest.raises(TooLargeError) as info:
        dec.norms()
    assert str(info.value) == _size_message(
        "terms.norms(): the (T, T) norms of every parameter's terms",
        (3, T, T),
        100,
        "Use terms.iter_t(), or pass a larger max_bytes",
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_lag_profile_refuses_the_step_caches_repeated_per_state_row(cell):
    """A gated cell's step caches (GRU: 5 (B, H) fields; LSTM: gates (B, 4H), c_{t-1}, tanh(c_t))
    are wider than its state: lag_profile repeats them once per state row, (T, B*S, width),
    allowed at exactly max_bytes and refused, by name and size, one byte below."""
    params = PARAMS[cell]
    Hn, Tn = 3, 4
    S, width = (Hn, 5 * Hn) if cell == "gru" else (2 * Hn, 6 * Hn)
    p = params.init(3, Hn, 2, seed=0)
    xs, ys = TOK[:, :Tn], YS[:, :Tn] % 2
    shape = (Tn, B * S, width)
    size = int(np.prod(shape)) * 8
    assert size > Tn * B * S * S * 8 and size > 4 * Tn * Tn * 8  # the Jacobians and norms fit
    prof = decompose(p, xs, ys, max_bytes=size).lag_profile()
    assert prof.jac_spec_max[0] == pytest.approx(1.0)
    with pytest.raises(TooLargeError) as info:
        decompose(p, xs, ys, max_bytes=size - 1).lag_profile()
    want = _size_message("lag_profile: the step caches, one copy per state row", shape, size - 1)
    assert str(info.value) == want


def test_ds_db_of_a_gated_cell_names_the_gated_bias_factors():
    """ds_db is the Elman cell's factor: a gated cell is refused with a message naming its own."""
    dec = decompose(mb.GRUParams.init(3, 2, 2, seed=0), TOK, YS % 2)
    with pytest.raises(ValueError) as info:
        dec.ds_db(0)
    assert str(info.value) == "ds_db: the Elman cell's bias b; a gated cell has ds_db_ih and ds_db_hh"


@pytest.mark.parametrize("factor", ["ds_db_ih", "ds_db_hh"])
def test_gated_bias_factors_refuse_steps_past_the_end_naming_k(factor):
    """ds_db_ih(k) and ds_db_hh(k) accept 0 <= k <= T - 1 only, with the ValueError naming k."""
    dec = decompose(mb.GRUParams.init(3, 2, 2, seed=0), TOK, YS % 2)
    call = getattr(dec, factor)
    assert call(T - 1).shape == (B, 2, 6)
    for k in (T, T + 1, -1):
        with pytest.raises(ValueError) as info:
            call(k)
        assert str(info.value) == f"k: expected 0 <= k <= {T - 1}, got {k}", k


# ---------------------------------------------------------------------------------------------
# what a decomposition exposes: the bias views the model has, its inputs, the array protocol
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "bias", "names"),
    [
        ("rnn", True, ("b",)),
        ("rnn", False, ()),
        ("gru", True, ("b_ih", "b_hh")),
        ("gru", False, ()),
        ("lstm", False, ()),
    ],
)
def test_bias_views_exist_exactly_for_the_biases_of_the_model(cell, bias, names):
    """b (Elman) or b_ih and b_hh (gated) are term views when the model has them, else None,
    in the decomposition, its norms and each StepTerms."""
    params = PARAMS[cell]
    p = params.init(D, 2, 2, seed=0, bias=bias)
    dec = decompose(p, TOK, YS % 2)
    nrm = dec.norms()
    step = next(dec.iter_t())
    for name in ("b", "b_ih", "b_hh"):
        assert (getattr(dec, name) is not None) == (name in names), name
        assert (getattr(nrm, name) is not None) == (name in names), name
        assert (getattr(step, name) is not None) == (name in names), name


def test_a_decomposition_exposes_its_validated_inputs():
    """``batch``: the checked inputs, time-major and owned (no memory shared with the caller's)."""
    dec = decompose(P, TOK, YS)
    batch = dec.batch
    assert (batch.T, batch.B, batch.D, batch.H, batch.K, batch.batched) == (T, B, D, H, K, True)
    np.testing.assert_array_equal(batch.tokens, TOK.T)
    np.testing.assert_array_equal(batch.Y, YS.T)
    assert not np.shares_memory(batch.tokens, TOK) and not np.shares_memory(batch.Y, YS)


def test_term_views_follow_the_array_protocol():
    """``view.__array__(dtype)`` returns the full tensor in that dtype (as np.asarray does)."""
    dec = decompose(P, TOK, YS)
    full = dec.W.full()
    for dtype in (np.float32, np.float64):
        for a in (dec.W.__array__(dtype), np.asarray(dec.W, dtype=dtype)):
            assert a.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(a, full.astype(dtype))
    assert dec.W.__array__().dtype == np.float64
