"""Input errors point at the argument that is wrong, with a hint that fits the likely mistake.

Sizes: D = 4 (so that a (1, 4) float array is a valid (T, D) dense input), H = 3, K = 5.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb

D, H, K, T = 4, 3, 5, 6
P = mb.RNNParams.init(D, H, K, seed=8)
RNG = np.random.default_rng(9)
IDS = RNG.integers(0, D, T)
YS = RNG.integers(0, K, T)


def test_float_token_ids_of_shape_T_get_a_hint_to_pass_integers():
    msg = r"^xs: dense inputs must have shape .* token ids must be an integer"
    with pytest.raises(ValueError, match=msg):
        mb.bptt(P, IDS.astype(np.float64), YS)


def test_float_token_ids_of_shape_1_by_4_are_blamed_on_xs_not_ys():
    ids = np.array([[0.0, 1.0, 2.0, 3.0]])  # (1, 4): read as dense (T, D) = (1, 4) since D = 4
    with pytest.raises(ValueError, match=r"^xs: a float array of shape \(1, 4\) is read as dense vectors"):
        mb.bptt(P, ids, np.array([[1, 2, 3, 4]]))


def test_float_batched_token_ids_of_another_width_get_the_integer_hint():
    ids = RNG.integers(0, D, (2, T)).astype(np.float64)  # last axis T = 6 != D
    with pytest.raises(ValueError, match=r"^xs: last axis is 6 but U has D = 4 columns; .*as integers"):
        mb.bptt(P, ids, RNG.integers(0, K, (2, T)))


def test_integer_one_hot_rows_are_explained_not_read_as_token_ids():
    one_hot = np.eye(D, dtype=np.int64)[IDS]  # (T, D) = (6, 4), read as (B, T) = (6, 4) ids
    with pytest.raises(ValueError, match=r"^xs: an integer array of shape \(6, 4\) is read as \(B, T\) token "
                                         r"ids.*one-hot.*xs\.astype\(np\.float64\).*xs\.argmax\(axis=-1\)"):
        mb.bptt(P, one_hot, YS)
    # both suggested ways give the same, correct result
    a = mb.bptt(P, one_hot.astype(np.float64), YS)
    b = mb.bptt(P, one_hot.argmax(axis=-1), YS)
    assert abs(a.loss - b.loss) <= 1e-12 * abs(b.loss)


def test_genuine_batched_token_ids_with_one_hot_looking_rows_still_work():
    ids = np.eye(D, dtype=np.int64)[[0, 1, 2, 3]]  # (B, T) = (4, 4), every row one-hot, T = D
    ys = RNG.integers(0, K, (4, D))  # (B, T) labels: the token reading is the one meant
    r = mb.bptt(P, ids, ys)
    assert r.final_state.shape == (4, H) and np.isfinite(r.loss)
    assert mb.forward(P, ids).s.shape == (4, D, H)  # forward has no labels to tell: tokens


def test_an_integer_array_that_is_not_one_hot_keeps_the_ys_message():
    ids = RNG.integers(0, D, (T, D)) * 0 + 2  # (T, D) of 2s: not one-hot
    with pytest.raises(ValueError, match=r"^ys: expected shape \(6, 4\) to match xs"):
        mb.bptt(P, ids, YS)
