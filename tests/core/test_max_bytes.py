"""bptt and forward refuse, from the shapes alone, any array over max_bytes (1 GiB by default).

The refusal comes before any input value is scanned or copied and before anything is
allocated: a 64 x 10^6 token input with H = 56 (its states alone, (T + 1, B, H) float64, would
take 26.7 GiB) is refused in milliseconds. The inputs here are broadcast views, so building
them costs no memory either.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import manual_bptt as mb
from manual_bptt.errors import DEFAULT_MAX_BYTES, TooLargeError
from manual_bptt.gated_params import GRUParams, LSTMParams

B, T, D, H, K = 64, 10**6, 20, 56, 10
P = mb.RNNParams.init(D, H, K, seed=0)
HUGE_TOKENS = np.broadcast_to(np.int64(1), (B, T))  # 512 MB if it were real; a view here
HUGE_LABELS = np.broadcast_to(np.int64(2), (B, T))
STATE_BYTES = (T + 1) * B * H * 8


def refused(call):
    t0 = time.perf_counter()
    with pytest.raises(TooLargeError) as info:
        call()
    return info.value, time.perf_counter() - t0


@pytest.mark.parametrize("truncate", [None, 5])
def test_bptt_refuses_a_huge_token_input_in_milliseconds_with_the_byte_count(truncate):
    err, seconds = refused(lambda: mb.bptt(P, HUGE_TOKENS, HUGE_LABELS, truncate=truncate))
    assert seconds < 0.5, seconds  # the value scans alone took seconds
    msg = str(err)
    assert msg.startswith("bptt: the states s_t, (T + 1, B, H)")
    assert f"{STATE_BYTES} bytes" in msg and f"limit of {DEFAULT_MAX_BYTES} bytes" in msg


def test_forward_refuses_a_huge_token_input_in_milliseconds():
    err, seconds = refused(lambda: mb.forward(P, HUGE_TOKENS))
    assert seconds < 0.5 and f"{STATE_BYTES} bytes" in str(err)
    assert str(err).startswith("forward: the states s_t")


def test_the_size_is_refused_before_the_inputs_are_checked():
    bad_labels = np.broadcast_to(np.int64(-7), (B, T))  # out of range, but never looked at
    with pytest.raises(TooLargeError):
        mb.bptt(P, HUGE_TOKENS, bad_labels)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"xs": np.zeros((3, 50, D)), "ys": np.zeros((3, 50), np.int64)}, "bptt: the states"),
        ({"xs": np.zeros((3, 50), np.int64), "ys": np.zeros((3, 50), np.int64), "truncate": 2},
         "bptt: the states"),
    ],
)
def test_a_small_max_bytes_refuses_a_small_call(kwargs, what):
    need = 51 * 3 * H * 8  # the states
    with pytest.raises(TooLargeError, match=f"^{what}.*{need} bytes"):
        mb.bptt(P, max_bytes=need - 1, **kwargs)
    r = mb.bptt(P, max_bytes=need, **kwargs)  # exactly at the limit: runs
    assert np.isfinite(r.loss)


def test_dense_input_gradient_counts_against_the_limit():
    Dw = 400  # dE/dxs, (B, T, D), is the largest array here
    p = mb.RNNParams.init(Dw, 3, 2, seed=1)
    xs, ys = np.zeros((2, 10, Dw)), np.zeros((2, 10), np.int64)
    with pytest.raises(TooLargeError, match=r"^bptt: dE/dxs, \(B, T, D\).* 64000 bytes"):
        mb.bptt(p, xs, ys, max_bytes=63999)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", None, True])
def test_max_bytes_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match=r"^max_bytes: expected an integer >= 0"):
        mb.bptt(P, np.zeros(3, np.int64), np.zeros(3, np.int64), max_bytes=bad)
    with pytest.raises(ValueError, match=r"^max_bytes"):
        mb.forward(P, np.zeros(3, np.int64), max_bytes=bad)


@pytest.mark.parametrize(
    ("H_", "K_", "dtype", "first"),
    [
        (4, 2, np.float64, "the states s_t, (T + 1, B, H)"),  # (T+1)BH > TBK, > TB int64
        (2, 9, np.float64, "the logits o_t and y_hat_t, (T, B, K) each"),  # TBK the largest
        (1, 1, np.float32, "the token ids, (T, B) int64"),  # 8 bytes per id against 4 per state
    ],
)
def test_forward_names_the_array_it_refuses_with_its_exact_size(H_, K_, dtype, first):
    """Each array forward allocates has its own refusal; the limit is set between the largest
    array and the others, so exactly that one is refused, named as documented."""
    B_, T_ = 3, 40
    p = mb.RNNParams.init(5, H_, K_, seed=0, dtype=dtype)
    xs = np.zeros((B_, T_), np.int64)
    itemsize = np.dtype(dtype).itemsize
    sizes = {
        "the states s_t, (T + 1, B, H)": ((T_ + 1, B_, H_), itemsize),
        "the logits o_t and y_hat_t, (T, B, K) each": ((T_, B_, K_), itemsize),
        "the token ids, (T, B) int64": ((T_, B_), 8),
    }
    nbytes = {what: int(np.prod(shape)) * size for what, (shape, size) in sizes.items()}
    limit = max(v for what, v in nbytes.items() if what != first)
    assert nbytes[first] > limit
    err, _ = refused(lambda: mb.forward(p, xs, max_bytes=limit))
    shape, _ = sizes[first]
    want = f"forward: {first}: an array of shape {shape} would take {nbytes[first]} bytes"
    assert str(err).startswith(want), str(err)
    mb.forward(p, xs, max_bytes=nbytes[first])  # the same call at exactly its size runs


def bptt_sizes(T_, B_, D_, H_, K_, itemsize, tokens):
    """What bptt counts against max_bytes, derived from the sizes: {what: (shape, bytes)}, in the
    order it checks them. A block of logits has min(T, max(1, 1024 // B)) steps of B rows."""
    rows = min(T_, max(1, 1024 // B_)) * B_
    arrays = {
        "the states s_t, (T + 1, B, H)": ((T_ + 1, B_, H_), itemsize),
        "the labels, (T, B) int64": ((T_, B_), 8),
        "a block of logits o_t, (rows, K)": ((rows, K_), itemsize),
        "dE/dU, (H, D)": ((H_, D_), itemsize),
    }
    if tokens:
        arrays["the token ids, (T, B) int64"] = ((T_, B_), 8)
    else:
        arrays["dE/dxs, (B, T, D)"] = ((B_, T_, D_), itemsize)
    return {what: (shape, int(np.prod(shape)) * size) for what, (shape, size) in arrays.items()}


def bptt_inputs(T_, B_, D_, dtype, tokens, batched=True):
    lead = (B_, T_) if batched else (T_,)
    xs = np.zeros(lead, np.int64) if tokens else np.zeros((*lead, D_), dtype)
    return xs, np.zeros(lead, np.int64)


@pytest.mark.parametrize(
    ("T_", "B_", "D_", "H_", "K_", "dtype", "tokens", "first"),
    [
        (40, 3, 5, 4, 2, np.float64, True, "the states s_t, (T + 1, B, H)"),
        # 8 bytes per label against 4 per float32 state (H = 1); dense inputs, as token ids
        # would be the same size as the labels
        (40, 3, 1, 1, 1, np.float32, False, "the labels, (T, B) int64"),
        # a block of logits: all T B rows (T < 1024 // B), 1024 // B steps of B rows, one step
        # of B > 1024 rows, and 1024 // B steps when B does not divide 1024
        (40, 3, 2, 1, 50, np.float64, True, "a block of logits o_t, (rows, K)"),
        (40, 64, 2, 1, 50, np.float64, True, "a block of logits o_t, (rows, K)"),
        (3, 2000, 2, 1, 50, np.float64, True, "a block of logits o_t, (rows, K)"),
        (10, 300, 2, 1, 50, np.float64, True, "a block of logits o_t, (rows, K)"),
        (40, 3, 500, 2, 2, np.float64, True, "dE/dU, (H, D)"),
        (40, 3, 50, 1, 1, np.float64, False, "dE/dxs, (B, T, D)"),
    ],
)
@pytest.mark.parametrize("truncate", [None, 5])
def test_bptt_names_the_array_it_refuses_with_its_exact_shape_and_size(
    T_, B_, D_, H_, K_, dtype, tokens, first, truncate
):
    """Each array bptt counts has its own refusal; the limit is set between the largest array
    and the others, so exactly that one is refused, named as documented."""
    p = mb.RNNParams.init(D_, H_, K_, seed=0, dtype=dtype)
    xs, ys = bptt_inputs(T_, B_, D_, dtype, tokens)
    sizes = bptt_sizes(T_, B_, D_, H_, K_, np.dtype(dtype).itemsize, tokens)
    # the truncated run's e_t, (T, B, H), is smaller than the states: never the largest
    limit = max(n for what, (_, n) in sizes.items() if what != first)
    shape, need = sizes[first]
    assert need > limit
    err, _ = refused(lambda: mb.bptt(p, xs, ys, truncate=truncate, max_bytes=limit))
    want = f"bptt: {first}: an array of shape {shape} would take {need} bytes "
    assert str(err).startswith(want), str(err)
    r = mb.bptt(p, xs, ys, truncate=truncate, max_bytes=need)  # the same call at exactly its size runs
    assert np.isfinite(r.loss)


@pytest.mark.parametrize(("tokens", "first"), [(True, "the states s_t"), (False, "dE/dxs")])
def test_bptt_counts_an_unbatched_input_as_one_sequence(tokens, first):
    """xs of shape (T,) or (T, D): B = 1 in the shapes of the message."""
    T_, D_, H_ = 40, 50 if not tokens else 2, 4
    p = mb.RNNParams.init(D_, H_, 2, seed=0)
    xs, ys = bptt_inputs(T_, 1, D_, np.float64, tokens, batched=False)
    shape = (T_ + 1, 1, H_) if tokens else (1, T_, D_)
    need = int(np.prod(shape)) * 8
    err, _ = refused(lambda: mb.bptt(p, xs, ys, max_bytes=need - 1))
    assert str(err).startswith(f"bptt: {first}"), str(err)
    assert f": an array of shape {shape} would take {need} bytes " in str(err), str(err)
    mb.bptt(p, xs, ys, max_bytes=need)


def test_bptt_refuses_the_first_array_over_the_limit_in_its_order():
    """Sizes that grow along bptt's order (states < labels < logits < dE/dU < dE/dxs): with the
    limit at the size of one array, every later array is over it, and the next one is named."""
    T_, B_, D_, H_, K_ = 5, 2, 40, 1, 3
    p = mb.RNNParams.init(D_, H_, K_, seed=0, dtype=np.float32)
    xs, ys = bptt_inputs(T_, B_, D_, np.float32, tokens=False)
    sizes = list(bptt_sizes(T_, B_, D_, H_, K_, 4, tokens=False).items())
    assert [n for _, (_, n) in sizes] == sorted({n for _, (_, n) in sizes})  # strictly growing
    limits = [0] + [n for _, (_, n) in sizes[:-1]]
    for limit, (what, (shape, need)) in zip(limits, sizes, strict=True):
        err, _ = refused(lambda limit=limit: mb.bptt(p, xs, ys, max_bytes=limit))
        want = f"bptt: {what}: an array of shape {shape} would take {need} bytes "
        assert str(err).startswith(want), str(err)
    mb.bptt(p, xs, ys, max_bytes=sizes[-1][1][1])


def test_bptt_with_token_inputs_names_the_labels_before_the_token_ids_of_the_same_size():
    """Token ids and labels are both (T, B) int64, and the labels are counted first: with float32
    and H = 1 they are the largest arrays, and the labels are the ones refused."""
    T_, B_, D_, H_, K_ = 40, 3, 2, 1, 1
    p = mb.RNNParams.init(D_, H_, K_, seed=0, dtype=np.float32)
    xs, ys = bptt_inputs(T_, B_, D_, np.float32, tokens=True)
    sizes = bptt_sizes(T_, B_, D_, H_, K_, 4, tokens=True)
    ids = sizes["the token ids, (T, B) int64"][1]
    assert ids == sizes["the labels, (T, B) int64"][1] == max(n for _, n in sizes.values())
    err, _ = refused(lambda: mb.bptt(p, xs, ys, max_bytes=ids - 1))
    want = f"bptt: the labels, (T, B) int64: an array of shape {(T_, B_)} would take {ids} bytes "
    assert str(err).startswith(want), str(err)
    mb.bptt(p, xs, ys, max_bytes=ids)


@pytest.mark.parametrize("call", ["bptt", "forward", "backward"])
def test_a_refusal_says_what_to_do_instead(call):
    """Every Elman refusal ends with the same advice: shorter chunks carried by final_state, or
    a larger max_bytes."""
    xs = np.zeros((3, 50), np.int64)
    calls = {
        "bptt": lambda: mb.bptt(P, xs, xs, max_bytes=100),
        "forward": lambda: mb.forward(P, xs, max_bytes=100),
        "backward": lambda: mb.backward(P, xs, np.zeros((3, 50, H)), max_bytes=100),
    }
    err, _ = refused(calls[call])
    advice = "Split the input into shorter chunks (carry final_state as s0), or raise max_bytes"
    assert str(err).endswith(f"nothing was allocated. {advice}"), str(err)


def test_a_refusal_without_advice_ends_where_the_size_is_said():
    """check_bytes appends advice only when given: the decomposition's refusals carry none."""
    from manual_bptt.errors import check_bytes

    with pytest.raises(TooLargeError) as info:
        check_bytes("x: the states", (10, 10), np.float64, 799)
    assert str(info.value) == (
        "x: the states: an array of shape (10, 10) would take 800 bytes (0.0 MiB), over the limit of "
        "799 bytes (0.0 MiB, max_bytes); nothing was allocated"
    )
    with pytest.raises(TooLargeError, match=r"nothing was allocated\. Try less\.$"):
        check_bytes("x", (10, 10), np.float64, 799, hint="Try less.")
    check_bytes("x", (10, 10), np.float64, 800)  # exactly at the limit: allowed


# ---------------------------------------------------------------------------------------------
# the gated cells
# ---------------------------------------------------------------------------------------------


GATED = [pytest.param(GRUParams, id="gru"), pytest.param(LSTMParams, id="lstm")]


@pytest.mark.parametrize("cls", GATED)
def test_a_call_over_max_bytes_is_refused_before_allocating(cls):
    p = cls.init(5, 64, 3, seed=0)
    xs = np.zeros(1_000_000, dtype=np.int64)
    ys = np.zeros(1_000_000, dtype=np.int64)
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError, match=r"bytes.*max_bytes") as info:
            mb.bptt(p, xs, ys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, peak  # the refused call needs about 7.7 GB (GRU) to 10.8 GB (LSTM)
    assert "T steps of B*(" in str(info.value)
    with pytest.raises(TooLargeError):
        mb.forward(p, xs[:1000], max_bytes=1000)
    mb.bptt(p, xs[:10], ys[:10], max_bytes=10**6)  # small enough: runs
