"""Edge cases of the gated cells' calls (manual_bptt.gated, through the public API).

    the size limit   exactly T * (B * (k*H + K [+ 2*D]) + ceil(1024 / itemsize)) numbers of the
                     compute dtype, k = 15 (GRU) or 21 (LSTM), one more for the layer backward's
                     outputs: a limit of exactly that many bytes runs, one byte less is refused,
                     with the message that names the call, the cell, the count and what to do
    overflow         the quantity that stopped being finite is named (o_t for forward's logits,
                     dE/dgh_t for the backward recursion), with its step and what to do
    forward's y_hat  softmax(o_t) per row, shifted by the row's own maximum: logits in the
                     thousands give torch.softmax's values, never NaN
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import manual_bptt as mb
from conftest import gated_problem
from manual_bptt.errors import NonFiniteError, TooLargeError
from manual_bptt.gated_params import GRUParams, LSTMParams
from manual_bptt.testing import assert_close

CELLS = {"gru": mb.GRUParams, "lstm": mb.LSTMParams}
ROW_NUMBERS = {"gru": 15, "lstm": 21}
HINT = "split the sequence into chunks (pass final_state on as s0), or pass a larger max_bytes"


def inputs(cell, *, tokens, dtype, T=7, B=3, D=4, H=5, K=6, seed=0):
    rng = np.random.default_rng(seed)
    p = CELLS[cell].init(D, H, K, seed=seed).astype(dtype)
    xs = rng.integers(0, D, (B, T)) if tokens else rng.standard_normal((B, T, D)).astype(dtype)
    ys = rng.integers(0, K, (B, T))
    dhs = rng.standard_normal((B, T, H)).astype(dtype)
    return p, xs, ys, dhs


def expected_refusal(call, cell, *, tokens, dtype, limit, T=7, B=3, D=4, H=5, K=6):
    """(bytes needed, the exact TooLargeError message for ``limit``)."""
    k = ROW_NUMBERS[cell] + (call == "backward")
    item = np.dtype(dtype).itemsize
    dense = 0 if tokens else 2 * D
    per_step = B * (k * H + K + dense) + -(-1024 // item)
    need = T * per_step * item
    message = (
        f"{call} ({cell}): the states, caches, gradients and logits, T steps of "
        f"B*({k}*H + K{'' if tokens else ' + 2*D'}) numbers and 1024 bytes of cache objects each: "
        f"an array of shape ({T}, {per_step}) would take {need} bytes ({need / 2**20:.1f} MiB), over the "
        f"limit of {limit} bytes ({limit / 2**20:.1f} MiB, max_bytes); nothing was allocated. {HINT}"
    )
    return need, message


CALLS = {
    "bptt": lambda p, xs, ys, dhs, m: mb.bptt(p, xs, ys, max_bytes=m),
    "forward": lambda p, xs, ys, dhs, m: mb.forward(p, xs, max_bytes=m),
    "backward": lambda p, xs, ys, dhs, m: mb.backward(p, xs, dhs, max_bytes=m),
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_size_limit_is_exactly_the_documented_count(cell, call, tokens, dtype):
    p, xs, ys, dhs = inputs(cell, tokens=tokens, dtype=dtype)
    need, _ = expected_refusal(call, cell, tokens=tokens, dtype=dtype, limit=0)
    CALLS[call](p, xs, ys, dhs, need)  # exactly the limit: runs
    _, message = expected_refusal(call, cell, tokens=tokens, dtype=dtype, limit=need - 1)
    with pytest.raises(TooLargeError) as info:
        CALLS[call](p, xs, ys, dhs, need - 1)
    assert str(info.value) == message


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cell", CELLS)
def test_forward_names_the_first_step_whose_logits_overflow(cell):
    rng = np.random.default_rng(1)
    p = CELLS[cell].init(2, 6, 4, seed=1, weight_scale=3.0)
    xs = rng.standard_normal((5, 2))
    h0 = mb.forward(p, xs).h[0]
    assert np.abs(h0).sum() > 0.8
    # o_0 = V h_0 + c = 1e308 (sum_i |h_0[i]| + 1) in every class: overflows at step 0
    big = p.replace(V=np.tile(1e308 * np.sign(h0), (4, 1)), c=np.full(4, 1e308))
    with pytest.raises(NonFiniteError) as info:
        mb.forward(big, xs)
    assert (info.value.what, info.value.step) == ("o_t", 0)
    assert str(info.value) == (
        "o_t: not finite from step t = 0 on (the computation overflowed); scale the parameters or inputs down"
    )
    with pytest.raises(NonFiniteError) as info:
        mb.bptt(big, xs, np.zeros(5, dtype=np.int64))
    assert (info.value.what, info.value.step) == ("o_t", 0)
    assert str(info.value).endswith("(the computation overflowed); scale the parameters or inputs down")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("cell", CELLS)
def test_the_backward_recursion_names_the_gradient_that_overflows(cell):
    # finite upstream gradients near the largest float64: the sum of two of them, carried back
    # through one step, is no longer finite; the states and logits stay finite
    rng = np.random.default_rng(2)
    p = CELLS[cell].init(2, 3, 4, seed=2)
    xs = rng.standard_normal((6, 2))
    dhs = np.full((6, 3), 1.7e308)
    with pytest.raises(NonFiniteError) as info:
        mb.backward(p, xs, dhs)
    assert info.value.what == "dE/dgh_t" and isinstance(info.value.step, int)
    assert re.fullmatch(
        r"dE/dgh_t: not finite from step t = \d on \(the computation overflowed\); "
        r"scale the parameters or inputs down",
        str(info.value),
    ), str(info.value)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_softmax_of_logits_in_the_thousands_is_torch_softmax(cell):
    # each row (t, b) is shifted by its own maximum: a shift by the largest logit of all rows
    # would underflow the rows far below it (0 / 0), and no shift would overflow
    rng = np.random.default_rng(3)
    p = CELLS[cell].init(3, 4, 5, seed=3)
    p = p.replace(V=3000.0 * rng.standard_normal(p.V.shape))
    xs = rng.standard_normal((2, 6, 3))
    fw = mb.forward(p, xs)
    assert np.ptp(fw.o.max(axis=-1)) > 1000  # the rows' maxima are far apart
    want = torch.softmax(torch.from_numpy(fw.o), dim=-1).numpy()
    assert_close(fw.y_hat, want, name="y_hat")


# ---------------------------------------------------------------------------------------------
# The initial state and the other inputs of a gated cell: what is accepted, what is refused
# ---------------------------------------------------------------------------------------------
def small(cell, *, batched=True, T=3, B=2, D=2, H=4, K=3, seed=4):
    rng = np.random.default_rng(seed)
    p = CELLS[cell].init(D, H, K, seed=seed)
    lead = (B, T) if batched else (T,)
    return p, rng.standard_normal((*lead, D)), rng.integers(0, K, lead)


def refused(message, call):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_an_initial_state_of_the_wrong_shape_is_refused_naming_the_shapes_allowed():
    p, xs, ys = small("gru")
    refused("s0: s0 expected shape (4,) or (2, 4) (H = 4), got (3, 4)",
            lambda: mb.bptt(p, xs, ys, s0=np.zeros((3, 4))))
    p, xs1, ys1 = small("gru", batched=False)
    # unbatched xs: only (H,); a (1, H) state (one row, as if batched) is refused too
    refused("s0: s0 expected shape (4,) (H = 4), got (1, 4)",
            lambda: mb.bptt(p, xs1, ys1, s0=np.zeros((1, 4))))
    p, xs, ys = small("lstm")
    refused("s0: s0.c expected shape (4,) or (2, 4) (H = 4), got (4, 1)",
            lambda: mb.bptt(p, xs, ys, s0=mb.LSTMState(np.zeros(4), np.zeros((4, 1)))))
    refused("s0: h and c must have the same shape, got h (4,) and c (2, 4)",
            lambda: mb.bptt(p, xs, ys, s0=mb.LSTMState(np.zeros(4), np.zeros((2, 4)))))


def test_a_non_finite_initial_state_is_refused_naming_its_part_and_first_index():
    p, xs, ys = small("gru")
    h0 = np.zeros((2, 4))
    h0[1, 2] = np.nan
    refused("s0: s0 contains NaN or inf (first at index (1, 2))", lambda: mb.bptt(p, xs, ys, s0=h0))
    p, xs, ys = small("lstm")
    c0 = np.zeros(4)
    c0[3] = np.inf
    refused("s0: s0.c contains NaN or inf (first at index (3,))",
            lambda: mb.forward(p, xs, s0=mb.LSTMState(np.zeros(4), c0)))
    refused("s0: s0.h contains NaN or inf (first at index (3,))",
            lambda: mb.forward(p, xs, s0=(c0, np.zeros(4))))


def test_an_initial_state_that_is_not_a_real_array_is_refused():
    p, xs, ys = small("gru")
    with pytest.raises(ValueError, match=r"^s0: cannot be read as a numeric array \(.+\)$"):
        mb.bptt(p, xs, ys, s0=[[0.0, 1.0], [2.0]])
    for bad in (np.zeros(4, bool), np.zeros(4, complex), np.array(["a"] * 4), np.zeros(4, object)):
        refused(f"s0: expected a real numeric array, got dtype {bad.dtype}",
                lambda bad=bad: mb.bptt(p, xs, ys, s0=bad))
    ints = np.arange(4, dtype=np.int64)  # integers are real numbers: accepted
    assert_close(mb.bptt(p, xs, ys, s0=ints).ds0, mb.bptt(p, xs, ys, s0=ints.astype(float)).ds0, name="ds0")


def test_an_initial_state_of_the_other_cell_is_refused():
    p, xs, ys = small("lstm")
    refused("s0: the LSTM's initial state is a pair, manual_bptt.LSTMState(h, c) or a tuple (h, c), "
            "got ndarray", lambda: mb.bptt(p, xs, ys, s0=np.zeros(4)))
    refused("s0: the LSTM's initial state is a pair, manual_bptt.LSTMState(h, c) or a tuple (h, c), "
            "got tuple of length 3", lambda: mb.bptt(p, xs, ys, s0=(np.zeros(4),) * 3))
    p, xs, ys = small("gru")
    refused("s0: the GRU's initial state is one array h0 (H,) or (B, H), got an LSTMState",
            lambda: mb.bptt(p, xs, ys, s0=mb.LSTMState(np.zeros(4), np.zeros(4))))


def test_each_params_type_reaches_its_own_cell_and_gated_calls_refuse_missing_labels():
    """The one table (manual_bptt.kinds) sends each params type to its own cell and front: an
    RNNParams never reaches the gated cells' code (it runs the Elman cell), anything else is
    refused naming p."""
    from manual_bptt.cells import ELMAN, GRU, LSTM
    from manual_bptt.kinds import KINDS, kind_of

    p, xs, ys = small("gru")
    q = mb.RNNParams.init(2, 4, 3, seed=0)
    rows = {mb.RNNParams: ELMAN, mb.GRUParams: GRU, mb.LSTMParams: LSTM}
    assert {t: k.cell for t, k in KINDS.items()} == {**rows, mb.StackParams: None}  # a stack's is p.cell
    for params, cell in rows.items():
        kind = kind_of(params.init(2, 4, 3, seed=0))
        assert kind.params is params and kind.cell is cell
    r = mb.bptt(q, xs, ys)
    assert type(r) is mb.BPTTResult and type(r.grads) is mb.RNNParams
    assert type(mb.bptt(p, xs, ys)) is mb.GatedBPTTResult
    refused("p: expected manual_bptt.RNNParams, GRUParams, LSTMParams or StackParams, got dict",
            lambda: mb.bptt(dict(p.items()), xs, ys))
    refused("ys: required (integer labels in [0, K)), got None", lambda: mb.bptt(p, xs, None))


def mixed_and_widened(cell, reduction, tokens=False):
    """bptt with float32 parameters and inputs but a float64 s0 (so computed in float64), and the
    same call with the parameters and inputs widened to float64 first (exact: the same numbers)."""
    p, xs, ys = small(cell, T=7)
    if tokens:  # U x_t + b_ih is then a gather of U's columns plus b_ih: summed in float64
        xs = np.random.default_rng(6).integers(0, 2, ys.shape)
    p32, xs32 = p.astype(np.float32), (xs if tokens else xs.astype(np.float32))
    h0 = np.random.default_rng(5).standard_normal((2, 4))
    s0 = mb.LSTMState(h0, -h0) if cell == "lstm" else h0
    mixed = mb.bptt(p32, xs32, ys, s0=s0, reduction=reduction)
    wide = mb.bptt(p32.astype(np.float64), xs32 if tokens else xs32.astype(np.float64), ys, s0=s0,
                   reduction=reduction)
    return mixed, wide


@pytest.mark.parametrize("cell", CELLS)
def test_an_integer_initial_state_keeps_a_float32_call_in_float32(cell):
    p, xs, ys = small(cell)
    h0 = np.arange(8).reshape(2, 4) % 3 - 1
    s0 = mb.LSTMState(h0, -h0) if cell == "lstm" else h0
    r = mb.bptt(p.astype(np.float32), xs.astype(np.float32), ys, s0=s0)
    assert {a.dtype for _, a in r.grads.items()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tokens", [False, True])
def test_a_float64_initial_state_widens_a_float32_call_exactly(cell, tokens):
    mixed, wide = mixed_and_widened(cell, "sum", tokens)
    assert mixed.grads.W.dtype == np.float64
    assert abs(mixed.loss - wide.loss) <= 1e-12 * abs(wide.loss)
    for (name, a), (_, b) in zip(mixed.grads.items(), wide.grads.items(), strict=True):
        assert_close(a, b, name=name)


@pytest.mark.parametrize("cell", CELLS)
def test_a_float64_initial_state_widens_the_mean_weights_exactly(cell):
    mixed, wide = mixed_and_widened(cell, "mean")  # 1/14 is not a float32 number
    assert abs(mixed.loss - wide.loss) <= 1e-12 * abs(wide.loss)
    for (name, a), (_, b) in zip(mixed.grads.items(), wide.grads.items(), strict=True):
        assert_close(a, b, name=name)


# ---------------------------------------------------------------------------------------------
# The parameters of a gated cell
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_gate_blocks_are_torch_row_blocks_of_the_stacked_fields(cell):
    P = CELLS[cell]
    p = P.init(2, 3, 4, seed=7)
    for j, block in enumerate(P.GATE_NAMES):
        for name in ("U", "W", "b_ih", "b_hh"):
            np.testing.assert_array_equal(p.gate(name, block), getattr(p, name)[3 * j : 3 * (j + 1)])
    assert p.replace(b_ih=None, b_hh=None).gate("b_ih", P.GATE_NAMES[0]) is None
    refused("name: expected one of U, W, b_ih, b_hh, got 'V'", lambda: p.gate("V", P.GATE_NAMES[0]))
    refused(f"block: expected one of {list(P.GATE_NAMES)}, got 'x'", lambda: p.gate("U", "x"))
    refused("dtype: expected float32 or float64, got float16", lambda: p.astype(np.float16))
    refused("input_size: expected an integer >= 1, got 0", lambda: P.init(0, 3, 4))
    refused("input_size: expected an integer >= 1, got 2.0", lambda: P.init(2.0, 3, 4))


@pytest.mark.parametrize("cell", CELLS)
def test_gated_gradients_are_read_only(cell):
    p, xs, ys = small(cell)
    for r in (mb.bptt(p, xs, ys), mb.rtrl(p, xs, ys)):
        for name, a in r.grads.items():
            assert not a.flags.writeable, name
            with pytest.raises(ValueError, match="read-only"):
                a[...] = 0


@pytest.mark.parametrize("cell", CELLS)
def test_gated_init_and_construction_messages_name_the_argument(cell):
    P = CELLS[cell]
    refused("hidden_size: expected an integer >= 1, got 0", lambda: P.init(2, 0, 4))
    refused("output_size: expected an integer >= 1, got 0", lambda: P.init(2, 3, 0))
    assert P.init(1, 1, 1, seed=0).V.shape == (1, 1)  # 1 is allowed for every size
    nan = float("nan")
    refused("weight_scale: expected a finite real number >= 0, got nan",
            lambda: P.init(2, 3, 4, weight_scale=nan))
    p = P.init(2, 3, 4, seed=0)
    for name in ("U", "W", "V"):
        refused(f"{name}: required, got None", lambda name=name: P(**{**dict(p.items()), name: None}))


@pytest.mark.parametrize("cell", CELLS)
def test_gated_construction_refuses_every_wrong_shape_with_its_whole_message(cell):
    P = CELLS[cell]
    G, blocks = (3, "r/z/n") if cell == "gru" else (4, "i/f/g/o")
    H, D, K = 3, 2, 5
    p = P.init(D, H, K, seed=0)
    fields = dict(p.items())

    def build(**changed):
        return lambda: P(**{**fields, **changed})

    refused(f"W: expected shape (G*H, H) with G = {G} ({blocks}), got ({G * H},)", build(W=p.W[:, 0]))
    refused(f"W: expected shape (G*H, H) with G = {G} ({blocks}), got ({G * H}, 0)", build(W=p.W[:, :0]))
    W_short = p.W[:-1]
    refused(f"W: expected shape (G*H, H) = ({G * H}, {H}) with G = {G} ({blocks}), got {W_short.shape}: "
            f"{G * H - 1} rows is not {G} blocks of H = {H}", build(W=W_short))
    refused(f"U: expected shape (G*H, D) = ({G * H}, D) with D >= 1, got ({G * H - 1}, {D})",
            build(U=p.U[1:]))
    for name in ("b_ih", "b_hh"):
        refused(f"{name}: expected shape (G*H,) = ({G * H},), got ({G * H + 1},)",
                build(**{name: np.zeros(G * H + 1)}))
    refused(f"V: expected shape (K, H) with H = {H} to match W, got (0, {H})", build(V=p.V[:0], c=None))
    refused(f"c: expected shape (K,) = ({K},), got ({H},)", build(c=np.zeros(H)))
    # an array that is not real numbers is named by its field
    refused("b_hh: expected a real numeric array, got dtype bool", build(b_hh=np.ones(G * H, dtype=bool)))


@pytest.mark.parametrize("cell", CELLS)
def test_gated_construction_copies_every_field_after_missing_biases(cell):
    """With b_ih = b_hh = None, V and c are still read-only copies, never the caller's arrays."""
    P = CELLS[cell]
    p = P.init(2, 3, 4, seed=0)
    V, c = p.V.copy(), p.c.copy()
    q = P(U=p.U, W=p.W, V=V, c=c)
    assert q.b_ih is None and q.b_hh is None
    for mine, theirs in ((q.V, V), (q.c, c)):
        assert not np.shares_memory(mine, theirs) and not mine.flags.writeable
        assert np.array_equal(mine, theirs)
    V[0, 0] += 1.0  # the caller's array changes, the parameters do not
    assert q.V[0, 0] == p.V[0, 0]


