"""Shared test configuration: Hypothesis profiles and the result-vs-oracle checker.

Hypothesis profiles (chosen by ``choose_profile``, shown in the pytest header with -v):
    ci        the default, on CI and off it: derandomized (the same examples every run, so two
              runs of the test command collect and run the same examples), bounded example
              counts so the whole suite stays well under 3 minutes on 2 cores, no deadline,
              print_blob.
    dev       ``HYPOTHESIS_PROFILE=dev``: random examples, fewer of them, no deadline.
    thorough  ``HYPOTHESIS_PROFILE=thorough``: 2000 examples per property, no deadline.
    mutation  mutation testing (selected when MUTANT_UNDER_TEST is set, which mutmut does for
              every test run it makes): derandomized, few examples, no shrinking, no example
              database, no deadline; see docs/mutation.md.
Hypothesis ships a built-in "ci" profile and loads it by itself when CI is set; ours is
registered under the same name (replacing it) and then loaded explicitly, so our settings
apply on CI.

Example counts are given per property as multiples of the profile's max_examples via
``examples(fraction)``, so that expensive properties (the oracle runs autograd over an
unrolled loop) stay cheap on CI while the thorough profile scales them all up.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

from manual_bptt.checking import ATOL, RTOL, assert_close, assert_results_close, result_fields
from manual_bptt.gated_params import LSTMParams, LSTMState
from manual_bptt.problems import Problem, RNNConfig, make_problem

# ---------------------------------------------------------------------------------------------
# Hypothesis profiles
# ---------------------------------------------------------------------------------------------
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "derandomize": True,
        "database": None,
        "max_examples": 200,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
    "dev": {"derandomize": False, "max_examples": 30, "deadline": None},
    "thorough": {"derandomize": False, "max_examples": 2000, "deadline": None},
    "mutation": {
        "derandomize": True,
        "database": None,
        "max_examples": 15,
        "deadline": None,
        "phases": (Phase.explicit, Phase.reuse, Phase.generate, Phase.target),  # no shrink
        "suppress_health_check": [HealthCheck.too_slow],
    },
}
for _name, _kwargs in PROFILES.items():
    settings.register_profile(_name, **_kwargs)

def choose_profile(env: Mapping[str, str]) -> str:
    """HYPOTHESIS_PROFILE if set, else "mutation" under mutmut (MUTANT_UNDER_TEST set, even to
    ""), else "ci", whether CI is set or not (the random "dev" profile is opt-in)."""
    explicit = env.get("HYPOTHESIS_PROFILE", "").strip()
    if explicit:
        return explicit
    if "MUTANT_UNDER_TEST" in env:
        return "mutation"
    return "ci"


# The helper modules beside this file (broken_impls, user_modules, locations, ...) are imported by
# name, in the tests and in the checker's worker processes (which get this sys.path).
_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

ACTIVE_PROFILE = choose_profile(os.environ)
settings.load_profile(ACTIVE_PROFILE)


def examples(fraction: float) -> int:
    """max_examples for one property: ``fraction`` of the active profile's, at least 5."""
    return max(5, round(settings.get_profile(ACTIVE_PROFILE).max_examples * fraction))


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = settings()  # the settings tests actually get
    return [
        f"hypothesis profile: {settings.get_current_profile_name()} "
        f"(max_examples={s.max_examples}, derandomize={s.derandomize}, deadline={s.deadline}, "
        f"print_blob={s.print_blob})"
    ]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported:

    * torch computes on one thread. The oracle's tensors are tiny (H <= 10), so threads
      gain nothing, while on a loaded 2-core machine torch's intra-op thread pool made the
      10,000-step oracle run 5-70x slower (measured 2-3 s with 1 thread vs 16-180 s with 2).
      torch is configured only if a test module imported it; conftest does not import it.
    * everything alive so far (modules, pytest's and Hypothesis's state) is moved out of the
      cyclic GC's reach, so that GC passes triggered by the oracle's many short-lived
      objects do not walk the whole session heap each time.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------------------
