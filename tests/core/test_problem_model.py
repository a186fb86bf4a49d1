"""The plain problem model (manual_bptt.problems) and the comparison (manual_bptt.checking) need
numpy only; manual_bptt.testing keeps the Hypothesis strategies and re-exports both, so every
``manual_bptt.testing.*`` name keeps working; the tolerance constants are defined once."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import manual_bptt.checking as checking
import manual_bptt.problems as problems
import manual_bptt.testing as testing
from locations import SRC

PROBLEM_NAMES = ("RNNConfig", "Problem", "make_problem", "WEIGHT_SCALES", "S0_KINDS")
CHECKING_NAMES = (
    "assert_close",
    "max_rel_error",
    "result_fields",
    "assert_results_close",
    "central_differences",
    "RTOL",
    "ATOL",
)


@pytest.mark.parametrize(
    ("module", "name"), [(problems, n) for n in PROBLEM_NAMES] + [(checking, n) for n in CHECKING_NAMES]
)
def test_testing_re_exports_the_same_object(module, name):
    assert getattr(testing, name) is getattr(module, name)
    assert name in testing.__all__ and name in module.__all__


def test_the_tolerance_is_the_projects_norm_wise_one():
    assert (checking.RTOL, checking.ATOL) == (1e-10, 1e-12)
    ref = np.array([1.0, -2.0])
    checking.assert_close(ref + 2e-10 - 1e-13, ref, name="x")  # 2e-10 - 1e-13 <= 1e-10 * 2 + 1e-12
    with pytest.raises(AssertionError, match="tolerance"):
        checking.assert_close(ref + 2e-10 + 2e-12, ref, name="x")
    with pytest.raises(AssertionError, match="not finite"):
        checking.assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), name="x")


def test_problem_model_and_checking_import_without_hypothesis():
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None\n"
        "from manual_bptt.problems import RNNConfig, make_problem\n"
        "from manual_bptt.checking import assert_results_close\n"
        "import manual_bptt as mb\n"
        "cfg = RNNConfig(T=3, B=2, D=4, H=5, K=6, tokens=True, bias=True, activation='tanh', truncate=None,\n"
        "                reduction='sum', use_mask=True, s0_kind='per_row', weight_scale=1.0, seed=1)\n"
        "p = make_problem(cfg)\n"
        "r = mb.bptt(p.params, p.xs, p.ys, **p.kwargs())\n"
        "assert_results_close(r, r)\n"
        "assert not any(m.split('.')[0] == 'hypothesis' for m in sys.modules if sys.modules[m])\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_make_problem_is_deterministic_in_the_seed():
    cfg = problems.RNNConfig(
        T=4,
        B=None,
        D=3,
        H=2,
        K=5,
        tokens=False,
        bias=False,
        activation="relu",
        truncate=1,
        reduction="mean",
        use_mask=False,
        s0_kind="shared",
        weight_scale=0.5,
        seed=9,
    )
    a, b = problems.make_problem(cfg), problems.make_problem(cfg)
    for x, y in (
        (a.xs, b.xs),
        (a.ys, b.ys),
        (a.s0, b.s0),
        *zip(a.params.arrays(), b.params.arrays(), strict=True),
    ):
        np.testing.assert_array_equal(x, y)
    assert a.params.b is None and a.xs.shape == (4, 3) and a.s0.shape == (2,)
