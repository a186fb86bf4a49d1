"""Input kinds that used to be accepted, or refused with the wrong words, and padding labels.

- timedelta64, datetime64, complex, bool and object arrays are refused as token ids, labels and
  parameters (numpy files timedelta64 under its integer types: it used to pass as integers).
- numpy masked arrays are refused (np.asarray drops their mask), with a pointer to mask=.
- a tensor that requires grad is refused by RNNParams with a ValueError naming the parameter
  (found by duck typing: manual_bptt never imports torch).
- RNNParams.init refuses bad seed, weight_scale and dtype values naming the argument.
- labels where the mask is False may be any integer (padding such as -100): they contribute
  nothing; labels where it is True must be in [0, K).

Sizes: D = 3, H = 4, K = 5, B = 2, T = 6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference as ref
from manual_bptt import RNNParams, bptt
from manual_bptt.testing import result_fields

D, H, K, B, T = 3, 4, 5, 2, 6
RNG = np.random.default_rng(77)
P = RNNParams.init(D, H, K, seed=4)
TOK = RNG.integers(0, D, (B, T))
YS = RNG.integers(0, K, (B, T))
MASK = RNG.random((B, T)) < 0.5
MASK[0, 0] = True

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


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "a"}, "seed"),
        ({"seed": True}, "seed"),
        ({"weight_scale": "1"}, "weight_scale"),
        ({"weight_scale": None}, "weight_scale"),
        ({"weight_scale": 1j}, "weight_scale"),
        ({"weight_scale": np.ones(2)}, "weight_scale"),
        ({"weight_scale": -0.5}, "weight_scale"),
        ({"weight_scale": np.inf}, "weight_scale"),
        ({"dtype": "bogus"}, "dtype"),
        ({"dtype": np.int64}, "dtype"),
    ],
)
def test_init_names_the_bad_argument(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        RNNParams.init(D, H, K, **kwargs)


def test_init_accepts_numpy_integers_and_floats():
    a = RNNParams.init(D, H, K, seed=np.int64(3), weight_scale=np.float32(0.5))
    b = RNNParams.init(D, H, K, seed=3, weight_scale=0.5)
    assert np.array_equal(a.W, b.W)


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
