"""Our Hypothesis profiles are the ones in force (Hypothesis has a built-in "ci" profile that it
loads by itself when CI is set; conftest replaces it by ours)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from conftest import ACTIVE_PROFILE, PROFILES, choose_profile
from locations import ROOT


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "ci"),
        ({"CI": "true"}, "ci"),
        ({"CI": "false"}, "ci"),
        ({"HYPOTHESIS_PROFILE": "dev"}, "dev"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "thorough"}, "thorough"),
        ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
        ({"MUTANT_UNDER_TEST": ""}, "mutation"),
    ],
)
def test_choose_profile(env, expected):
    assert choose_profile(env) == expected


def test_active_profile_settings_are_in_effect():
    s = settings()
    assert settings.get_current_profile_name() == ACTIVE_PROFILE
    for key, value in PROFILES[ACTIVE_PROFILE].items():
        if key != "suppress_health_check":
            assert getattr(s, key) == value, key


def test_ci_environment_gets_our_ci_profile():
    """With CI=true (and no HYPOTHESIS_PROFILE) the session header shows our "ci" profile with
    our example count, not Hypothesis's built-in one (which has max_examples=100)."""
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    env["CI"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-v", "-p", "no:cacheprovider",
         str(Path(__file__))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    ci = PROFILES["ci"]
    assert ci["max_examples"] != 100
    want = f"hypothesis profile: ci (max_examples={ci['max_examples']}, derandomize=True"
    assert want in proc.stdout, proc.stdout + proc.stderr
