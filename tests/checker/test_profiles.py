"""--profile: the sweep sizes, the thorough profile's conditioning (radius caps, short truncation
windows), and its RTRL and decomposition cross-checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import bptt_report
import manual_bptt as mb
from bptt_report.judge import crosschecks
from bptt_report.plan import profiles
from bptt_report.plan.sweep import FULL, QUICK, SweepSize, plan_configs
from bptt_report.targets import methods
from manual_bptt.problems import RNNConfig, make_problem


@pytest.fixture(scope="module")
def thorough_plan():
    """5000 configurations of the thorough sweep's ranges (seed 0), as drawn and as conditioned."""
    raw = plan_configs(0, dataclasses.replace(profiles.THOROUGH, examples=5000))
    return raw, profiles.conditioned(raw)


def test_profiles_name_the_quick_default_and_thorough_sweeps():
    assert profiles.profile_size(None) == FULL and profiles.profile_size(None, quick=True) == QUICK
    t = profiles.profile_size("thorough")
    assert (t.examples, t.max_T, t.max_H, t.max_B, t.fd_examples) == (12000, 256, 64, 6, 200)
    assert t.examples >= 3 * FULL.examples and t.fd_examples > FULL.fd_examples
    assert profiles.profile_size("thorough", examples=40).examples == 40
    with pytest.raises(ValueError, match="profile: expected one of quick, default, thorough"):
        profiles.profile_size("huge")
    with pytest.raises(ValueError, match="contradict"):
        profiles.profile_size("thorough", quick=True)


def test_the_thorough_sweep_reaches_long_sequences_and_wide_states(thorough_plan):
    _, cfgs = thorough_plan
    assert max(c.T for c in cfgs) == 256 and max(c.H for c in cfgs[:-3]) == 64
    long, batch, wide = cfgs[-3:]  # the three large ones: T 256, B 32, H 128, full BPTT
    assert (long.T, batch.B, wide.H) == (256, 32, 128)
    assert {long.truncate, batch.truncate, wide.truncate} == {None}
    assert max(c.T for c in cfgs if c.truncate is None) > 200
    picked = [cfgs[i] for i in crosschecks.subset(cfgs)]
    assert 300 <= len(picked) <= crosschecks.MAX_CHECKS and max(c.T for c in picked) > 100
    assert all(c.T <= crosschecks.MAX_T and c.H <= crosschecks.MAX_H and c.truncate is None for c in picked)


def test_the_cross_check_subset_is_spread_over_the_sweep_and_its_cells():
    base = dict(T=5, B=None, D=3, H=4, K=2, tokens=True, bias=True, truncate=None, reduction="sum",
                use_mask=False, s0_kind=None, weight_scale=1.0)  # fmt: skip
    cfgs = [
        RNNConfig(**base, activation="tanh" if cell == "rnn" else None, seed=i, cell=cell)
        for cell in ("rnn", "gru", "lstm")
        for i in range(crosschecks.MAX_CHECKS)
    ]
    picked = crosschecks.subset(cfgs)
    assert len(picked) <= crosschecks.MAX_CHECKS
    assert {cfgs[i].cell for i in picked} == {"rnn", "gru", "lstm"}


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
    expected = len(crosschecks.subset([c.config for c in r.checks if c.kind == "oracle"]))
    assert expected > 0 and counts["rtrl"]["pass"] == counts["decompose"]["pass"] == expected
    assert "manual_bptt.rtrl" in r.summary()
    plain = bptt_report.check("broken_impls:sign_error", profile="thorough", max_localized=0)
    assert plain.counts()["rtrl"] == dict.fromkeys(("pass", "fail", "unsupported", "error"), 0)


def test_the_thorough_sweep_keeps_long_sequences_out_of_the_chaotic_regime(thorough_plan):
    raw, cfgs = thorough_plan
    (t1, r1), (t2, r2) = profiles.RADIUS_CAPS
    assert max(c.weight_scale for c in cfgs if c.T > t1) == r1
    assert max(c.weight_scale for c in cfgs if c.T > t2) == r2
    assert any(c.weight_scale == 3.0 for c in cfgs if c.T <= t1)  # exploding, on short ones
    assert [c.seed for c in cfgs] == [c.seed for c in raw]
    assert sum(a != b for a, b in zip(cfgs, raw, strict=True)) > 100


def test_the_thorough_sweep_draws_windows_of_more_than_one_step_on_short_sequences(thorough_plan):
    raw, cfgs = thorough_plan
    windowed = [(a, b) for a, b in zip(raw, cfgs, strict=True) if a.truncate is not None and a.truncate > 1]
    assert max(b.T for _, b in windowed) <= profiles.WINDOW_T < max(a.T for a, _ in windowed)
    for a, b in windowed:
        if a.truncate >= a.T - 1:  # beyond T - 1 stays as far beyond
            assert b.truncate - (b.T - 1) == a.truncate - (a.T - 1)
        else:  # about T/2 stays about T/2
            assert b.truncate == b.T // 2 < b.T - 1
        if a.T <= profiles.WINDOW_T:
            assert b.T == a.T
        else:
            assert profiles.WINDOW_T // 2 < b.T <= profiles.WINDOW_T
    assert all(a == b for a, b in zip(raw, cfgs, strict=True) if a.truncate in (None, 0, 1) and a.T <= 32)
