"""The checker cannot be fooled: no target that computes nothing right, changes its inputs,
reaches for the oracle, or ends or hangs its process gets PASS or exit status 0, from the
command line or from check(...).assert_ok(); correct targets that support little get a real
check and PASS.

The targets live in tests/broken_impls.py, importable by name (tests/ is on sys.path, and the
worker processes inherit it).
"""

from __future__ import annotations

import json
import sys

import pytest

import bptt_report
from bptt_report import cli

#: target -> (a phrase the failure must contain, the verdict, the timeout to use)
ATTACKS = {
    "broken_impls:returns_none": (
        "the target returned None, not an object with .loss and .grads",
        "FAIL",
        60,
    ),
    "broken_impls:not_implemented": ("nothing could be checked", "INSUFFICIENT", 60),
    "os:system": ("the target raised TypeError", "FAIL", 60),
    "manual_bptt:RNNParams": ("the target raised", "FAIL", 60),
    "broken_impls:zeroes_ys": ("the target modified ys (its input) during configuration #", "FAIL", 60),
    "broken_impls:sets_mask_all_true": (
        "the target modified mask (its input) during configuration #",
        "FAIL",
        60,
    ),
    "broken_impls:replaces_oracle": ("disagrees with the oracle in W", "FAIL", 60),
    "broken_impls:calls_sys_exit_0": ("the target called sys.exit(0) during", "FAIL", 60),
    "broken_impls:calls_sys_exit_3": ("the target called sys.exit(3) during", "FAIL", 60),
    "broken_impls:calls_os_exit_0": (
        "the target exited with status 0 during the probe of tokens (T,)",
        "FAIL",
        60,
    ),
    "broken_impls:segfaults": ("killed by signal 11 (SIGSEGV) during", "FAIL", 60),
    "broken_impls:sleeps": ("the target ran past the timeout during", "FAIL", 1),
}


def _said(result: bptt_report.CheckResult) -> str:
    return result.summary() + "\n" + "\n".join(c.message for c in result.checks)


@pytest.mark.parametrize("target", list(ATTACKS))
def test_attack_gets_no_pass_and_no_exit_0_and_the_report_is_written(target, tmp_path, capsys, monkeypatch):
    """From the command line (in-process): exit status 1 or 3, a report written; and the
    CheckResult that check() returned to it: the verdict, the message, assert_ok() raising."""
    import reference
    from bptt_report import runner

    phrase, verdict, timeout = ATTACKS[target]
    results = []

    def recording_check(*args, **kwargs):
        results.append(runner_check(*args, **kwargs))
        return results[-1]

    runner_check = runner.check
    monkeypatch.setattr(runner, "check", recording_check)
    oracle_before = reference.bptt
    out = tmp_path / "r"
    argv = ["report", "--quick", "--examples", "8", "--no-plots", "--no-progress", "--timeout", str(timeout),
            "--target", target, "--out", str(out)]  # fmt: skip
    code = cli.main(argv)
    stdout, _ = capsys.readouterr()
    assert code == {"FAIL": 1, "INSUFFICIENT": 3}[verdict], stdout
    assert stdout.startswith(f"{verdict}: {target}")
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == verdict and data["ok"] is False
    assert (out / "report.md").read_text().startswith(f"# Gradient check of `{target}`: {verdict}")

    (r,) = results
    assert r.verdict == verdict and not r.ok
    assert phrase in _said(r), r.summary()
    assert "np.float64(" not in _said(r)
    with pytest.raises(AssertionError, match=verdict):
        r.assert_ok()
    assert reference.bptt is oracle_before


def test_transposed_dW_of_a_target_with_only_s0_fails_the_quick_check():
    """(p, xs, ys, s0=None): every configuration of the quick sweep is drawn inside what it
    supports (tanh, no truncate, mask or mean), so all 32 are really checked and W fails."""
    r = bptt_report.check("broken_impls:s0_only_transposed_dW", quick=True, max_localized=1)
    assert r.verdict == "FAIL"
    assert len(r.checked) == r.size.examples == 32
    assert {c.config.activation for c in r.checked} == {"tanh"}
    assert all(c.config.truncate is None and not c.config.use_mask for c in r.checked)
    assert set(r.capabilities.unsupported) == {
        "truncate",
        "mask",
        "reduction=mean",
        "sigmoid",
        "relu",
        "identity",
    }
    assert "s0" in r.capabilities.options
    with pytest.raises(AssertionError, match="W disagrees"):
        r.assert_ok()


@pytest.mark.parametrize("target", ["broken_impls:tokens_only", "broken_impls:tokens_only_declared"])
def test_a_correct_target_for_token_ids_only_gets_a_real_check_and_passes(target):
    r = bptt_report.check(target, quick=True)
    r.assert_ok()
    assert r.verdict == "PASS"
    assert r.capabilities.forms == ("tokens (T,)",)
    assert len(r.checked) == 32 and all(c.config.tokens and c.config.B is None for c in r.checked)
    how = "declared" if target.endswith("declared") else "probed"
    assert r.capabilities.sources["tokens (T,)"] == how
    assert all(why.startswith("not declared" if how == "declared" else "probed: raised NotImplementedError")
               for f, why in r.capabilities.unsupported.items())  # fmt: skip


def test_the_target_runs_where_neither_torch_nor_the_oracle_is_imported():
    bptt_report.check("broken_impls:torch_free_bptt", quick=True, examples=6).assert_ok()


def test_the_target_module_is_never_imported_in_the_checker(tmp_path, monkeypatch):
    (tmp_path / "zz_checker_probe_target.py").write_text(
        "import manual_bptt\n\ndef bptt(p, xs, ys, **kw):\n    return manual_bptt.bptt(p, xs, ys, **kw)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = bptt_report.check("zz_checker_probe_target:bptt", quick=True, examples=6)
    assert r.verdict == "PASS", r.summary()
    assert "zz_checker_probe_target" not in sys.modules
