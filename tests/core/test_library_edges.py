"""The library keeps its promises at the edges: a size it refuses is refused before the inputs
are copied (and never as a MemoryError), every input is checked like the Elman cell's (masked
arrays and timedelta64 refused), a non-finite result is a NonFiniteError, overflow is never a
RuntimeWarning, and the gated parameters' init checks its arguments like RNNParams.init.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
import warnings
from dataclasses import fields, is_dataclass

import numpy as np
import pytest

import manual_bptt as mb
from locations import SRC
from manual_bptt.checking import assert_close
from manual_bptt.decompose import unroll

# Every RuntimeWarning of this module's tests is an error (the README: overflow is never a warning).
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PARAMS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


# ---------------------------------------------------------------------------------------------
# Sizes: refused from the shapes, before anything is copied or allocated
# ---------------------------------------------------------------------------------------------
#: A long sequence of broadcast inputs (no memory of their own): copying the token ids alone
#: takes 16 MB, while the arrays of the run (T x H = 2e6 x 80 states at least, 1.28 GB) are over
#: the default limit of 1 GiB, for every cell and every function.
LONG_T, WIDE_H = 2_000_000, 80
#: The peak of traced allocations allowed before TooLargeError: a quarter of one copy of xs.
SIZE_CHECK_PEAK = 4 << 20

LIBRARY_CALLS = ("bptt", "forward", "backward", "decompose", "rtrl", "state_jacobian")


def _call(name: str, p, xs, ys, dhs, **kw):
    if name == "bptt":
        return mb.bptt(p, xs, ys, **kw)
    if name == "forward":
        return mb.forward(p, xs, **kw)
    if name == "backward":
        return mb.backward(p, xs, dhs, **kw)
    if name == "decompose":
        return mb.decompose(p, xs, ys, **kw)
    if name == "rtrl":
        return mb.rtrl(p, xs, ys, **kw)
    return mb.state_jacobian(p, xs, 1, 0, **kw)


SIZE_CASES = [pytest.param(cell, name, id=f"{cell}-{name}") for cell in PARAMS for name in LIBRARY_CALLS]


@pytest.mark.parametrize(("cell", "name"), SIZE_CASES)
def test_a_size_over_the_limit_is_refused_before_the_inputs_are_copied(cell, name):
    p = PARAMS[cell].init(3, WIDE_H, 2, seed=0)
    xs = np.broadcast_to(np.int64(1), (LONG_T,))
    dhs = np.broadcast_to(np.float64(0.5), (LONG_T, WIDE_H))
    tracemalloc.start()
    try:
        with pytest.raises(mb.TooLargeError):
            _call(name, p, xs, xs, dhs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < SIZE_CHECK_PEAK, f"{peak / 2**20:.1f} MiB allocated before the size was refused"


#: Run in a fresh interpreter whose address space is limited to 1 GiB, so that an allocation the
#: size check should have prevented fails at once as MemoryError (instead of taking the memory):
#: every case prints the type and message of what it raised, as JSON.
_LIMITED = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import numpy as np
import manual_bptt as mb
PARAMS = {"rnn": mb.RNNParams, "gru": mb.GRUParams, "lstm": mb.LSTMParams}
T = 200_000_000  # token ids broadcast: 1.6 GB for one copy of xs
xs = np.broadcast_to(np.int64(1), (T,))
dhs = np.broadcast_to(np.float64(0.5), (T, 3))
out = {}
def run(key, f):
    try:
        f()
        out[key] = "returned"
    except BaseException as exc:
        out[key] = f"{type(exc).__name__}: {exc}"
for cell, cls in PARAMS.items():
    p = cls.init(3, 3, 2, seed=0)
    run(f"{cell}-bptt", lambda: mb.bptt(p, xs, xs))
    run(f"{cell}-forward", lambda: mb.forward(p, xs))
    run(f"{cell}-backward", lambda: mb.backward(p, xs, dhs))
    run(f"{cell}-decompose", lambda: mb.decompose(p, xs, xs))
    run(f"{cell}-rtrl", lambda: mb.rtrl(p, xs, xs))
    run(f"{cell}-state_jacobian", lambda: mb.state_jacobian(p, xs, 1, 0))
    # logits (T * B, K) of 14.9 GiB, everything else small
    q = cls.init(3, 2, 200_000, seed=0)
    ids = np.zeros(10_000, dtype=np.int64)
    for name in ("decompose", "rtrl"):
        for limit in (None, 1 << 20):
            kw = {} if limit is None else {"max_bytes": limit}
            run(f"{cell}-{name}-logits-{limit or 'default'}", lambda: getattr(mb, name)(q, ids, ids, **kw))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def limited_outcomes() -> dict[str, str]:
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _LIMITED], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _limited_cases():
    for cell in PARAMS:
        for name in LIBRARY_CALLS:
            yield pytest.param(f"{cell}-{name}", id=f"{cell}-{name}")
        for name in ("decompose", "rtrl"):
            for limit in ("default", str(1 << 20)):
                case = f"{cell}-{name}-logits-{limit}"
                yield pytest.param(case, id=f"{cell}-{name}-logits-max_bytes-{limit}")


@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="starts a process; mutation runs stay in one")
@pytest.mark.parametrize("case", list(_limited_cases()))
def test_a_refused_size_is_a_too_large_error_never_a_memory_error(case, limited_outcomes):
    """200-million-step inputs, and (T*B, K) logits of 14.9 GiB in decompose and rtrl whatever
    max_bytes is: TooLargeError, found from the shapes."""
    outcome = limited_outcomes[case]
    assert outcome.startswith("TooLargeError"), outcome


@pytest.mark.parametrize("cell", PARAMS)
def test_the_declared_width_of_a_step_cache_is_the_width_of_the_cache(cell):
    """The size checks count cell.cache_width * H numbers per row of a step's cache before
    anything runs: that must be what a step of the spec keeps (H != D != K, batched)."""
    p = PARAMS[cell].init(3, 5, 2, seed=0)
    u = unroll(p, np.array([[0, 2, 1], [1, 1, 0]]), None, activation=None, s0=None, labels=False)
    widths = [int(np.prod(f.shape[1:])) for f in u.cache if f is not None]
    assert u.cell.cache_width * u.H == sum(widths), (u.cell.name, widths)


# ---------------------------------------------------------------------------------------------
# Inputs: masked arrays and timedelta64 refused as the gated s0 and as backward's arrays
# ---------------------------------------------------------------------------------------------
D, H, K = 3, 2, 4
XS = np.array([0, 2, 1, 1, 0])
YS = np.array([1, 3, 0, 2, 1])
T = len(XS)


def _masked(shape):
    a = np.ma.masked_array(np.full(shape, 0.1), mask=np.zeros(shape, dtype=bool))
    a.mask.flat[0] = True
    return a


def _timedelta(shape):
    return np.ones(shape, dtype=np.int64).astype("timedelta64[s]")


BAD_ARRAYS = {"masked": _masked, "timedelta64": _timedelta}


#: (cell, the argument, how the bad array is passed).
INPUT_CASES = [
    ("gru", "s0", "s0"),
    ("lstm", "s0", "s0.h"),
    ("lstm", "s0", "s0.c"),
    ("rnn", "s0", "s0"),
    *((cell, "dhs", "dhs") for cell in PARAMS),
    ("rnn", "d_final", "d_final"),
    ("gru", "d_final", "d_final"),
    ("lstm", "d_final", "d_final.h"),
    ("lstm", "d_final", "d_final.c"),
]


def _input_cases():
    for kind in BAD_ARRAYS:
        for cell, name, part in INPUT_CASES:
            yield pytest.param(cell, name, part, kind, id=f"{cell}-{part}-{kind}")


@pytest.mark.parametrize(("cell", "name", "part", "kind"), list(_input_cases()))
def test_masked_arrays_and_timedelta64_are_refused_naming_the_argument(cell, name, part, kind):
    p = PARAMS[cell].init(D, H, K, seed=0)
    bad = BAD_ARRAYS[kind]((T, H) if name == "dhs" else H)
    ok = np.full(H, 0.1)
    value = {"h": mb.LSTMState(bad, ok), "c": mb.LSTMState(ok, bad)}.get(part.rpartition(".")[2], bad)
    with pytest.raises(ValueError, match=name):
        if name == "s0":
            mb.bptt(p, XS, YS, s0=value)
        elif name == "dhs":
            mb.backward(p, XS, value)
        else:
            mb.backward(p, XS, np.full((T, H), 0.3), d_final=value)


# ---------------------------------------------------------------------------------------------
# Results: never non-finite without an error; norms that do not overflow
# ---------------------------------------------------------------------------------------------
def _numbers(value, name="result"):
    """(name, array) for every array and number inside a result (dataclasses, states, tuples)."""
    if value is None or isinstance(value, str):
        return []
    if isinstance(value, (float, int, np.ndarray, np.floating)):
        return [(name, np.asarray(value))]
    if is_dataclass(value):
        return [pair for f in fields(value) for pair in _numbers(getattr(value, f.name), f"{name}.{f.name}")]
    if isinstance(value, tuple):
        return [pair for i, v in enumerate(value) for pair in _numbers(v, f"{name}[{i}]")]
    return []


def _non_finite(value) -> list[str]:
    return [n for n, a in _numbers(value) if np.issubdtype(a.dtype, np.number) and not np.all(np.isfinite(a))]


def test_rtrl_raises_where_bptt_raises_on_a_gru_whose_loss_overflows():
    """V[0, 0] = 1e308: bptt says NonFiniteError; rtrl returned inf in dU and db_ih instead."""
    rng = np.random.default_rng(1)
    steps = int(rng.integers(2, 12))
    p = mb.GRUParams.init(3, 4, 5, seed=1)
    V = p.V.copy()
    V[0, 0] = 1e308
    p = p.replace(V=V)
    xs, ys = rng.integers(0, 3, steps), rng.integers(0, 5, steps)
    with pytest.raises(mb.NonFiniteError):
        mb.bptt(p, xs, ys)
    with pytest.raises(mb.NonFiniteError):
        r = mb.rtrl(p, xs, ys)
        pytest.fail(f"rtrl returned, non-finite: {_non_finite(r)}")


def test_state_jacobian_of_an_lstm_with_a_huge_finite_s0_is_finite_or_refused():
    """s0 = (1e300, 1e300), finite: dz_2/dz_0 came back with NaN."""
    p = mb.LSTMParams.init(3, 4, 5, seed=1)
    s0 = mb.LSTMState(np.full(4, 1e300), np.full(4, 1e300))
    try:
        J = mb.state_jacobian(p, np.array([1, 2, 2, 0]), 2, -1, s0=s0)
    except mb.NonFiniteError:
        return
    assert np.all(np.isfinite(J)), f"{np.isnan(J).sum()} NaN, {np.isinf(J).sum()} inf in dz_2/dz_0"


def _scaled_fro(m: np.ndarray) -> float:
    """||m||_F without overflow: max|m| * ||m / max|m|||_F."""
    top = float(np.max(np.abs(m)))
    return 0.0 if top == 0 else top * float(np.sqrt(np.sum((m / top) ** 2)))


def test_term_norms_and_the_lag_profile_are_finite_when_every_term_is():
    """V scaled by 1e200: every term is finite (up to about 5e199), its square is not; the
    Frobenius norms are those of the terms, computed without overflow."""
    p = mb.RNNParams.init(D, H, K, seed=0)
    p = p.replace(V=p.V * 1e200)
    terms = mb.decompose(p, XS, YS)
    expected = np.array([[_scaled_fro(terms.W[t, k]) for k in range(T)] for t in range(T)])
    assert np.all(np.isfinite(expected)) and expected.max() > 1e199
    norms = terms.norms()
    assert not _non_finite(norms), _non_finite(norms)
    assert_close(norms.W, expected, name="norms().W", rtol=1e-12, atol=0.0)
    profile = terms.lag_profile()
    assert not _non_finite(profile), _non_finite(profile)


def test_term_norms_keep_their_value_when_the_squares_of_the_terms_underflow():
    """V scaled by 1e-200: every term is about 1e-200, its square 0 in float64."""
    p = mb.RNNParams.init(D, H, K, seed=0)
    p = p.replace(V=p.V * 1e-200)
    terms = mb.decompose(p, XS, YS)
    expected = np.array([[_scaled_fro(terms.W[t, k]) for k in range(T)] for t in range(T)])
    assert expected.max() > 0 and expected.max() < 1e-190
    assert_close(terms.norms().W, expected, name="norms().W", rtol=1e-12, atol=0.0)


def test_forward_refuses_pre_activations_that_overflow_even_when_the_states_are_finite():
    """U = b = 1.5e308: a_t = U x_t + W s_{t-1} + b overflows to inf, s_t = tanh(a_t) = 1."""
    p = mb.RNNParams.init(D, H, K, seed=0)
    p = p.replace(U=np.full((H, D), 1.5e308), b=np.full(H, 1.5e308))
    with pytest.raises(mb.NonFiniteError):
        r = mb.forward(p, XS)
        pytest.fail(f"forward returned, non-finite: {_non_finite(r)}")


# Inputs at the edge of the float range (all finite): every call returns finite numbers or raises
# NonFiniteError, and never emits a RuntimeWarning.
BIG = 1.5e308


def _extreme(cell: str, kind: str):
    p = PARAMS[cell].init(D, H, K, seed=0)
    G = GATES[cell]
    s0 = None
    if kind == "input terms":  # U x_t + b (b_ih) overflows
        bias = {"b": np.full(H, BIG)} if cell == "rnn" else {"b_ih": np.full(G * H, BIG)}
        p = p.replace(U=np.full((G * H, D), BIG), **bias)
    elif kind == "recurrent terms":  # W h_{t-1} + b_hh overflows (the Elman cell: W s_{t-1} + b)
        bias = {"b": np.full(H, BIG)} if cell == "rnn" else {"b_hh": np.full(G * H, BIG)}
        p = p.replace(W=np.full((G * H, H), BIG), **bias)
        s0 = mb.LSTMState(np.full(H, 0.9), np.full(H, 0.9)) if cell == "lstm" else np.full(H, 0.9)
    elif kind == "logits":  # o_t = V h_t + c of +-1e308: o_t - max_k o_t overflows
        V = np.zeros((K, H))
        V[0], V[1] = BIG, -BIG
        p = p.replace(V=V)
    elif kind == "huge V":  # terms up to 1e200, finite; their squares are not
        p = p.replace(V=p.V * 1e200)
    elif kind == "one huge V entry":  # sums over steps overflow
        V = p.V.copy()
        V[0, 0] = 1e308
        p = p.replace(V=V)
    elif kind == "huge s0":
        s0 = mb.LSTMState(np.full(H, 1e300), np.full(H, 1e300)) if cell == "lstm" else np.full(H, 1e300)
    return p, s0


EXTREMES = ("input terms", "recurrent terms", "logits", "huge V", "one huge V entry", "huge s0")
EXTREME_CASES = [pytest.param(cell, kind, id=f"{cell}-{kind}") for cell in PARAMS for kind in EXTREMES]


@pytest.mark.parametrize(("cell", "kind"), EXTREME_CASES)
def test_extreme_finite_inputs_give_finite_results_or_non_finite_error_and_no_runtime_warning(cell, kind):
    p, s0 = _extreme(cell, kind)
    dhs = np.random.default_rng(0).standard_normal((T, H))
    calls = {
        "bptt": lambda: mb.bptt(p, XS, YS, s0=s0),
        "bptt(truncate=1)": lambda: mb.bptt(p, XS, YS, s0=s0, truncate=1),
        "forward": lambda: mb.forward(p, XS, s0=s0),
        "backward": lambda: mb.backward(p, XS, dhs, s0=s0),
        "rtrl": lambda: mb.rtrl(p, XS, YS, s0=s0),
        "state_jacobian": lambda: mb.state_jacobian(p, XS, T - 1, -1, s0=s0),
        "decompose().norms()": lambda: mb.decompose(p, XS, YS, s0=s0).norms(),
        "decompose().lag_profile()": lambda: mb.decompose(p, XS, YS, s0=s0).lag_profile(),
        "decompose().W[T - 1, 0]": lambda: mb.decompose(p, XS, YS, s0=s0).W[T - 1, 0],
        "decompose().U.full()": lambda: mb.decompose(p, XS, YS, s0=s0).U.full(),
        "decompose().iter_t()": lambda: tuple(mb.decompose(p, XS, YS, s0=s0).iter_t()),
    }
    problems = []
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                bad = _non_finite(call())
                if bad:
                    problems.append(f"{name} returned non-finite {', '.join(bad)}")
            except mb.NonFiniteError:
                pass
            except Exception as exc:
                problems.append(f"{name} raised {type(exc).__name__}: {exc}")
        for w in caught:
            if issubclass(w.category, RuntimeWarning):
                where = f"{w.filename.split('/')[-1]}:{w.lineno}"
                problems.append(f"{name}: RuntimeWarning at {where}: {w.message}")
    assert not problems, "\n".join(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------
# GRUParams.init and LSTMParams.init check their arguments as RNNParams.init does
# ---------------------------------------------------------------------------------------------
#: (keyword arguments, the argument the ValueError must name), as RNNParams.init refuses them.
BAD_INIT = [
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": [1, 2]}, "seed"),
    ({"weight_scale": [1]}, "weight_scale"),
    ({"weight_scale": True}, "weight_scale"),
    ({"weight_scale": -1.0}, "weight_scale"),
    ({"weight_scale": "1"}, "weight_scale"),
    ({"weight_scale": 1j}, "weight_scale"),
    ({"weight_scale": float("nan")}, "weight_scale"),
    ({"dtype": "int32"}, "dtype"),
    ({"dtype": np.float16}, "dtype"),
    ({"dtype": "nonsense"}, "dtype"),
]


def _init_cases():
    for cell in ("gru", "lstm"):
        for kw, name in BAD_INIT:
            yield pytest.param(cell, kw, name, id=f"{cell}-{name}={kw[name]!r}")


@pytest.mark.parametrize(("cell", "kw", "name"), list(_init_cases()))
def test_gated_init_refuses_a_bad_argument_with_a_value_error_naming_it(cell, kw, name):
    with pytest.raises(ValueError, match=name):
        PARAMS[cell].init(D, H, K, **kw)
    with pytest.raises(ValueError, match=name):
        mb.RNNParams.init(D, H, K, **kw)  # the rule, as the Elman cell's parameters keep it