# Comparing a manual_bptt result with a reference result
# ---------------------------------------------------------------------------------------------
#: field -> (worst relative error seen, the test it was seen in); printed at the end of the run.
WORST_REL_ERRORS: dict[str, tuple[float, str]] = {}


def _record(errors: Mapping[str, float], where: str) -> None:
    for field, err in errors.items():
        if err > WORST_REL_ERRORS.get(field, (-1.0, ""))[0]:
            WORST_REL_ERRORS[field] = (err, where)


def check_result(
    actual: Any,
    expected: Any,
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    dtype: type = np.float64,
    context: str = "",
    record: bool = True,
) -> dict[str, float]:
    """Compare every field of a manual_bptt result with the oracle's (see assert_results_close).

    loss (a Python float, compared as a scalar), grads U/W/V/b/c (None exactly where the
    other is None), ds0, dxs (None for tokens, in both) and final_state; each must be finite
    and satisfy max|a - b| <= rtol * max|ref| + atol. Every array of ``actual`` must have
    dtype ``dtype``. The relative errors are recorded for the end-of-run summary when
    ``record`` (leave it on for float64 comparisons only).
    """
    if not isinstance(actual.loss, float):
        raise AssertionError(f"loss: expected a Python float, got {type(actual.loss).__name__}")
    for name, arr in (
        *((f"grads.{n}", getattr(actual.grads, n)) for n in ("U", "W", "V", "b", "c")),
        ("ds0", actual.ds0),
        ("dxs", actual.dxs),
        ("final_state", actual.final_state),
    ):
        if arr is not None and np.asarray(arr).dtype != np.dtype(dtype):
            raise AssertionError(f"{name}: dtype {np.asarray(arr).dtype}, expected {np.dtype(dtype)}")
    assert_results_close(actual, expected, rtol=rtol, atol=atol, context=context)
    # The error relative to the tolerance's own scale: max|a - b| / max(max|ref|, atol / rtol).
    # This is the plain relative error whenever max|ref| >= atol / rtol (1e-2 by default);
    # below that the check is absolute, and a relative error would overstate it.
    errors = {}
    for (name, a), (_, e) in zip(result_fields(actual), result_fields(expected), strict=True):
        if a is not None:
            e64 = np.asarray(e, dtype=np.float64)
            scale = max(float(np.max(np.abs(e64), initial=0.0)), atol / rtol)
            errors[name] = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - e64), initial=0.0)) / scale
    if record:
        _record(errors, os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0])
    return errors


def oracle_close(
    actual: Any, expected: Any, *, name: str, key: str, rtol: float = RTOL, atol: float = ATOL
) -> None:
    """assert_close on one array, then record max|a - b| / max(max|ref|, atol / rtol) under
    ``key`` for the end-of-run summary (the same scale as check_result)."""
    assert_close(actual, expected, name=name, rtol=rtol, atol=atol)
    scale = max(float(np.max(np.abs(expected))), atol / rtol)
    err = float(np.max(np.abs(np.asarray(actual) - np.asarray(expected)))) / scale
    _record({key: err}, os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0])


