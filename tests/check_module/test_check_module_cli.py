"""``manual-bptt check-module``: exit statuses and files, as for ``report`` (run in this process)."""

from __future__ import annotations

import json

import torch

from manual_bptt_cli import main


def test_torchs_lstm_at_float32_passes_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["check-module", "torch.nn:LSTM", "--cell", "lstm", "--dtype", "float32", "--quick",
                 "--examples", "2", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert text.startswith("PASS: torch.nn:LSTM (--cell lstm, float32, cpu)")
    assert sorted(p.name for p in out.iterdir()) == ["lag_profile.png", "report.json", "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "PASS" and data["baseline"] == "torch.nn.LSTM" and len(data["arrays"]) == 10
    assert "| c0 (dc0) |" in (out / "report.md").read_text()


def test_a_broken_layer_exits_1_with_the_sentence_that_says_where(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["check-module", "user_modules:rnn_cut_after_one_step", "--cell", "rnn", "--quick",
                 "--examples", "2", "--out", str(out), "--no-plots"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 1, text
    assert "wrong from lag 2 on: the recurrence is cut after one step" in text
    md = (out / "report.md").read_text()
    assert "| 2 |" in md and "NO |" in md and not (out / "lag_profile.png").exists()


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["check-module", "user_modules:renamed_parameters", "--cell", "rnn", "--quick",
                 "--out", out]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "has no parameter weight_ih_l0" in err and "Traceback" not in err
    assert main(["check-module", "torch.nn:LSTM", "--out", out]) == 2  # --cell is required
    assert "--cell" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["check-module", "torch.nn:LSTM", "--cell", "lstm", "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert (
            main(["check-module", "torch.nn:LSTM", "--cell", "lstm", "--device", "cuda", "--out", out]) == 2
        )
        assert "no CUDA device" in capsys.readouterr().err
