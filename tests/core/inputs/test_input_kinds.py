"""Input kinds that used to be accepted, or refused with the wrong words, and labels under a mask.

- timedelta64, datetime64, complex, bool and object arrays are refused as token ids, labels and
  parameters (numpy files timedelta64 under its integer types: it used to pass as integers).
- numpy masked arrays are refused (np.asarray drops their mask), with a pointer to mask=.
- a tensor that requires grad is refused by RNNParams with a ValueError naming the parameter
  (found by duck typing: manual_bptt never imports torch).
- token ids and labels of every integer width are range-checked, and small integer ids give the
  int64 result.
- labels where the mask is False may be any integer (padding such as -100): they contribute
  nothing; labels where it is True must be in [0, K).

The problem is elman_inputs' (D = 3, H = 4, K = 5, B = 2, T = 6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference as ref
from conftest import assert_identical
from elman_inputs import MASK, TOK, YS, B, D, H, K, P, T
from manual_bptt import RNNParams, bptt
from manual_bptt.testing import result_fields

BAD_KINDS = {
    "timedelta64": lambda a: a.astype("timedelta64[s]"),
    "datetime64": lambda a: a.astype("datetime64[s]"),
    "complex": lambda a: a.astype(np.complex128),
    "bool": lambda a: a.astype(bool),
    "object": lambda a: a.astype(object),
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_token_ids_of_a_non_numeric_kind_are_refused(kind):
    with pytest.raises(ValueError, match=r"^xs\b"):
        bptt(P, BAD_KINDS[kind](TOK), YS)


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_labels_of_a_non_numeric_kind_are_refused(kind):
    with pytest.raises(ValueError, match=r"^ys\b"):
        bptt(P, TOK, BAD_KINDS[kind](YS))


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
@pytest.mark.parametrize("name", ["U", "W", "b"])
def test_parameters_of_a_non_numeric_kind_are_refused(kind, name):
    ints = np.asarray(getattr(P, name) * 10, dtype=np.int64)
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        P.replace(**{name: BAD_KINDS[kind](ints)})


@pytest.mark.parametrize(
    ("arg", "call"),
    [
        ("xs", lambda m: bptt(P, m(TOK), YS)),
        ("ys", lambda m: bptt(P, TOK, m(YS))),
        ("mask", lambda m: bptt(P, TOK, YS, mask=m(MASK))),
        ("s0", lambda m: bptt(P, TOK, YS, s0=m(np.zeros(H)))),
        ("W", lambda m: P.replace(W=m(P.W))),
    ],
)
def test_masked_arrays_are_refused_with_a_pointer_to_mask(arg, call):
    def masked(a):
        return np.ma.masked_array(a, mask=np.zeros(np.shape(a), bool))

    with pytest.raises(ValueError, match=rf"^{arg}: a numpy masked array.*mask="):
        call(masked)


def test_a_tensor_that_requires_grad_is_refused_naming_the_parameter():
    U = torch.zeros((H, D), dtype=torch.float64, requires_grad=True)
    msg = r"^U: a Tensor that requires grad: pass value\.detach\(\)\.numpy\(\)$"
    with pytest.raises(ValueError, match=msg):
        RNNParams(U=U, W=P.W, V=P.V)
    with pytest.raises(ValueError, match=r"^xs: a Tensor that requires grad"):
        bptt(P, torch.zeros((T, D), dtype=torch.float64, requires_grad=True), YS[0])
    p = RNNParams(U=U.detach(), W=P.W, V=P.V)  # detached: a plain float64 copy
    assert p.U.dtype == np.float64 and not p.U.any()


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


# ---------------------------------------------------------------------------------------------
# labels under a mask
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [-100, -1, K, 2**40])
def test_labels_where_the_mask_is_false_may_be_any_integer_and_count_for_nothing(pad, check):
    padded = np.where(MASK, YS, pad)
    r = bptt(P, TOK, padded, mask=MASK, reduction="mean")
    same = bptt(P, TOK, np.where(MASK, YS, 0), mask=MASK, reduction="mean")
    for (name, a), (_, e) in zip(result_fields(r), result_fields(same), strict=True):
        assert np.array_equal(a, e), name
    check(r, ref.bptt(P, TOK, np.where(MASK, YS, 0), mask=MASK, reduction="mean"))
    assert np.array_equal(padded, np.where(MASK, YS, pad))  # the caller's labels are unchanged


def test_labels_where_the_mask_is_true_must_still_be_in_range():
    bad = YS.copy()
    bad[0, 0] = -100  # MASK[0, 0] is True
    msg = r"^ys: label -100 at index \(0, 0\) where mask is True is outside \[0, K\)"
    with pytest.raises(ValueError, match=msg):
        bptt(P, TOK, bad, mask=MASK)
    with pytest.raises(ValueError, match=r"^ys: label -100 at index \(0, 0\) is outside"):
        bptt(P, TOK, bad)


def test_padding_labels_work_with_a_single_class():
    """K = 1: masked positions hold padding (-100); the loss is 0 and every gradient finite."""
    p = RNNParams.init(D, H, 1, seed=1)
    ys = np.zeros((B, T), dtype=np.int64)
    ys[0, 2] = -100
    mask = ys != -100
    r = bptt(p, TOK, ys, mask=mask)
    assert r.loss == 0.0 and all(np.isfinite(a).all() for a in r.grads.arrays())