def assert_identical(r1: Any, r2: Any) -> None:
    """Every field of two results is bitwise equal (same dtype, same values, None alike)."""
    assert r1.loss == r2.loss
    for (name, a), (_, b) in zip(result_fields(r1), result_fields(r2), strict=True):
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        assert np.asarray(a).dtype == np.asarray(b).dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.fixture(scope="session")
def check() -> Callable[..., dict[str, float]]:
    """The checker ``check(actual, expected, *, rtol=RTOL, atol=ATOL, context="")`` (1e-10, 1e-12)."""
    return check_result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The worst relative errors seen, with -v or when a test failed (a quiet run prints only
    its result line and its failures)."""
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if not WORST_REL_ERRORS or not (failed or terminalreporter.config.option.verbose > 0):
        return
    terminalreporter.section("worst relative error vs the oracle, float64: max|a-b| / max(max|ref|, 1e-2)")
    for field, (err, where) in sorted(WORST_REL_ERRORS.items(), key=lambda kv: -kv[1][0]):
        terminalreporter.write_line(f"{field:12s} {err:.3e}   in {where}")


#: The fields of a plain problem: dense inputs, biases, tanh, full BPTT, summed loss, no mask,
#: zero s0, weight scale 1.
PLAIN = {
    "tokens": False,
    "bias": True,
    "activation": "tanh",
    "truncate": None,
    "reduction": "sum",
    "use_mask": False,
    "s0_kind": None,
    "weight_scale": 1.0,
}


def problem_with(**fields: Any) -> Problem:
    """A deterministic test problem: the given RNNConfig fields (sizes T, B, D, H, K and the
    seed at least), the others from PLAIN."""
    return make_problem(RNNConfig(**{**PLAIN, **fields}))


# ---------------------------------------------------------------------------------------------
# Gated problems
# ---------------------------------------------------------------------------------------------
def gated_problem(cls: type, *, seed: int = 0, D: int = 3, H: int = 2, K: int = 3, T: int = 4, B: int = 2,
                  scale: float = 1.5) -> tuple[Any, np.ndarray, np.ndarray, Any]:
    """(p, xs, ys, s0): a gated cell of type cls (init with weight_scale=scale), dense batched inputs
    (B, T, D), labels (B, T) and an initial state of every row, (B, H) (an LSTMState for the LSTM),
    drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    p = cls.init(D, H, K, seed=seed, weight_scale=scale)
    xs = rng.standard_normal((B, T, D))
    ys = rng.integers(0, K, (B, T))
    parts = [rng.standard_normal((B, H)) for _ in range(2 if cls is LSTMParams else 1)]
    s0 = LSTMState(*parts) if cls is LSTMParams else parts[0]
    return p, xs, ys, s0


def gated_arrays(
    cls: type,
    *,
    D: int = 3,
    H: int = 4,
    K: int = 5,
    T: int = 6,
    B: int = 2,
    seed: int = 0,
    tokens: bool = False,
    batched: bool = True,
    bias: bool = True,
    out_bias: bool = True,
    s0_kind: str | None = "rows",
    use_mask: bool = False,
    weight_scale: float = 1.0,
    scale_inputs: bool = False,
) -> tuple[Any, np.ndarray, np.ndarray, Any, np.ndarray | None]:
    """(p, xs, ys, s0, mask) of a random gated problem, drawn from ``seed`` in this order.

    p: cls.init(D, H, K, weight_scale=weight_scale, bias=bias), c None unless out_bias. xs: token ids
    or dense inputs (times weight_scale with scale_inputs), batched (B, T) / (B, T, D) or not.
    s0_kind: None (s0 None: zeros), "shared" ((H,) for every row) or "rows" ((B, H)); an
    LSTMState for the LSTM. mask: a bool like ys (its first target counted) with use_mask, else None.
    """
    rng = np.random.default_rng(seed)
    p = cls.init(D, H, K, seed=seed, bias=bias, weight_scale=weight_scale)
    if not out_bias:
        p = p.replace(c=None)
    lead = (B, T) if batched else (T,)
    if tokens:
        xs = rng.integers(0, D, lead)
    else:
        xs = rng.standard_normal((*lead, D))
        if scale_inputs:
            xs = weight_scale * xs
    ys = rng.integers(0, K, lead)
    mask = None
    if use_mask:
        mask = rng.random(lead) < 0.7
        mask.flat[0] = True
    s0 = None
    if s0_kind is not None:
        shape = (B, H) if (s0_kind == "rows" and batched) else (H,)
        parts = [rng.standard_normal(shape) for _ in range(2 if cls is LSTMParams else 1)]
        s0 = LSTMState(*parts) if cls is LSTMParams else parts[0]
    return p, xs, ys, s0, mask
