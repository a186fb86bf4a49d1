"""Input handling at its edges: the exact wording of error messages that name what is wrong,
the compute dtype of unusual (but accepted) input dtypes, and the documented Batch that
prepare returns.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from conftest import assert_identical
from manual_bptt import RNNParams, bptt, decompose
from manual_bptt import forward as mb_forward
from manual_bptt._inputs import prepare

D, H, K, B, T = 3, 4, 5, 2, 6
RNG = np.random.default_rng(2024)
P = RNNParams.init(D, H, K, seed=11)
TOK = RNG.integers(0, D, (B, T))
YS = RNG.integers(0, K, (B, T))
DENSE = RNG.standard_normal((B, T, D))

HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


# ---------------------------------------------------------------------------------------------
# error messages
# ---------------------------------------------------------------------------------------------
def test_object_array_message():
    xs = np.array([0, 1, None], dtype=object)
    msg = r"^xs: cannot be read as a numeric array \(ragged or non-numeric\)$"
    with pytest.raises(ValueError, match=msg):
        bptt(P, xs, YS[0, :3])


def test_params_of_wrong_type_message_names_the_type():
    # the message names the type that was given
    want = r"^p: expected manual_bptt.RNNParams, GRUParams or LSTMParams, got dict$"
    with pytest.raises(ValueError, match=want):
        bptt(dict(P.items()), TOK, YS)


def test_missing_labels_message():
    with pytest.raises(ValueError, match=r"^ys: required \(integer labels in \[0, K\)\), got None$"):
        bptt(P, TOK, None)


def test_dense_input_width_message_reports_the_last_axis():
    # the last axis D' of (B, T, D'), not the second one (T)
    with pytest.raises(ValueError, match=rf"^xs: last axis is 7 but U has D = {D} columns$"):
        bptt(P, np.zeros((B, T, 7)), YS)


def test_empty_sequence_and_batch_messages():
    with pytest.raises(ValueError, match=r"^xs: empty sequence \(T = 0\)$"):
        bptt(P, np.zeros((B, 0), dtype=np.int64), np.zeros((B, 0), dtype=np.int64))
    with pytest.raises(ValueError, match=r"^xs: empty batch \(B = 0\)$"):
        bptt(P, np.zeros((0, T), dtype=np.int64), np.zeros((0, T), dtype=np.int64))


def test_s0_shape_message_lists_the_allowed_shapes():
    # the message lists both allowed shapes, "(4,) or (2, 4)"
    msg = rf"^s0: expected shape \({H},\) or \({B}, {H}\) \(H = {H}\), got \(3, {H}\)$"
    with pytest.raises(ValueError, match=msg):
        bptt(P, TOK, YS, s0=np.zeros((3, H)))


def test_label_message_points_at_the_first_bad_label_after_a_zero():
    # 0 is a valid label: with a 0 before the bad one, the message must point at the bad one
    ys = np.zeros((B, T), dtype=np.int64)
    ys[1, 3] = K
    msg = rf"^ys: label {K} at index \(1, 3\) is outside \[0, K\) with K = {K}$"
    with pytest.raises(ValueError, match=msg):
        bptt(P, TOK, ys)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
def test_token_ids_and_labels_of_every_integer_width_are_range_checked(dtype):
    """Ids and labels are range-checked by one maximum over their unsigned reading: negative
    ids of every width (the most negative included), ids equal to D or K, and the same in a
    strided view are refused with the element named; every id in range is accepted."""
    tok, ys = TOK.astype(dtype), YS.astype(dtype)
    want = bptt(P, TOK, YS)
    got = bptt(P, tok[:, ::-1][:, ::-1], ys)  # a strided (reversed twice) view of the same ids
    assert got.loss == want.loss
    lowest = np.iinfo(dtype).min
    for bad_value in ([-1, lowest] if lowest < 0 else []) + [D]:
        bad = tok.copy()
        bad[1, 2] = bad_value
        with pytest.raises(ValueError, match=rf"^xs: token id {bad_value} at index \(1, 2\) is outside"):
            bptt(P, bad[:, ::-1][:, ::-1], ys)
    for bad_value in ([-1, lowest] if lowest < 0 else []) + [K]:
        bad = ys.copy()
        bad[0, 4] = bad_value
        with pytest.raises(ValueError, match=rf"^ys: label {bad_value} at index \(0, 4\) is outside"):
            bptt(P, tok, bad)


def test_ragged_mask_message_names_mask():
    # the message names "mask"
    mask = [[True] * T, [True] * (T - 1)]
    with pytest.raises(ValueError, match=r"^mask: cannot be read as an array"):
        bptt(P, TOK, YS, mask=mask)


def test_mask_without_labels_is_refused_by_prepare():
    # Public functions either require ys (and say so first) or take no mask, so this check
    # is reached through prepare only.
    with pytest.raises(ValueError, match=r"^mask: given without ys$"):
        prepare(P, TOK, None, activation="tanh", s0=None, mask=np.ones((B, T), bool), labels_required=False)


# ---------------------------------------------------------------------------------------------
# results: unbatched mask, token dtypes, compute dtype
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_unbatched_mask_matches_oracle(reduction, check):
    # an unbatched (T,) mask is given its batch axis
    mask = np.array([True, False, True, True, False, True])
    r = bptt(P, TOK[0], YS[0], mask=mask, reduction=reduction)
    check(r, ref.bptt(P, TOK[0], YS[0], mask=mask, reduction=reduction))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16])
def test_small_integer_token_ids_give_the_same_result(dtype, check):
    # token ids are converted to int64: dU's bincount cell index v * H + h would overflow a
    # small integer type
    Dbig, Hbig = 120, 5
    p = RNNParams.init(Dbig, Hbig, K, seed=5)
    tok = np.array([[119, 3, 100, 64, 0, 119], [77, 118, 2, 90, 119, 1]])
    r = bptt(p, tok.astype(dtype), YS)
    assert_identical(r, bptt(p, tok, YS))
    check(r, ref.bptt(p, tok, YS))


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
def test_longdouble_dense_inputs_compute_in_float64():
    # a floating dtype other than float32/float64 computes in float64 (X converted too).
    # Values exactly representable in float64, so the result must be bitwise the float64 one.
    r = bptt(P, DENSE.astype(np.longdouble), YS)
    assert_identical(r, bptt(P, DENSE, YS))


@pytest.mark.skipif(not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")
def test_longdouble_s0_with_float32_params_computes_in_float64():
    # s0 counts in the compute dtype: float32 only when every floating input is float32.
    p32 = P.astype(np.float32)
    s0 = RNG.standard_normal((B, H))
    r = bptt(p32, TOK, YS, s0=s0.astype(np.longdouble))
    assert_identical(r, bptt(p32.astype(np.float64), TOK, YS, s0=s0))


def _terms(dec):
    n = dec.norms()
    return [dec.W.full(), dec.U.full(), dec.b.full(), n.W, n.U, n.b]


def test_float32_decomposition_default_and_integer_s0_are_float32_zeros():
    # s0=None zeros and an integer s0 give the same float32 terms as a float32 s0 (the
    # s_{k-1} rows once were built from s0 directly; now s0 is copied into the float32 states
    # and test_batch_s0_has_the_compute_dtype pins its dtype).
    p32 = P.astype(np.float32)
    Bb = 3
    tok = RNG.integers(0, D, (Bb, T))
    ys = RNG.integers(0, K, (Bb, T))
    base = _terms(decompose(p32, tok, ys, s0=np.zeros((Bb, H), np.float32)))
    for s0 in (None, np.zeros((Bb, H), dtype=np.int64)):
        got = _terms(decompose(p32, tok, ys, s0=s0))
        for a, e in zip(got, base, strict=True):
            assert a.dtype == e.dtype
            np.testing.assert_array_equal(a, e)
    s0_int = RNG.integers(-2, 3, (Bb, H))
    got = _terms(decompose(p32, tok, ys, s0=s0_int))
    for a, e in zip(got, _terms(decompose(p32, tok, ys, s0=s0_int.astype(np.float32))), strict=True):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_float32_loss_is_computed_in_float32(reduction):
    # the weights stay float32 (float64 weights make the loss w @ E_t a float64 dot
    # product): the float32 loss must be a float32 number.
    p32 = P.astype(np.float32)
    r = bptt(p32, TOK, YS, reduction=reduction)
    assert r.loss == float(np.float32(r.loss))


# ---------------------------------------------------------------------------------------------
# the Batch contract (documented in _inputs.Batch). These properties change what prepare
# returns but no public result: gradients use labels only as indices, and an unbatched weight
# is only read as T * B = T values. They are checked on prepare's documented output instead.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_batch_labels_and_token_ids_are_int64(dtype):
    batch = prepare(P, TOK.astype(dtype), YS.astype(dtype), activation="tanh", s0=None)
    assert batch.Y.dtype == np.int64 and batch.tokens.dtype == np.int64
    np.testing.assert_array_equal(batch.Y, YS.T)
    np.testing.assert_array_equal(batch.tokens, TOK.T)


def test_batch_without_labels_has_no_labels_and_no_weight():
    batch = prepare(P, TOK, None, activation="tanh", s0=None, labels_required=False)
    assert batch.Y is None and batch.weight is None


def test_batch_weight_of_unbatched_mask_is_time_by_one():
    # an unbatched (T,) mask is given its batch axis
    mask = np.array([True, False, True, True, False, True])
    batch = prepare(P, TOK[0], YS[0], activation="tanh", s0=None, mask=mask, reduction="mean")
    assert batch.weight.shape == (T, 1)
    np.testing.assert_array_equal(batch.weight[:, 0], mask / mask.sum())


@pytest.mark.parametrize("s0", [None, "int"])
def test_batch_s0_has_the_compute_dtype(s0):
    # s0=None zeros and an integer s0 are in the compute dtype: bptt copies s0 into its
    # float32 states, so no gradient shows it, but Batch documents s0 in the compute dtype
    p32 = P.astype(np.float32)
    s0_arr = None if s0 is None else np.ones((TOK.shape[0], P.hidden_size), dtype=np.int64)
    batch = prepare(p32, TOK, YS, activation="tanh", s0=s0_arr)
    assert batch.dtype == np.float32 and batch.s0.dtype == np.float32
    np.testing.assert_array_equal(batch.s0, 0.0 if s0 is None else 1.0)


# ---------------------------------------------------------------------------------------------
# messages for inputs read another way than meant, whole
# ---------------------------------------------------------------------------------------------
TOKEN_IDS = " (shape (T,) or (B, T), values in [0, D))"


def test_a_single_out_of_range_token_id_is_refused():
    """One step, one id: the range check does not skip arrays of one element."""
    with pytest.raises(ValueError, match=r"^xs: token id 3 at index \(0,\) is outside \[0, D\) with D = 3$"):
        bptt(P, np.array([D]), np.array([0]))
    with pytest.raises(ValueError, match=r"^ys: label 5 at index \(0,\) is outside \[0, K\) with K = 5$"):
        bptt(P, np.array([0]), np.array([K]))


def test_token_ids_passed_as_floats_with_labels_of_their_shape():
    """Float (B, T) with T != D is read as dense (T = B, D = T) and refused for its width, with
    the hint when its entries are whole numbers, without it otherwise."""
    xs = TOK.astype(np.float64)  # (2, 6), D = 3
    msg = f"xs: last axis is {T} but U has D = {D} columns; a float array is read as dense vectors: " \
          f"pass token ids as integers{TOKEN_IDS}"
    with pytest.raises(ValueError) as info:
        bptt(P, xs, YS)
    assert str(info.value) == msg
    with pytest.raises(ValueError) as info:
        bptt(P, xs + 0.5, YS)
    assert str(info.value) == f"xs: last axis is {T} but U has D = {D} columns"
    nan_ids = xs.copy()
    nan_ids[0, 0] = np.nan  # not whole numbers: no hint
    with pytest.raises(ValueError) as info:
        bptt(P, nan_ids, YS)
    assert str(info.value) == f"xs: last axis is {T} but U has D = {D} columns"


def test_float_token_ids_of_width_D_with_labels_of_their_shape_blame_xs():
    """Float (B, T) with T = D reads as dense (T, D): ys of xs's shape is then the wrong shape,
    and the message says why (xs passed token ids as floats), with the shape it needs."""
    xs = RNG.integers(0, D, (4, D)).astype(np.float64)  # (4, 3): read as dense T = 4, D = 3
    ys = RNG.integers(0, K, (4, D))
    want = (
        f"xs: a float array of shape (4, {D}) is read as dense vectors (T, D) = (4, {D}), which needs "
        f"ys of shape (4,), but ys has the shape of xs, as for token ids: pass token ids as an integer "
        f"array (e.g. xs.astype(np.int64)){TOKEN_IDS}"
    )
    with pytest.raises(ValueError) as info:
        bptt(P, xs, ys)
    assert str(info.value) == want
    with pytest.raises(ValueError, match=r"^ys: expected shape \(4,\) to match xs, got \(3, 4\)$"):
        bptt(P, xs, ys.T)  # another wrong shape: the plain message


def test_one_hot_rows_passed_as_integers_blame_xs_only_when_every_row_is_one_hot():
    eye = np.eye(D, dtype=np.int64)[RNG.integers(0, D, 5)]  # (5, 3), one 1 per row
    ys = RNG.integers(0, K, 5)
    want = (
        f"xs: an integer array of shape (5, {D}) is read as (B, T) token ids, but its shape is (T, D) "
        f"with D = {D} (U's columns), every row is one-hot (0/1 entries, a single 1) and ys has shape "
        "(5,): to pass one-hot vectors, give them as float dense input (xs.astype(np.float64)), or as "
        "token ids (xs.argmax(axis=-1))"
    )
    with pytest.raises(ValueError) as info:
        bptt(P, eye, ys)
    assert str(info.value) == want
    plain = r"^ys: expected shape \(5, 3\) to match xs, got \(5,\)$"
    two_ones = eye.copy()
    two_ones[0] = 1  # 0/1 entries, but a row with three 1s
    with pytest.raises(ValueError, match=plain):
        bptt(P, two_ones, ys)
    column_sums_one = np.zeros((D, D), dtype=np.int64)
    column_sums_one[0] = 1  # rows (1, 1, 1), (0, 0, 0), (0, 0, 0): every column sums to 1
    with pytest.raises(ValueError, match=r"^ys: expected shape \(3, 3\) to match xs, got \(3,\)$"):
        bptt(P, column_sums_one, ys[:D])


def test_one_dimensional_floats_are_told_to_be_token_ids():
    with pytest.raises(ValueError) as info:
        bptt(P, TOK[0].astype(np.float64), YS[0])
    assert str(info.value) == (
        f"xs: dense inputs must have shape (T, D) or (B, T, D), got ({T},); token ids must be an "
        f"integer array (e.g. xs.astype(np.int64)){TOKEN_IDS}"
    )
    with pytest.raises(ValueError) as info:
        bptt(P, np.zeros((2, 2, 2, D)), YS)
    assert str(info.value) == f"xs: dense inputs must have shape (T, D) or (B, T, D), got (2, 2, 2, {D})"


def test_a_ragged_input_names_the_exception_numpy_raised():
    with pytest.raises(ValueError, match=r"^xs: cannot be read as an array \(ValueError: "):
        bptt(P, [[0, 1], [2]], YS)


def test_padding_labels_work_with_a_single_class():
    """K = 1: masked positions hold padding (-100); the loss is 0 and every gradient finite."""
    p = RNNParams.init(D, H, 1, seed=1)
    ys = np.zeros((B, T), dtype=np.int64)
    ys[0, 2] = -100
    mask = ys != -100
    r = bptt(p, TOK, ys, mask=mask)
    assert r.loss == 0.0 and all(np.isfinite(a).all() for a in r.grads.arrays())


def test_weights_whose_sum_is_inf_minus_inf_are_checked_without_a_warning():
    """W (16 entries) holds 1e308 at flat indices 0 and 8 and -1e308 at 1 and 9: numpy's
    pairwise sum adds 0 and 8 (inf), 1 and 9 (-inf), then the two (NaN, an "invalid" warning).
    The finiteness check of the parameters takes that silently, then finds every entry finite;
    the states stay 0 (U = 0, s0 = 0)."""
    import warnings

    W = np.zeros((H, H))
    W.flat[[0, 8]] = 1e308
    W.flat[[1, 9]] = -1e308
    p = RNNParams(U=np.zeros((H, D)), W=W, V=np.zeros((K, H)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mb_forward(p, TOK)
    assert r.s.shape == (B, T, H)
