"""``manual-bptt check-module`` on every shape of torch's recurrent layers: torch's own stacked,
bidirectional, projected and variable-length layers pass at float64 and at float32 (exit 0),
and a plain loop LSTM with one planted bug in a stacked, bidirectional, projected or
variable-length layer fails (exit 1), its finding naming the layer and direction.

The layers live in tests/stack_modules.py and tests/edge_modules.py (loaded by name in the
worker processes). Each run is one worker process (most of its time is importing torch there):
two quick configurations, no plots. (nn.LSTM(num_layers=2) and nn.GRU(bidirectional=True) at
float64: tests/check_module/test_edges.py.)
"""

from __future__ import annotations

import json

import pytest

from bptt_report import cli
from bptt_report.judge.compare import FACTOR


def _run(tmp_path, capsys, factory: str, cell: str, *extra: str) -> tuple[int, str, dict]:
    out = tmp_path / "r"
    argv = ["check-module", factory, "--cell", cell, "--quick", "--examples", "2", "--no-plots",
            "--timeout", "60", "--out", str(out), *extra]  # fmt: skip
    code = cli.main(argv)
    text = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text()) if code in (0, 1) else {}
    return code, text, data


@pytest.mark.parametrize(
    ("factory", "cell", "dtype", "words", "rows", "params", "extra"),
    [
        ("edge_modules:lstm_two_layers", "lstm", "float32", "2 layers", 2, 8, ()),
        ("edge_modules:gru_bidirectional", "gru", "float32", "bidirectional", 2, 8, ()),
        ("stack_modules:lstm_three_bidirectional_proj", "lstm", "float64",
         "3 layers, bidirectional, proj_size 2", 6, 30, ()),
        ("stack_modules:lstm_three_bidirectional_proj", "lstm", "float32",
         "3 layers, bidirectional, proj_size 2", 6, 30, ()),
        ("stack_modules:rnn_two_layers_relu", "rnn", "float64", "2 layers", 2, 8, ()),
        ("stack_modules:rnn_two_layers_relu", "rnn", "float32", "2 layers", 2, 8, ()),
        ("stack_modules:lstm_packed", "lstm", "float64", "variable lengths as PackedSequences", 1, 4, ()),
        ("torch.nn:LSTM", "lstm", "float32", "variable lengths as PackedSequences", 1, 4, ("--lengths",)),
    ],
)  # fmt: skip
def test_torchs_own_layers_of_every_shape_pass(
    factory, cell, dtype, words, rows, params, extra, tmp_path, capsys
):
    """Every parameter by its torch name, out, h_n, (c_n), dx, dh0, (dc0), each layer and
    direction agreeing; with variable lengths (declared by the factory, or --lengths), fed as
    PackedSequences of lengths all different and unsorted (one of length 1), then all full."""
    code, text, data = _run(tmp_path, capsys, factory, cell, "--dtype", dtype, *extra)
    assert code == 0, text
    assert text.startswith(f"PASS: {factory} (--cell {cell}, {words}, {dtype}, cpu"), text
    states = 2 if cell == "lstm" else 1  # h_n (c_n), h0 (c0)
    assert len(data["arrays"]) == params + 2 * states + 2 and data["checked"] == 2  # + out, x
    assert all(a["ok"] for a in data["arrays"])
    if dtype == "float32":
        assert all(float(a["ratio"]) <= FACTOR for a in data["arrays"])
    if rows > 1:
        assert len(data["layers"]) == rows and all(s["ok"] for s in data["layers"])
    if "lengths" in words:
        first, full = (c["lengths"] for c in data["configs"])
        T0, T1 = (c["T"] for c in data["configs"])
        assert min(first) == 1 and len(set(first)) == len(first) and first != sorted(first, reverse=True)
        assert first != [T0] * len(first) and full == [T1] * len(full)


def test_the_loop_lstm_without_a_flaw_passes(tmp_path, capsys):
    """The control of the planted bugs below: the same loop, correct, two layers, bidirectional,
    proj_size 2, taking x and lengths (its forward's lengths parameter declares it)."""
    code, text, data = _run(tmp_path, capsys, "stack_modules:loop_lstm", "lstm", "--dtype", "float32")
    assert code == 0, text
    assert "2 layers, bidirectional, proj_size 2, variable lengths as x and lengths, float32" in text
    assert min(data["configs"][0]["lengths"]) == 1


@pytest.mark.parametrize(
    ("factory", "layer", "said"),
    [
        ("loop_lstm_layer_1_cut", "layer 1", [
            "Where: layer 1: dU (weight_ih_l1), dW (weight_hh_l1), db_ih (bias_ih_l1), db_hh (bias_hh_l1)",
            "below it, wrong too (their gradient comes down through layer 1): layer 0: dU, dW",
            "the whole stack's dx wrong from lag 1 on",
        ]),
        ("loop_lstm_reverse_forward_weights", "layer 0, reverse direction", [
            "the forward is wrong: h_t, h_n, c_n differ from the reference",
            "it goes wrong first in layer 0, reverse direction: h_t (reverse half of out), h_n[1], c_n[1] "
            "differ (its forward direction agrees)",
            "its reverse direction computes with the forward direction's weights",
        ]),
        ("loop_lstm_reverse_not_per_length", "layer 0, reverse direction", [
            "it goes wrong first in layer 0, reverse direction",
            "wrong only with variable lengths: the same configuration with every sequence of length T agrees",
        ]),
        ("loop_lstm_projection_lost", "layer 0", [
            "- layer 0: wrong dW_hr (weight_hr_l0)\n",
            "the projection's gradient (weight_hr_l0) is lost",
            "layer 0: dW_hr (weight_hr_l0) wrong (the layer above it agrees)",
        ]),
        ("loop_lstm_padding_leaks", "layer 0, reverse direction", [
            "- layer 0, reverse direction: wrong dU (weight_ih_l0_reverse)",
            "(its forward direction agrees)",
            "steps past a sequence's length receive gradient",
        ]),
    ],
)  # fmt: skip
def test_a_planted_bug_in_a_stack_fails_naming_the_layer_and_direction(
    factory, layer, said, tmp_path, capsys
):
    code, text, data = _run(tmp_path, capsys, f"stack_modules:{factory}", "lstm")
    assert code == 1 and text.startswith("FAIL: "), text
    assert data["localization"]["layer"] == layer, data["localization"]
    for words in said:
        assert words in text, words
    wrong = {(s["layer"], s["direction"]) for s in data["layers"] if not s["ok"]}
    forward_ok = {"loop_lstm_reverse_not_per_length", "loop_lstm_padding_leaks"}
    if factory in forward_ok:  # the forward direction's own parameters and states agree
        assert wrong == {(0, "reverse")}, wrong
    if factory == "loop_lstm_projection_lost":
        (s,) = [s for s in data["layers"] if not s["ok"]]
        assert [p["name"] for p in s["parts"] if not p["ok"]] == ["weight_hr_l0"]
