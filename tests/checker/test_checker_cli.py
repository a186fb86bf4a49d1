"""The report command's contract: usage errors found before any work (exit 2, one line), the
documented exit statuses, interrupts that leave nothing behind, code from the current
directory run only when asked for, and failures that can be replayed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bptt_report import cli, runner
from bptt_report.targets import contract
from locations import SRC, TESTS
from manual_bptt import __version__


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the sweep starts."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the sweep started before the usage error was found")

    monkeypatch.setattr(runner, "check", forbidden)


def _out_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "has_dir" / "report.json").mkdir(parents=True)
    return {
        "a file": (str(tmp_path / "afile"), "exists and is not a directory"),
        "under a file": (str(tmp_path / "afile" / "sub"), "is not a directory"),
        "dangling symlink": (str(tmp_path / "dangling"), "does not exist"),
        "in /proc": ("/proc/x", "cannot"),
        "a directory in the way": (str(tmp_path / "has_dir"), "report.json inside it is a directory"),
    }


@pytest.mark.parametrize(
    "case", ["a file", "under a file", "dangling symlink", "in /proc", "a directory in the way"]
)
def test_an_output_location_that_cannot_be_written_is_a_usage_error_before_any_work(
    case, tmp_path, capsys, no_work
):
    out, message = _out_cases(tmp_path)[case]
    code, stdout, err = run(["report", "--quick", "--out", out], capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert stdout == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_directory_without_write_permission_is_a_usage_error(tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(["report", "--quick", "--out", str(locked / "r")], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "cannot write" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs", "1000"], "--jobs 1000: at most"),
        (["--examples", str(10**9)], f"--examples {10**9}: at most {runner.MAX_EXAMPLES}"),
        (["--timeout", "0"], "expected a positive number of seconds"),
        (["--timeout", "nan"], "expected a positive number of seconds"),
    ],
)
def test_bounds_on_jobs_examples_and_timeout(argv, message, tmp_path, capsys, no_work):
    code, _, err = run(["report", "--quick", "--out", str(tmp_path / "r"), *argv], capsys)
    assert code == 2 and message in err


def test_an_internal_error_exits_4_not_1(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the checker")

    monkeypatch.setattr(runner, "check", broken)
    code, _, err = run(["report", "--quick", "--out", str(tmp_path / "r")], capsys)
    assert code == 4 and "internal error" in err and "a bug in the checker" in err


def test_insufficient_exits_3(tmp_path, capsys):
    argv = ["report", "--quick", "--no-plots", "--no-progress", "--examples", "4",
            "--target", "broken_impls:not_implemented", "--out", str(tmp_path / "r")]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 3 and out.startswith("INSUFFICIENT")


def test_help_names_the_default_directory_and_every_exit_status(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "manual-bptt report (writes bptt-report/)" in out
    code, out, _ = run(["report", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "--timeout" in out and "--replay" in out
    words = {0: "PASS", 1: "FAIL", 2: "usage error", 3: "INSUFFICIENT", 4: "internal error"}
    words[130] = "interrupted"
    for status, word in words.items():
        assert f"{status} {word}" in text, text


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"manual-bptt {__version__}"


def test_a_failure_can_be_replayed_from_the_report(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, _ = run(["report", "--quick", "--no-plots", "--no-progress", "--examples", "8",
                      "--target", "broken_impls:transposed_dW", "--out", str(out)], capsys)  # fmt: skip
    assert code == 1
    md = (out / "report.md").read_text()
    command = re.search(r"manual-bptt report --target (\S+) --replay '([^']+)'", md)
    assert command is not None, md
    code, stdout, _ = run(["report", "--target", command.group(1), "--replay", command.group(2)], capsys)
    assert code == 1 and "oracle: fail: disagrees with the oracle in W" in stdout
    assert md.count("### #") == 1 and md.count("Smallest failing configuration") == 0, (
        "each localization once"
    )

    snippet = re.search(r"```python\n(.*?)```", md, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "report.md", "exec"), namespace)  # the snippet is self-contained
    assert float(capsys.readouterr().out) > 1e-3, "it reproduces the wrong dW"

    data = json.loads((out / "report.json").read_text())
    (failure,) = data["failures"]
    cfg = failure["replay_config"]
    code, stdout, _ = run(["report", "--replay", json.dumps(cfg)], capsys)
    assert code == 0 and stdout.startswith("oracle: pass"), "the default target agrees there"


def test_the_current_directory_is_searched_only_for_a_target_not_found_otherwise(tmp_path, monkeypatch):
    (tmp_path / "zz_cwd_probe_target.py").write_text("def f(p, xs, ys):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    contract.load_target("manual_bptt:bptt")
    assert sys.path == before, "never for the default target"
    assert contract.load_target("zz_cwd_probe_target:f").__name__ == "f"
    assert sys.path == [*before, str(tmp_path)], "appended after the installed packages"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def test_a_module_in_the_current_directory_does_not_shadow_an_installed_one(tmp_path):
    """matplotlib.py in the working directory is not run; a target module there is found."""
    script = Path(sys.executable).parent / "manual-bptt"
    if not script.exists():
        pytest.skip("the manual-bptt script is not installed")
    marker = tmp_path / "ran"
    (tmp_path / "matplotlib.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(9)\n")
    (tmp_path / "mytarget.py").write_text("from manual_bptt import bptt\n")
    r = subprocess.run(
        [str(script), "report", "--quick", "--examples", "6", "--no-progress", "--target", "mytarget:bptt",
         "--out", str(tmp_path / "r")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={k: v for k, v in os.environ.items()
                                                                       if k != "PYTHONPATH"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists(), "matplotlib.py from the working directory was run"
    assert (tmp_path / "r" / "errors.png").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_stops_the_run_cleanly(sig, tmp_path):
    """SIGTERM or Ctrl-C (sent to the whole process group, as a terminal does), a few seconds
    into the default run, while its workers start: exit 130, one line, no traceback (neither
    ours nor a worker's), nothing written and no temporary directory left."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bptt_report", "report", "--no-progress", "--out", str(tmp_path / "r")],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(3.0)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and err.strip() == "manual-bptt report: interrupted; no report written", err
    assert os.listdir(tmp_path) == [], "nothing written, no .r.tmp-* left"
