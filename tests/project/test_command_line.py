"""The console script package manual_bptt_cli: ``manual-bptt`` and ``python -m manual_bptt_cli``.

It dispatches ``report`` to bptt_report.cli and ``train`` to bptt_train.cli, has ``--version``,
imports neither command's module before that command is chosen, and ``train`` never loads
torch or the checker. A real Ctrl-C (SIGINT) during ``train`` stops it with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import manual_bptt
import manual_bptt_cli
from locations import SRC, TESTS


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = manual_bptt_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tiny_train_argv(tmp_path: Path, steps: int = 3) -> list[str]:
    text = tmp_path / "text.txt"
    text.write_text("hello world, hello bptt. " * 20, encoding="utf-8")
    return ["train", "--text", str(text), "--steps", str(steps), "--hidden", "4", "--seq-len", "6",
            "--sample-len", "5", "--out", str(tmp_path / "t")]  # fmt: skip


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"manual-bptt {manual_bptt.__version__}"


def test_top_help_lists_both_commands_and_a_real_start(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "report" in out and "train" in out and "--version" in out
    assert "Start with: manual-bptt report --quick" in out


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([], capsys)
    assert code == 2 and "usage:" in err


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "invalid choice" in err


def test_train_help_is_plain_text_not_rest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    words = " ".join(out.split())  # argparse wraps the description
    assert "Train a character-level language model" in words and "130 interrupted" in words
    for option in ("--text", "--hidden", "--steps", "--seq-len", "--optimizer", "--out"):
        assert option in out
    assert "``" not in out and "::" not in out


def test_train_runs_bptt_train_and_writes_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(tiny_train_argv(tmp_path), capsys)
    assert code == 0, out + err
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "loss_curve.json",
        "loss_curve.png",
        "sample.txt",
    ]


def test_train_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["train", "--steps", "x"], capsys)
    assert code == 2 and "--steps" in err


def test_report_goes_to_the_report_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptt_report import cli

    calls = []
    monkeypatch.setattr(cli, "run_report", lambda args: calls.append(args) or 7)
    code, _, _ = run(["report", "--quick", "--seed", "5", "--no-plots"], capsys)
    assert code == 7
    [args] = calls
    assert args.quick and args.seed == 5 and args.no_plots and args.target == "manual_bptt:bptt"


def test_report_help_shows_the_report_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["report", "--help"], capsys)
    assert code == 0
    for option in ("--out", "--target", "--seed", "--examples", "--jobs", "--quick"):
        assert option in out


def test_train_imports_neither_torch_nor_the_checker(tmp_path: Path) -> None:
    """train, start to finish, in a fresh interpreter where torch, reference and bptt_report
    cannot be imported at all."""
    code = (
        "import sys\n"
        "for name in ('torch', 'reference', 'bptt_report'):\n"
        "    sys.modules[name] = None\n"
        "import manual_bptt_cli\n"
        f"rc = manual_bptt_cli.main({tiny_train_argv(tmp_path)!r})\n"
        "assert rc == 0, rc\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr


def test_importing_the_command_line_loads_no_command() -> None:
    code = (
        "import sys\n"
        "import manual_bptt_cli\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                ('torch', 'reference', 'bptt_report', 'bptt_train', 'manual_bptt', 'numpy'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_python_m_manual_bptt_cli_report_end_to_end(tmp_path: Path) -> None:
    """The real entry point, a failing target, in a subprocess: exit status 1, report written."""
    r = subprocess.run(
        [sys.executable, "-m", "manual_bptt_cli", "report", "--quick", "--examples", "4", "--no-plots",
         "--target", "broken_impls:sign_error", "--out", str(tmp_path / "r")],
        env=subprocess_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert (tmp_path / "r" / "report.json").exists()


def test_python_m_manual_bptt_is_gone() -> None:
    r = subprocess.run([sys.executable, "-m", "manual_bptt", "--help"], env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "No module named manual_bptt.__main__" in r.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_during_train_stops_with_one_line_and_keeps_the_curve(tmp_path: Path) -> None:
    argv = tiny_train_argv(tmp_path, steps=10**7)
    proc = subprocess.Popen(
        [sys.executable, "-m", "manual_bptt_cli", *argv[:-2], "--print-every", "1", "--out", argv[-1]],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for training to have done a few steps
            line = proc.stdout.readline()
            if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= 3:
                break
        else:
            pytest.fail("training printed no progress within 60 s")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("manual-bptt train: interrupted at step ")
    curve = json.loads((tmp_path / "t" / "loss_curve.json").read_text(encoding="utf-8"))
    assert curve["interrupted"] is True and curve["steps_done"] >= 3
    assert len(curve["loss"]) == curve["steps_done"]
    assert (tmp_path / "t" / "sample.txt").exists() and "wrote " in out
