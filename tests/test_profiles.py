"""--profile: the sweep sizes, and the thorough profile's RTRL and decomposition cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

import bptt_report
import manual_bptt as mb
from bptt_report import crosschecks, methods, profiles
from bptt_report.sweep import FULL, QUICK, SweepSize, plan_configs
from manual_bptt.problems import RNNConfig, make_problem


def test_profiles_name_the_quick_default_and_thorough_sweeps():
    assert profiles.profile_size(None) == FULL and profiles.profile_size(None, quick=True) == QUICK
    t = profiles.profile_size("thorough")
    assert (
        t.examples >= FULL.examples and t.max_H == 64 and 100 <= t.max_T and t.fd_examples > FULL.fd_examples
    )
    assert profiles.profile_size("thorough", examples=40).examples == 40
    with pytest.raises(ValueError, match="profile: expected one of quick, default, thorough"):
        profiles.profile_size("huge")
    with pytest.raises(ValueError, match="contradict"):
        profiles.profile_size("thorough", quick=True)


def test_the_thorough_sweep_reaches_long_sequences_and_wide_states():
    cfgs = plan_configs(0, profiles.THOROUGH)
    assert max(c.T for c in cfgs) > 100 and max(c.H for c in cfgs) == 64
    assert 50 <= len(crosschecks.subset(cfgs)) <= crosschecks.MAX_CHECKS


@pytest.mark.parametrize("tokens, B", [(True, None), (False, 3)])
def test_the_cross_check_methods_agree_with_bptt(tokens, B):
    cfg = RNNConfig(T=5, B=B, D=3, H=4, K=2, tokens=tokens, bias=True, activation="tanh", truncate=None,
                    reduction="mean", use_mask=True, s0_kind="shared", weight_scale=1.5, seed=7)  # fmt: skip
    prob = make_problem(cfg)
    ref = mb.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())
    for fn in (methods.rtrl, methods.decomposed):
        kw = {k: v for k, v in prob.kwargs().items() if k != "truncate"}  # full BPTT: no such keyword
        got = fn(prob.params, prob.xs, prob.ys, **kw)
        assert abs(got.loss - ref.loss) <= 1e-12 * abs(ref.loss)
        for name in ("U", "W", "V", "b", "c"):
            a, r = getattr(got.grads, name), getattr(ref.grads, name)
            assert np.max(np.abs(a - r)) <= 1e-10 * np.max(np.abs(r)) + 1e-12, (fn.__name__, name)


def test_a_thorough_check_of_manual_bptt_cross_checks_rtrl_and_the_decomposition(monkeypatch):
    small = SweepSize(examples=24, max_T=6, max_B=3, max_D=4, max_H=5, max_K=4, fd_examples=2)
    monkeypatch.setitem(profiles.PROFILES, "thorough", small)
    r = bptt_report.check(profile="thorough", max_localized=0)
    assert r.verdict == "PASS", r.summary()
    counts = r.counts()
    expected = len(crosschecks.subset(plan_configs(0, small)))
    assert expected > 0 and counts["rtrl"]["pass"] == counts["decompose"]["pass"] == expected
    assert "manual_bptt.rtrl" in r.summary()
    plain = bptt_report.check("broken_impls:sign_error", profile="thorough", max_localized=0)
    assert plain.counts()["rtrl"] == dict.fromkeys(("pass", "fail", "unsupported", "error"), 0)


def test_the_thorough_sweep_keeps_long_sequences_out_of_the_chaotic_regime():
    cfgs = profiles.conditioned(plan_configs(0, profiles.THOROUGH))
    long = [c for c in cfgs if c.T > profiles.LONG_T]
    assert long and max(c.weight_scale for c in long) == profiles.LONG_RADIUS
    assert any(c.weight_scale == 3.0 for c in cfgs if c.T <= profiles.LONG_T)  # exploding, on short ones
    raw = plan_configs(0, profiles.THOROUGH)
    assert [c.seed for c in cfgs] == [c.seed for c in raw]
    assert sum(a != b for a, b in zip(cfgs, raw, strict=True)) > 100