# ---------------------------------------------------------------------------------------------
# a truncation that keeps every step is full BPTT, bitwise
# ---------------------------------------------------------------------------------------------


GATED_PARAMS = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


@pytest.mark.parametrize("cls", GATED_PARAMS)
def test_a_truncation_that_keeps_every_step_is_full_bptt_bitwise(cls):
    """truncate >= T - 1 keeps every term and runs the full recursion itself: every result is the
    untruncated one to the last bit (the windowed recursion adds the same terms by other code,
    which differs in the last bits)."""
    p, xs, ys, s0 = gated_problem(cls, T=6, B=3, H=4, D=3)
    full = mb.bptt(p, xs, ys, s0=s0)
    parts = (lambda r: [r.ds0]) if cls is GRUParams else (lambda r: list(r.ds0))
    finals = (lambda r: [r.final_state]) if cls is GRUParams else (lambda r: list(r.final_state))
    for tau in (5, 6, 7, 50):
        r = mb.bptt(p, xs, ys, s0=s0, truncate=tau)
        assert r.loss == full.loss, tau
        for name, a in full.grads.items():
            assert np.array_equal(getattr(r.grads, name), a), (tau, name)
        assert np.array_equal(r.dxs, full.dxs), tau
        for a, b in zip(parts(r) + finals(r), parts(full) + finals(full), strict=True):
            assert np.array_equal(a, b), tau
    lagged = mb.bptt(p, xs, ys, s0=s0, truncate=4)  # drops the lag-5 terms
    assert not np.array_equal(lagged.grads.W, full.grads.W)
