"""Every malformed argument is refused with a ValueError whose message starts with its name, for the
Elman cell (tables of calls) and the gated cells; the well-formed edge cases are accepted.

The Elman cell's problem is elman_inputs' (D = 3, the vocabulary or input size, H = 4, K = 5,
batches of B = 2 sequences of T = 6), the gated cells' conftest.gated_problem's.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual_bptt as mb
from conftest import gated_problem
from elman_inputs import DENSE, MASK, RNG, S0, S0_ROWS, TOK, YS, B, D, H, K, P, T
from manual_bptt import bptt, decompose, forward, rtrl
from manual_bptt.gated_params import GRUParams, LSTMParams, LSTMState

GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


def with_nan(a, value=np.nan, index=None):
    a = np.array(a, dtype=np.float64)
    a[index if index is not None else tuple(s - 1 for s in a.shape)] = value
    return a


# ---------------------------------------------------------------------------------------------
# the Elman cell: one call per malformed argument
# ---------------------------------------------------------------------------------------------


BPTT_CASES = [
    # token ids / labels out of range or of the wrong kind
    ("token id negative", lambda: bptt(P, np.where(TOK == TOK[1, 2], -1, TOK), YS), "xs"),
    ("token id == D", lambda: bptt(P, np.full((B, T), D), YS), "xs"),
    ("token id huge", lambda: bptt(P, np.full(T, 2**40), YS[0]), "xs"),
    ("label negative", lambda: bptt(P, TOK, np.where(YS == YS[0, 3], -1, YS)), "ys"),
    ("label == K", lambda: bptt(P, TOK, np.full((B, T), K)), "ys"),
    ("float labels", lambda: bptt(P, TOK, YS.astype(np.float64)), "ys"),
    ("bool labels", lambda: bptt(P, TOK, YS > 1), "ys"),
    ("ragged labels", lambda: bptt(P, TOK[0, :2], [[0, 1], [2]]), "ys"),
    # float-looking token ids are dense inputs, and then their last axis is not D
    ("float token ids (B, T)", lambda: bptt(P, TOK.astype(np.float64), YS), "xs"),
    ("float token ids (T,)", lambda: bptt(P, TOK[0].astype(np.float64), YS[0]), "xs"),
    ("bool xs", lambda: bptt(P, TOK > 0, YS), "xs"),
    ("complex xs", lambda: bptt(P, DENSE.astype(np.complex128), YS), "xs"),
    ("string xs", lambda: bptt(P, np.array(["a", "b"]), YS[0, :2]), "xs"),
    ("ragged xs", lambda: bptt(P, [[0, 1], [2]], YS), "xs"),
    ("xs None", lambda: bptt(P, None, YS), "xs"),
    ("token ids 3-d", lambda: bptt(P, TOK[None], YS[None]), "xs"),
    ("dense 4-d", lambda: bptt(P, DENSE[None], YS[None]), "xs"),
    ("dense wrong D", lambda: bptt(P, RNG.standard_normal((B, T, D + 1)), YS), "xs"),
    ("dense unbatched wrong D", lambda: bptt(P, RNG.standard_normal((T, D + 2)), YS[0]), "xs"),
    # shapes and lengths that do not match
    ("ys shorter than xs", lambda: bptt(P, TOK, YS[:, :-1]), "ys"),
    ("ys longer than xs", lambda: bptt(P, TOK[:, :-1], YS), "ys"),
    ("ys wrong batch", lambda: bptt(P, TOK, YS[:1]), "ys"),
    ("ys batched, xs not", lambda: bptt(P, TOK[0], YS[:1]), "ys"),
    ("ys unbatched, xs batched", lambda: bptt(P, TOK, YS[0]), "ys"),
    ("ys vs dense xs", lambda: bptt(P, DENSE, YS[:, :-2]), "ys"),
    ("mask wrong length", lambda: bptt(P, TOK, YS, mask=MASK[:, :-1]), "mask"),
    ("mask transposed", lambda: bptt(P, TOK, YS, mask=MASK.T), "mask"),
    ("mask unbatched for batched", lambda: bptt(P, TOK, YS, mask=MASK[0]), "mask"),
    ("mask not bool (int)", lambda: bptt(P, TOK, YS, mask=MASK.astype(np.int64)), "mask"),
    ("mask not bool (float)", lambda: bptt(P, TOK, YS, mask=MASK.astype(np.float64)), "mask"),
    ("mask all False, mean", lambda: bptt(P, TOK, YS, mask=np.zeros((B, T), bool), reduction="mean"), "mask"),
    ("mask without ys", lambda: bptt(P, TOK, None, mask=MASK), "ys"),
    ("s0 wrong H", lambda: bptt(P, TOK, YS, s0=np.zeros(H + 1)), "s0"),
    ("s0 rows wrong H", lambda: bptt(P, TOK, YS, s0=np.zeros((B, H - 1))), "s0"),
    ("s0 (B, H) with unbatched xs", lambda: bptt(P, TOK[0], YS[0], s0=np.zeros((1, H))), "s0"),
    ("s0 wrong B", lambda: bptt(P, TOK, YS, s0=np.zeros((B + 1, H))), "s0"),
    ("s0 scalar", lambda: bptt(P, TOK, YS, s0=np.float64(0.5)), "s0"),
    ("s0 3-d", lambda: bptt(P, TOK, YS, s0=np.zeros((1, B, H))), "s0"),
    ("s0 bool", lambda: bptt(P, TOK, YS, s0=np.ones(H, bool)), "s0"),
    ("s0 ragged", lambda: bptt(P, TOK, YS, s0=[[0.0, 1.0], [2.0]]), "s0"),
    # empty sequences
    ("T = 0 tokens", lambda: bptt(P, np.zeros(0, np.int64), np.zeros(0, np.int64)), "xs"),
    ("T = 0 batched tokens", lambda: bptt(P, np.zeros((B, 0), np.int64), np.zeros((B, 0), np.int64)), "xs"),
    ("T = 0 dense", lambda: bptt(P, np.zeros((0, D)), np.zeros(0, np.int64)), "xs"),
    ("B = 0 tokens", lambda: bptt(P, np.zeros((0, T), np.int64), np.zeros((0, T), np.int64)), "xs"),
    ("B = 0 dense", lambda: bptt(P, np.zeros((0, T, D)), np.zeros((0, T), np.int64)), "xs"),
    # NaN and inf
    ("NaN in xs", lambda: bptt(P, with_nan(DENSE), YS), "xs"),
    ("inf in xs", lambda: bptt(P, with_nan(DENSE, np.inf, (0, 2, 1)), YS), "xs"),
    ("-inf in xs", lambda: bptt(P, with_nan(DENSE, -np.inf, (1, 0, 0)), YS), "xs"),
    ("NaN in s0", lambda: bptt(P, TOK, YS, s0=with_nan(S0)), "s0"),
    ("inf in s0 rows", lambda: bptt(P, TOK, YS, s0=with_nan(S0_ROWS, np.inf)), "s0"),
    *[
        (
            f"{bad} in p.{name}",
            (lambda n=name, v=bad: bptt(P.replace(**{n: with_nan(getattr(P, n), v)}), TOK, YS)),
            rf"p\.{name}",
        )
        for name in ("U", "W", "V", "b", "c")
        for bad in (np.nan, np.inf)
    ],
    # truncate, activation, reduction, p
    ("truncate negative", lambda: bptt(P, TOK, YS, truncate=-1), "truncate"),
    ("truncate float", lambda: bptt(P, TOK, YS, truncate=2.0), "truncate"),
    ("truncate bool", lambda: bptt(P, TOK, YS, truncate=True), "truncate"),
    ("truncate string", lambda: bptt(P, TOK, YS, truncate="3"), "truncate"),
    ("truncate numpy float", lambda: bptt(P, TOK, YS, truncate=np.float64(1)), "truncate"),
    ("unknown activation", lambda: bptt(P, TOK, YS, activation="softplus"), "activation"),
    ("activation wrong case", lambda: bptt(P, TOK, YS, activation="Tanh"), "activation"),
    ("unknown reduction", lambda: bptt(P, TOK, YS, reduction="avg"), "reduction"),
    ("reduction None", lambda: bptt(P, TOK, YS, reduction=None), "reduction"),
    ("p not RNNParams", lambda: bptt({"U": P.U, "W": P.W, "V": P.V}, TOK, YS), "p"),
]


@pytest.mark.parametrize(("case", "call", "arg"), BPTT_CASES, ids=[c[0] for c in BPTT_CASES])
def test_malformed_bptt_call_raises_value_error_naming_the_argument(case, call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()


def test_gradient_functions_without_labels_name_ys():
    for fn in (bptt, decompose, rtrl):
        with pytest.raises(ValueError, match=r"^ys\b"):
            fn(P, TOK, None)


FORWARD_CASES = [
    ("token id out of range", lambda: forward(P, np.full(T, D)), "xs"),
    ("dense wrong D", lambda: forward(P, np.zeros((T, D + 1))), "xs"),
    ("s0 wrong H", lambda: forward(P, TOK, s0=np.zeros(H + 1)), "s0"),
    ("NaN in xs", lambda: forward(P, with_nan(DENSE)), "xs"),
    ("unknown activation", lambda: forward(P, TOK, activation="gelu"), "activation"),
    ("T = 0", lambda: forward(P, np.zeros((B, 0), np.int64)), "xs"),
]


@pytest.mark.parametrize(("case", "call", "arg"), FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_malformed_forward_call_raises_value_error_naming_the_argument(case, call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()


def test_messages_are_specific():
    """Spot checks that messages say what is wrong and where, not only which argument."""
    bad = TOK.copy()
    bad[1, 4] = D
    with pytest.raises(ValueError, match=r"xs: token id 3 at index \(1, 4\) is outside \[0, D\) with D = 3"):
        bptt(P, bad, YS)
    bad_y = YS.copy()
    bad_y[0, 2] = -2
    with pytest.raises(ValueError, match=r"ys: label -2 at index \(0, 2\)"):
        bptt(P, TOK, bad_y)
    # float-looking token ids: read as dense (B, T) -> (T = B, D = T) inputs, so D mismatches
    with pytest.raises(ValueError, match=rf"xs: last axis is {T} but U has D = {D}"):
        bptt(P, TOK.astype(np.float64), YS)
    with pytest.raises(ValueError, match=r"xs: dense inputs must have shape \(T, D\) or \(B, T, D\)"):
        bptt(P, TOK[0].astype(np.float64), YS[0])
    with pytest.raises(ValueError, match=r"xs: contains NaN or inf \(first at index \(1, 5, 2\)\)"):
        bptt(P, with_nan(DENSE), YS)
    with pytest.raises(ValueError, match=r"p\.W: contains NaN or inf"):
        bptt(P.replace(W=with_nan(P.W, np.inf, (2, 1))), TOK, YS)


def test_valid_edge_cases_are_accepted():
    """The validation is not over-eager: these are all well-formed."""
    bptt(P, TOK, YS, truncate=0)
    bptt(P, TOK, YS, truncate=np.int64(2))  # numpy integers are integers
    bptt(P, TOK, YS, mask=np.zeros((B, T), bool), reduction="sum")  # nothing counted: loss 0
    bptt(P, TOK.astype(np.uint8), YS.astype(np.int32))  # any integer dtype
    bptt(P, TOK[0].tolist(), YS[0].tolist())  # plain lists
    bptt(P, TOK, YS, s0=np.zeros(H, np.int64))  # integer s0 is a real array
    bptt(P, np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64))  # T = B = 1
    r = bptt(P, TOK, YS, mask=np.zeros((B, T), bool))
    assert r.loss == 0.0 and not np.any(r.grads.W)


def test_integer_arg_takes_zero_and_up_by_default_and_refuses_bools():
    from manual_bptt.errors import integer_arg

    assert integer_arg("n", 0) == 0 and integer_arg("n", np.int32(7)) == 7
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, got -1$"):
        integer_arg("n", -1)
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, got True$"):
        integer_arg("n", True)
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 2, got 1$"):
        integer_arg("n", 1, 2)


# ---------------------------------------------------------------------------------------------
# the gated cells
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_an_activation_is_refused_for_a_gated_cell(cls, activation):
    p, xs, ys, _ = gated_problem(cls)
    with pytest.raises(ValueError, match=r"^activation:"):
        mb.bptt(p, xs, ys, activation=activation)


def test_params_of_another_model_are_refused():
    """An object with a gated cell's fields that is not one of the params types reaches no cell:
    every function refuses it, naming p (the one table, manual_bptt.kinds, has no row for it)."""
    from types import SimpleNamespace

    q = GRUParams.init(3, 2, 3, seed=0)
    p = SimpleNamespace(**dict(q.items()))
    xs, ys = np.zeros((4, 3)), np.zeros(4, int)
    want = r"^p: expected manual_bptt.RNNParams, GRUParams, LSTMParams or StackParams, got SimpleNamespace$"
    calls = [
        lambda: mb.bptt(p, xs, ys),
        lambda: mb.forward(p, xs),
        lambda: mb.backward(p, xs, np.ones((4, 2))),
        lambda: mb.decompose(p, xs, ys),
        lambda: mb.rtrl(p, xs, ys),
        lambda: mb.state_jacobian(p, xs, 1, 0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=want):
            call()


@pytest.mark.parametrize(
    "s0, match",
    [
        (np.zeros((2, 2, 2)), "pair"),  # an array, not a pair
        ([np.zeros((2, 2)), np.zeros((2, 2))], "pair"),  # a list, not a tuple
        ((np.zeros((2, 2)),), "pair"),  # one part
        ((np.zeros((2, 2)),) * 3, "pair"),  # three parts
        ((np.zeros((2, 2)), np.zeros(2)), "same shape"),  # parts of different shapes
        ((np.zeros(2), np.zeros((2, 2))), "same shape"),
        ((np.zeros(3), np.zeros(3)), "shape"),  # H = 2
        ((np.zeros(2), np.array([0.0, np.nan])), "NaN"),
        ((np.zeros(2), np.array(["a", "b"])), "numeric"),
    ],
)
def test_a_bad_lstm_initial_state_is_refused_naming_s0(s0, match):
    p, xs, ys, _ = gated_problem(LSTMParams)
    with pytest.raises(ValueError, match=rf"^s0:.*{match}"):
        mb.bptt(p, xs, ys, s0=s0)


@pytest.mark.parametrize(
    "s0, match",
    [
        (LSTMState(np.zeros(2), np.zeros(2)), "LSTMState"),
        (np.zeros(3), "shape"),
        (np.zeros((3, 2)), "shape"),  # B = 2
        (np.array([np.inf, 0.0]), "NaN or inf"),
    ],
)
def test_a_bad_gru_initial_state_is_refused_naming_s0(s0, match):
    p, xs, ys, _ = gated_problem(GRUParams)
    with pytest.raises(ValueError, match=rf"^s0:.*{match}"):
        mb.bptt(p, xs, ys, s0=s0)


@pytest.mark.parametrize("cls", GATED)
def test_unbatched_xs_refuses_a_batched_s0(cls):
    p, xs, ys, s0 = gated_problem(cls)
    with pytest.raises(ValueError, match=r"^s0:.*shape"):
        mb.bptt(p, xs[0], ys[0], s0=s0)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"truncate": -1}, "truncate"),
        ({"truncate": 1.5}, "truncate"),
        ({"reduction": "max"}, "reduction"),
        ({"mask": np.ones(3, bool)}, "mask"),
        ({"max_bytes": -1}, "max_bytes"),
    ],
)
def test_bad_arguments_are_refused_by_name(cls, kwargs, name):
    p, xs, ys, _ = gated_problem(cls)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        mb.bptt(p, xs, ys, **kwargs)


@pytest.mark.parametrize("cls", GATED)
def test_bad_xs_and_ys_are_refused_by_name(cls):
    p, xs, ys, _ = gated_problem(cls)
    with pytest.raises(ValueError, match=r"^xs:"):
        mb.bptt(p, xs[..., :2], ys)
    with pytest.raises(ValueError, match=r"^ys:"):
        mb.bptt(p, xs, ys + 10)
    with pytest.raises(ValueError, match=r"^xs:"):
        mb.forward(p, np.full((2, 3), 99))
