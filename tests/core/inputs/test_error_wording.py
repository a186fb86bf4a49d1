"""The words of the input errors: each names the argument, what is wrong and where (the first bad
element's index, the shapes allowed), whole; an input read another way than meant (token ids as
floats, one-hot rows as integers) is blamed on xs, with a hint that fits the likely mistake.

The problem is elman_inputs' (D = 3, H = 4, K = 5, B = 2, T = 6); the hints' is Wide's (D = 4).
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
from elman_inputs import RNG, TOK, YS, B, D, H, K, P, T
from manual_bptt import RNNParams, bptt
from manual_bptt._inputs import prepare

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
    want = r"^p: expected manual_bptt.RNNParams, GRUParams, LSTMParams or StackParams, got dict$"
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


# ---------------------------------------------------------------------------------------------
# hints that fit the likely mistake
# ---------------------------------------------------------------------------------------------


class Wide:
    """The problem of the hints: D = 4, so that a (1, 4) float array is a valid (T, D) dense input;
    H = 3, K = 5, unbatched sequences of T = 6."""

    D, H, K, T = 4, 3, 5, 6
    P = RNNParams.init(D, H, K, seed=8)
    RNG = np.random.default_rng(9)
    IDS = RNG.integers(0, D, T)
    YS = RNG.integers(0, K, T)


def test_float_token_ids_of_shape_T_get_a_hint_to_pass_integers():
    msg = r"^xs: dense inputs must have shape .* token ids must be an integer"
    with pytest.raises(ValueError, match=msg):
        mb.bptt(Wide.P, Wide.IDS.astype(np.float64), Wide.YS)


def test_float_token_ids_of_shape_1_by_4_are_blamed_on_xs_not_ys():
    ids = np.array([[0.0, 1.0, 2.0, 3.0]])  # (1, 4): read as dense (T, D) = (1, 4) since D = 4
    with pytest.raises(ValueError, match=r"^xs: a float array of shape \(1, 4\) is read as dense vectors"):
        mb.bptt(Wide.P, ids, np.array([[1, 2, 3, 4]]))


def test_float_batched_token_ids_of_another_width_get_the_integer_hint():
    ids = Wide.RNG.integers(0, Wide.D, (2, Wide.T)).astype(np.float64)  # last axis T = 6 != D
    with pytest.raises(ValueError, match=r"^xs: last axis is 6 but U has D = 4 columns; .*as integers"):
        mb.bptt(Wide.P, ids, Wide.RNG.integers(0, Wide.K, (2, Wide.T)))


def test_integer_one_hot_rows_are_explained_not_read_as_token_ids():
    one_hot = np.eye(Wide.D, dtype=np.int64)[Wide.IDS]  # (T, D) = (6, 4), read as (B, T) = (6, 4) ids
    with pytest.raises(ValueError, match=r"^xs: an integer array of shape \(6, 4\) is read as \(B, T\) token "
                                         r"ids.*one-hot.*xs\.astype\(np\.float64\).*xs\.argmax\(axis=-1\)"):
        mb.bptt(Wide.P, one_hot, Wide.YS)
    # both suggested ways give the same, correct result
    a = mb.bptt(Wide.P, one_hot.astype(np.float64), Wide.YS)
    b = mb.bptt(Wide.P, one_hot.argmax(axis=-1), Wide.YS)
    assert abs(a.loss - b.loss) <= 1e-12 * abs(b.loss)


def test_genuine_batched_token_ids_with_one_hot_looking_rows_still_work():
    ids = np.eye(Wide.D, dtype=np.int64)[[0, 1, 2, 3]]  # (B, T) = (4, 4), every row one-hot, T = D
    ys = Wide.RNG.integers(0, Wide.K, (4, Wide.D))  # (B, T) labels: the token reading is the one meant
    r = mb.bptt(Wide.P, ids, ys)
    assert r.final_state.shape == (4, Wide.H) and np.isfinite(r.loss)
    assert mb.forward(Wide.P, ids).s.shape == (4, Wide.D, Wide.H)  # forward has no labels to tell: tokens


def test_an_integer_array_that_is_not_one_hot_keeps_the_ys_message():
    ids = Wide.RNG.integers(0, Wide.D, (Wide.T, Wide.D)) * 0 + 2  # (T, D) of 2s: not one-hot
    with pytest.raises(ValueError, match=r"^ys: expected shape \(6, 4\) to match xs"):
        mb.bptt(Wide.P, ids, Wide.YS)
