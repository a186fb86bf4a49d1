"""check-module tells the truth at the edges of its contract: torch's correct stacked and
bidirectional layers pass; a layer outside the contract is a usage error naming what was tried,
never a FAIL; a factory that declines a size is unsupported there, not failing; and a layer
that is wrong only in eval() mode, with its default h0, when x does not require grad, or when
one instance is reused, is caught.

The layers live in tests/edge_modules.py (loaded by name in the worker processes).
"""

from __future__ import annotations

import json

import pytest

import bptt_report
from bptt_report import cli

QUICK = {"quick": True, "examples": 2, "timeout": 30}


def _run(capsys, tmp_path, factory: str, cell: str, *extra: str) -> tuple[int, str, str]:
    argv = ["check-module", factory, "--cell", cell, "--quick", "--examples", "2", "--no-plots",
            "--timeout", "30", "--out", str(tmp_path / "r"), *extra]  # fmt: skip
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# torch's layers of other shapes than one layer, one direction: checked, and they pass
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "cell", "words"),
    [
        ("edge_modules:lstm_two_layers", "lstm", "2 layers"),
        ("edge_modules:lstm_bidirectional", "lstm", "bidirectional"),
        ("edge_modules:gru_bidirectional", "gru", "bidirectional"),
    ],
)
def test_torchs_multi_layer_and_bidirectional_layers_pass(factory, cell, words, tmp_path, capsys):
    """Correct layers: PASS (exit 0), their shape read from their attributes. (At float32 and
    for more shapes: tests/check_module/test_stacks.py.)"""
    code, out, err = _run(capsys, tmp_path, factory, cell)
    assert code == 0, out + err
    assert out.startswith(f"PASS: {factory} (--cell {cell}, {words}, float64, cpu)"), out


# ---------------------------------------------------------------------------------------------
# Outside the contract: a usage error that says what was tried, never a FAIL
# ---------------------------------------------------------------------------------------------
def test_a_factory_that_does_not_take_input_size_is_a_usage_error_naming_it(tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path, "edge_modules:MinGRU", "gru")
    assert code == 2, out + err
    assert "input_size" in err and "Traceback" not in err, err


def test_an_lstm_checked_as_a_gru_is_a_usage_error_that_suggests_the_lstm(tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path, "torch.nn:LSTM", "gru")
    assert code == 2, out + err
    assert "did you mean --cell lstm" in err, err


def test_a_forward_that_raises_torchs_hidden_size_error_is_a_usage_error_naming_the_cause(tmp_path, capsys):
    """A two-layer LSTM that neither its attributes nor its parameter names show: torch's
    "Expected hidden[0] size (2, B, H), got [1, B, H]" is recognised as a contract mismatch."""
    code, out, err = _run(capsys, tmp_path, "edge_modules:lstm_two_layers_unseen", "lstm")
    assert code == 2, out + err
    assert "Expected hidden[0] size (2, " in err and "2 layers x directions" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_size_the_factory_declines_with_not_implemented_error_is_unsupported_not_failed():
    """NotImplementedError for hidden_size > 5 (three of the four quick configurations of seed 0):
    those configurations are unsupported, the others are checked."""
    r = bptt_report.check_module("edge_modules:rnn_small_hidden_only", cell="rnn", quick=True, examples=4,
                                 timeout=30)  # fmt: skip
    assert r.verdict in ("PASS", "INSUFFICIENT"), r.summary()
    assert r.checked >= 1, r.summary()
    assert "unsupported" in r.summary() or "NotImplementedError" in r.summary(), r.summary()


def test_a_factory_that_declines_every_size_is_insufficient_not_failed(tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path, "edge_modules:rnn_declines_every_size", "rnn")
    assert code == 3, out + err
    assert out.startswith("INSUFFICIENT") and "none of the 2 configurations could be checked" in out, out
    assert "not checked: sizes the factory declines (NotImplementedError for input_size=" in out, out


def test_findings_that_differ_only_in_shapes_are_one_finding():
    """A module whose forward raises, naming the shape of x, for every even T (three of the four
    quick configurations of seed 0, three different shapes): one finding, with its count."""
    r = bptt_report.check_module("edge_modules:rnn_raises_on_even_T", cell="rnn", quick=True, examples=4,
                                 timeout=30)  # fmt: skip
    assert r.verdict == "FAIL", r.summary()
    raised = [f for f in r.findings if "raised RuntimeError" in f]
    assert len(raised) == 1, raised


def test_a_layer_wrong_only_for_long_sequences_is_localized_without_hanging():
    """Its localization runs the large configuration's prefixes (T about 70 requests of a few
    hundred kB each, and as large replies): asked of the pool one batch at a time, so that
    neither side waits on a full pipe for the other."""
    r = bptt_report.check_module("edge_modules:rnn_wrong_when_long", cell="rnn", quick=True, examples=4,
                                 timeout=30)  # fmt: skip
    assert r.verdict == "FAIL" and r.configs[-1]["large"], r.summary()
    assert r.localization.smallest_T == 51 and "the forward is wrong" in r.localization.sentence


# ---------------------------------------------------------------------------------------------
# Wrong only where check-module did not look: eval(), m(x), x without grad, a reused instance
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory",
    ["rnn_wrong_in_eval", "rnn_wrong_default_h0", "rnn_wrong_without_x_grad", "rnn_caches_weights"],
)
def test_a_layer_wrong_only_in_a_way_it_is_often_called_fails(factory):
    r = bptt_report.check_module(f"edge_modules:{factory}", cell="rnn", **QUICK)
    assert r.verdict == "FAIL", r.summary()


def test_the_modules_own_notes_are_shown_in_the_summary_and_the_report(tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path, "edge_modules:rnn_without_grad", "rnn")
    assert code == 1, out + err
    assert "- note: none of the outputs requires a gradient in 2 of 2 configurations (first #0)" in out, out
    assert "weight_ih_l0.grad, weight_hh_l0.grad, bias_ih_l0.grad, bias_hh_l0.grad" in out, out
    report = (tmp_path / "r" / "report.md").read_text()
    assert "- note: none of the outputs requires a gradient" in report
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert any("None (counted as zeros)" in n for n in data["notes"]), data["notes"]


def test_a_forward_that_requires_its_state_is_given_h0_and_says_so():
    """user_modules' layers take forward(x, state): the configurations planned as m(x) give them
    h0 (there is no default to check), compare dh0 too, and say so in a note."""
    r = bptt_report.check_module("user_modules:correct_gru", cell="gru", **QUICK)
    assert r.verdict == "PASS", r.summary()
    assert any(n.startswith("the forward requires its initial state: given h0") for n in r.notes), r.notes
    assert r.configs[1]["call"]["h0"] is False and "h0" in [a.name for a in r.arrays]


def test_the_same_layer_without_its_flaw_passes():
    """The control: the layer of the four above, right in every mode (it must keep passing when
    check-module calls it in eval() mode, as m(x), with x not requiring grad, and reused)."""
    bptt_report.check_module("edge_modules:rnn_correct", cell="rnn", **QUICK).assert_ok()
