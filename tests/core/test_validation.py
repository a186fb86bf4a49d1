"""Malformed calls raise ValueError naming the argument; inputs are never modified; no hidden state.

Sizes: D = 3 (vocabulary / input size), H = 4, K = 5, batches of B = 2 sequences of T = 6.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import manual_bptt as mb
from manual_bptt import RNNParams, bptt, decompose, forward, rtrl
from manual_bptt.testing import result_fields

D, H, K, B, T = 3, 4, 5, 2, 6
RNG = np.random.default_rng(1234)
P = RNNParams.init(D, H, K, seed=3)
TOK = RNG.integers(0, D, (B, T))  # (B, T) token ids
DENSE = RNG.standard_normal((B, T, D))  # (B, T, D)
YS = RNG.integers(0, K, (B, T))  # (B, T) labels
S0 = RNG.standard_normal(H)
S0_ROWS = RNG.standard_normal((B, H))
MASK = RNG.random((B, T)) < 0.6
MASK[0, 0] = True


def with_nan(a, value=np.nan, index=None):
    a = np.array(a, dtype=np.float64)
    a[index if index is not None else tuple(s - 1 for s in a.shape)] = value
    return a


# (id, call, argument name the message must start with)
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


# ---------------------------------------------------------------------------------------------
# RNNParams construction
# ---------------------------------------------------------------------------------------------
U, W, V, b, c = P.U, P.W, P.V, P.b, P.c
PARAMS_CASES = [
    ("U 1-d", lambda: RNNParams(U=U[0], W=W, V=V), "U"),
    ("U 3-d", lambda: RNNParams(U=U[None], W=W, V=V), "U"),
    ("U empty", lambda: RNNParams(U=np.zeros((0, D)), W=np.zeros((0, 0)), V=np.zeros((K, 0))), "U"),
    ("U None", lambda: RNNParams(U=None, W=W, V=V), "U"),
    ("U bool", lambda: RNNParams(U=U > 0, W=W, V=V), "U"),
    ("U complex", lambda: RNNParams(U=U.astype(np.complex128), W=W, V=V), "U"),
    ("W not square", lambda: RNNParams(U=U, W=W[:, :-1], V=V), "W"),
    ("W wrong H", lambda: RNNParams(U=U, W=np.eye(H + 1), V=V), "W"),
    ("W transposed U-shape", lambda: RNNParams(U=U, W=U, V=V), "W"),
    ("W None", lambda: RNNParams(U=U, W=None, V=V), "W"),
    ("V wrong H", lambda: RNNParams(U=U, W=W, V=np.zeros((K, H + 1))), "V"),
    ("V transposed", lambda: RNNParams(U=U, W=W, V=V.T), "V"),
    ("V 1-d", lambda: RNNParams(U=U, W=W, V=V[0]), "V"),
    ("V no classes", lambda: RNNParams(U=U, W=W, V=np.zeros((0, H))), "V"),
    ("b wrong length", lambda: RNNParams(U=U, W=W, V=V, b=np.zeros(H + 1)), "b"),
    ("b column", lambda: RNNParams(U=U, W=W, V=V, b=b[:, None]), "b"),
    ("b of length K", lambda: RNNParams(U=U, W=W, V=V, b=c), "b"),
    ("b strings", lambda: RNNParams(U=U, W=W, V=V, b=np.array(["x"] * H)), "b"),
    ("c wrong length", lambda: RNNParams(U=U, W=W, V=V, c=np.zeros(K - 1)), "c"),
    ("c of length H", lambda: RNNParams(U=U, W=W, V=V, c=b), "c"),
    ("c scalar", lambda: RNNParams(U=U, W=W, V=V, c=np.float64(1.0)), "c"),
    ("init input_size 0", lambda: RNNParams.init(0, H, K), "input_size"),
    ("init hidden_size float", lambda: RNNParams.init(D, 4.0, K), "hidden_size"),
    ("init output_size bool", lambda: RNNParams.init(D, H, True), "output_size"),
    ("init weight_scale NaN", lambda: RNNParams.init(D, H, K, weight_scale=np.nan), "weight_scale"),
    ("astype int", lambda: P.astype(np.int32), "dtype"),
    ("replace unknown", lambda: P.replace(Z=U), "replace"),
]


@pytest.mark.parametrize(("case", "call", "arg"), PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_inconsistent_params_raise_value_error_naming_the_parameter(case, call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()


@pytest.mark.parametrize("name", ["U", "W"])
def test_ragged_parameter_names_the_parameter(name):
    arrays = {"U": U, "W": W, "V": V, name: [[1.0, 2.0], [3.0]]}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        RNNParams(**arrays)


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


# ---------------------------------------------------------------------------------------------
# Inputs are never modified; results never alias inputs; RNNParams is immutable
# ---------------------------------------------------------------------------------------------
def snapshot(*arrays):
    return [(a.dtype, a.shape, a.tobytes(), a.flags.writeable) for a in arrays]


@pytest.mark.parametrize("activation", sorted(mb.ACTIVATIONS))
@pytest.mark.parametrize("truncate", [None, 2])
def test_caller_arrays_are_untouched(activation, truncate):
    U0, W0, V0, b0, c0 = (RNG.standard_normal(s) for s in ((H, D), (H, H), (K, H), (H,), (K,)))
    p = RNNParams(U=U0, W=W0, V=V0, b=b0, c=c0)
    inputs = {"xs": DENSE.copy(), "ys": YS.copy(), "s0": S0_ROWS.copy(), "mask": MASK.copy()}
    tok = TOK.copy()
    everything = [U0, W0, V0, b0, c0, tok, *inputs.values()]
    before = snapshot(*everything)
    p_before = copy.deepcopy([a.copy() for a in p.arrays()])

    r = bptt(p, inputs["xs"], inputs["ys"], activation=activation, s0=inputs["s0"],
             truncate=truncate, reduction="mean", mask=inputs["mask"])
    r_tok = bptt(p, tok, inputs["ys"], activation=activation, s0=S0.copy(), truncate=truncate)
    fw = forward(p, inputs["xs"], activation=activation, s0=inputs["s0"])

    assert snapshot(*everything) == before
    assert all(np.array_equal(a, b) for a, b in zip(p.arrays(), p_before, strict=True))
    # results share no memory with any input, so writing to them cannot reach the caller
    outputs = [a for _, a in result_fields(r) + result_fields(r_tok) if a is not None]
    outputs += [fw.a, fw.s, fw.o, fw.y_hat, fw.final_state]
    for out in outputs:
        for inp in [*everything, *p.arrays()]:
            assert not np.shares_memory(out, inp)


def test_params_copy_their_inputs_and_are_read_only():
    U0 = RNG.standard_normal((H, D))
    b0 = RNG.standard_normal(H)
    p = RNNParams(U=U0, W=W, V=V, b=b0, c=c)
    U_saved, b_saved = U0.copy(), b0.copy()
    U0[0, 0] += 1.0  # mutate what was passed in
    b0[:] = 0.0
    assert np.array_equal(p.U, U_saved) and np.array_equal(p.b, b_saved)
    for name, a in p.items():
        assert not a.flags.writeable, f"p.{name} is writeable"
        with pytest.raises(ValueError, match="read-only"):
            a[(0,) * a.ndim] = 1.0
    with pytest.raises(AttributeError):
        p.U = U0  # frozen dataclass
    # a list input works and is copied too
    q = RNNParams(U=U_saved.tolist(), W=W, V=V)
    assert np.array_equal(q.U, U_saved) and not q.U.flags.writeable
    # replace / astype give new objects and leave p alone
    p2 = p.replace(W=np.zeros((H, H)))
    assert np.array_equal(p.W, W) and not np.any(p2.W)
    assert p.astype(np.float32).U.dtype == np.float32 and p.U.dtype == np.float64
    # gradients are RNNParams too, read-only as well
    g = bptt(p, TOK, YS).grads
    assert all(not a.flags.writeable for a in g.arrays())


# ---------------------------------------------------------------------------------------------
# No hidden state
# ---------------------------------------------------------------------------------------------
def all_bytes(r):
    return [
        (n, None if a is None else (a.dtype, a.shape, np.asarray(a).tobytes())) for n, a in result_fields(r)
    ]


@pytest.mark.parametrize("truncate", [None, 1])
def test_identical_calls_give_identical_results(truncate):
    kw = {"activation": "tanh", "s0": S0_ROWS, "mask": MASK, "truncate": truncate, "reduction": "mean"}
    first = all_bytes(bptt(P, DENSE, YS, **kw))
    second = all_bytes(bptt(P, DENSE, YS, **kw))
    assert first == second


def test_a_call_does_not_depend_on_a_previous_call():
    """Run A, then unrelated calls B (other sizes, dtype, activation, float32), then A
    again: bitwise the same. A layer that kept its state would continue from B."""
    kw = {"activation": "sigmoid", "s0": S0, "truncate": None}
    a1 = all_bytes(bptt(P, TOK, YS, **kw))
    fa1 = forward(P, TOK, activation="sigmoid", s0=S0).final_state.copy()
    other = RNNParams.init(7, 2, 3, seed=9)
    bptt(other, RNG.standard_normal((3, 11, 7)), RNG.integers(0, 3, (3, 11)), activation="relu", truncate=3)
    bptt(P.astype(np.float32), DENSE.astype(np.float32), YS, s0=S0_ROWS.astype(np.float32))
    forward(P, DENSE, activation="identity", s0=S0_ROWS)
    assert all_bytes(bptt(P, TOK, YS, **kw)) == a1
    assert np.array_equal(forward(P, TOK, activation="sigmoid", s0=S0).final_state, fa1)
    # and the result does not depend on whether the call comes first in the process
    assert all_bytes(bptt(P, TOK, YS, **kw)) == a1


def test_integer_arg_takes_zero_and_up_by_default_and_refuses_bools():
    from manual_bptt.errors import integer_arg

    assert integer_arg("n", 0) == 0 and integer_arg("n", np.int32(7)) == 7
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, got -1$"):
        integer_arg("n", -1)
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 0, got True$"):
        integer_arg("n", True)
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 2, got 1$"):
        integer_arg("n", 1, 2)
