"""The report command line: ``bptt_report.cli.main`` (``python -m bptt_report``); exit status
0 when everything agrees, 1 when anything disagrees, 2 on a usage error.

Most commands run in-process through ``main(argv)``; one runs as a real subprocess to prove
that the module entry point works. The console script ``manual-bptt`` (manual_bptt_cli) and
``train`` are tested in test_command_line.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bptt_report import cli
from locations import SRC, TESTS


def run(argv, capsys):
    """(exit status, stdout, stderr) of the command line, in-process."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def quick_report(tmp_path, *extra):
    return ["report", "--quick", "--no-progress", "--out", str(tmp_path / "r"), *extra]


def test_report_on_manual_bptt_exits_0_and_writes_the_report(tmp_path, capsys):
    code, out, err = run(quick_report(tmp_path, "--seed", "3"), capsys)
    assert code == 0, out + err
    assert out.startswith("PASS: manual_bptt:bptt")
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    expected = ["errors.png", "lag_profile.png", "report.json", "report.md", "report.xml", "state_grads.png"]
    assert files == expected
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["ok"] is True and data["settings"]["seed"] == 3 and data["target"] == "manual_bptt:bptt"


def test_broken_target_exits_1_and_names_the_parameter(tmp_path, capsys):
    code, out, _ = run(quick_report(tmp_path, "--target", "broken_impls:transposed_dW", "--no-plots"), capsys)
    assert code == 1
    assert out.startswith("FAIL: broken_impls:transposed_dW")
    assert "W disagrees with the oracle" in out and "Where: immediate" in out
    md = (tmp_path / "r" / "report.md").read_text()
    assert "FAIL" in md.splitlines()[0]


def test_float32_target_exits_1_and_says_float32(tmp_path, capsys):
    code, out, _ = run(
        quick_report(tmp_path, "--target", "broken_impls:float32_outputs", "--no-plots", "--examples", "6"),
        capsys,
    )
    assert code == 1
    assert "float32" in out and "float64 tolerance" in out


def test_unsupported_options_exit_0(tmp_path, capsys):
    code, out, _ = run(
        quick_report(tmp_path, "--target", "broken_impls:correct_without_mask", "--no-plots"), capsys
    )
    assert code == 0
    assert "not supported, so not checked: mask" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "--target", "no_such_module_xyz:bptt"], "cannot import module 'no_such_module_xyz'"),
        (["report", "--target", "manual_bptt:nope"], "has no attribute 'nope'"),
        (["report", "--target", "manual_bptt:__version__"], "not a callable"),
        (["report", "--target", "manual_bptt.bptt"], "MODULE:FUNCTION"),
        (["report", "--examples", "0"], "expected an integer >= 1"),
        (["report", "--jobs", "two"], "expected an integer"),
        (["report", "--seed", "-1"], "expected an integer >= 0"),
        (["report", "--bogus"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
        ([], "usage:"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    code, _out, err = run(argv, capsys)
    assert code == 2
    assert message in err


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run(["report", "--quick", "--out", str(tmp_path / "f")], capsys)
    assert code == 2 and "not a directory" in err


def test_help_exits_0(capsys):
    code, out, _ = run(["report", "--help"], capsys)
    assert code == 0
    for option in ("--out", "--target", "--seed", "--examples", "--jobs", "--quick"):
        assert option in out


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def test_python_m_bptt_report_help():
    r = subprocess.run(
        [sys.executable, "-m", "bptt_report", "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # python -m bptt_report has the report command alone; train lives in manual_bptt_cli, above it
    assert r.returncode == 0 and "report" in r.stdout and "train" not in r.stdout
