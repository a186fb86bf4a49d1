"""The report's verdict tells the truth at its edges: a correct narrow target passes, a target
wrong only at sizes a small sweep skips or only where it can tamper with the worker does not,
no reply of the target crashes the checker or leaves a process behind, and the report says
plainly what it found (no relative error against an all-zero reference, the factor of a
constant-scale bug, what was checked).

The targets live in tests/edge_targets.py (imported by name, in the worker processes too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import bptt_report
from bptt_report import cli
from edge_targets import RECORD_VARIABLE
from locations import SRC, TESTS

#: Per-configuration timeout of the checks here (none of the targets needs more than a second).
TIMEOUT = 20


def _text(r) -> str:
    """Everything a result says: the summary, every check's message, the localizations."""
    return "\n".join([r.summary(), *(c.message for c in r.checks), *(loc.verdict for loc in r.localizations)])


def _alive(pid: int) -> bool:
    """Whether the process is still running (a zombie waiting to be reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(record: Path) -> list[int]:
    path = record / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A directory in which the attacking targets leave their records (edge_targets); every
    process they recorded that is still running afterwards is ended (SIGKILL, by its pid)."""
    where = tmp_path / "record"
    where.mkdir()
    monkeypatch.setenv(RECORD_VARIABLE, str(where))
    yield where
    for pid in _pids(where):
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    return env


# ---------------------------------------------------------------------------------------------
# No false FAIL
# ---------------------------------------------------------------------------------------------
def test_a_narrow_correct_elman_target_passes_under_the_default_cells():
    """Token ids (T,), no biases (NotImplementedError for them), AttributeError on GRUParams and
    LSTMParams: the rnn cell is checked on what it supports, the gated cells are unsupported
    (shown with the exception), and the verdict is PASS."""
    r = bptt_report.check("edge_targets:narrow_elman", quick=True, timeout=TIMEOUT)
    assert r.verdict == "PASS", r.summary()
    assert r.supported_cells == ("rnn",)
    assert "AttributeError" in r.summary()


def test_a_narrow_correct_elman_target_passes_when_its_cell_is_asked_for():
    """--cell rnn: biases are a probed feature like any other, so the target is checked on
    tokens (T,) without biases and passes (it was INSUFFICIENT: every probe passed biases)."""
    r = bptt_report.check("edge_targets:narrow_elman", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "PASS", r.summary()
    assert r.capabilities.forms == ("tokens (T,)",)
    assert all(not c.config.bias for c in r.checked)


def test_a_narrow_elman_target_asked_to_be_checked_as_a_gru_fails():
    """A cell asked for by name whose every call raises is FAIL, not unsupported."""
    r = bptt_report.check("edge_targets:narrow_elman", quick=True, examples=8, cells="gru", timeout=TIMEOUT)
    assert r.verdict == "FAIL", r.summary()
    assert "AttributeError" in _text(r)


# ---------------------------------------------------------------------------------------------
# No false PASS at sizes the sweep skipped
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["wrong_from_T40", "wrong_from_B6", "wrong_above_H10"])
def test_a_target_wrong_only_at_large_sizes_fails_even_the_quick_sweep(target):
    """dW 1.5 times the truth only for T >= 40, for B >= 6, or for H > 10. Every profile, the
    quick one included, has some configurations with T >= 64, B >= 8 and H >= 32."""
    r = bptt_report.check(f"edge_targets:{target}", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "FAIL", r.summary()
    assert any("W" in c.failing for c in r.failures), _text(r)


def test_the_quick_sweep_has_long_wide_and_large_batch_configurations():
    """The sizes the targets above are wrong at, seen from the configurations checked."""
    r = bptt_report.check("manual_bptt:bptt", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "PASS", r.summary()
    configs = [c.config for c in r.checked]
    assert max(c.T for c in configs) >= 64
    assert max(c.B or 1 for c in configs) >= 8
    assert max(c.H for c in configs) >= 32


# ---------------------------------------------------------------------------------------------
# No false PASS by tampering with the worker, or by a result that changes when read again
# ---------------------------------------------------------------------------------------------
def test_a_target_that_disables_the_workers_input_check_and_changes_ys_fails():
    r = bptt_report.check("edge_targets:patches_mutation_check_mutates_ys", quick=True, examples=8,
                          cells="rnn", timeout=TIMEOUT)  # fmt: skip
    assert r.verdict == "FAIL", r.summary()
    assert "ys" in _text(r)


def test_a_result_that_is_right_on_its_first_read_only_fails():
    r = bptt_report.check("edge_targets:lazy_first_read_only", quick=True, examples=8, cells="rnn",
                          timeout=TIMEOUT)  # fmt: skip
    assert r.verdict == "FAIL", r.summary()


# ---------------------------------------------------------------------------------------------
# A garbled reply is a finding about the target, never a crash of the checker
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["forks_both_reply", "huge_gradient", "writes_into_protocol_pipe"])
def test_a_garbled_reply_is_a_failure_of_the_target_with_a_report_and_no_process_left(
    target, tmp_path, record, capsys
):
    out = tmp_path / "r"
    argv = ["report", "--quick", "--examples", "8", "--cell", "rnn", "--no-plots", "--no-progress",
            "--timeout", str(TIMEOUT), "--target", f"edge_targets:{target}", "--out", str(out)]  # fmt: skip
    code = cli.main(argv)
    stdout = capsys.readouterr().out
    assert code == 1, stdout
    assert stdout.startswith(f"FAIL: edge_targets:{target}")
    assert json.loads((out / "report.json").read_text())["verdict"] == "FAIL"
    if target == "huge_gradient":
        assert (record / "huge").exists(), "the 288 MB reply was sent"
    if target == "writes_into_protocol_pipe":
        assert (record / "protocol_fd").exists(), "the target found the protocol pipe and wrote into it"
    if target == "forks_both_reply":
        assert _pids(record), "the target forked"
    left = [pid for pid in _pids(record) if _alive(pid)]
    assert not left, f"processes of the target still running after the checker returned: {left}"


@pytest.mark.parametrize(
    "target, detail",
    [
        ("writes_a_wrong_reply", "status: expected a str, got an int"),
        ("replies_to_another_request", "a reply to a request that was never sent (id 1000000000)"),
    ],
)
def test_a_well_framed_reply_of_the_wrong_types_or_to_another_request_is_a_failure(target, detail, record):
    """The frame decodes, but the reply is not one: its fields are checked when it is rebuilt,
    and its id against the request that was due."""
    r = bptt_report.check(f"edge_targets:{target}", quick=True, examples=8, cells="rnn", timeout=TIMEOUT)
    assert (record / "protocol_fd").exists(), "the target found the protocol pipe and wrote into it"
    assert r.verdict == "FAIL", r.summary()
    assert "sent a reply that cannot be read" in _text(r) and detail in _text(r), _text(r)


# ---------------------------------------------------------------------------------------------
# The target's processes and output do not outlive or flood the checker
# ---------------------------------------------------------------------------------------------
def test_a_child_the_target_starts_in_a_session_of_its_own_ends_with_the_checker(tmp_path, record):
    """``sleep 60`` started with start_new_session=True: a caller capturing the checker's output
    gets it when the checker is done (it waited for the sleep to end), and the child is gone.
    (The gradients are right: PASS, or FAIL if leaving a process behind is made a finding.)"""
    command = [sys.executable, "-m", "bptt_report", "report", "--quick", "--examples", "4", "--cell", "rnn",
               "--no-plots", "--no-progress", "--timeout", str(TIMEOUT), "--target",
               "edge_targets:leaves_setsid_child", "--out", str(tmp_path / "r")]  # fmt: skip
    t0 = time.monotonic()
    try:
        done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the checker's output was still open after {time.monotonic() - t0:.0f} s")
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert (tmp_path / "r" / "report.json").exists()
    assert _pids(record), "the target started its child"
    left = [pid for pid in _pids(record) if _alive(pid)]
    assert not left, f"still running after the checker returned: {left}"


def test_an_orphan_the_target_leaves_behind_ends_with_the_check(record):
    """A daemon started the classic way (its parent exits at once, so that it is no descendant
    of the worker any more, and in a session of its own): gone when check() returns."""
    r = bptt_report.check("edge_targets:leaves_a_daemon", quick=True, examples=4, cells="rnn",
                          timeout=TIMEOUT)  # fmt: skip
    assert r.verdict in ("PASS", "INSUFFICIENT"), r.summary()
    assert _pids(record), "the target started its daemon"
    left = [pid for pid in _pids(record) if _alive(pid)]
    assert not left, f"still running after check() returned: {left}"


#: What may reach the checker's stderr from a target printing 128 MiB per call: less than one
#: call's output, in all (the output is capped per call; its tail may be kept for the report).
OUTPUT_ALLOWED = 128 << 20


def test_the_targets_output_reaches_the_checkers_stderr_capped(tmp_path):
    command = [sys.executable, "-m", "bptt_report", "report", "--quick", "--examples", "2", "--cell", "rnn",
               "--no-plots", "--no-progress", "--timeout", str(TIMEOUT), "--target",
               "edge_targets:prints_128_mib", "--out", str(tmp_path / "r")]  # fmt: skip
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    seen = [0]

    def drain() -> None:
        while chunk := proc.stderr.read(1 << 20):
            seen[0] += len(chunk)
            if seen[0] > OUTPUT_ALLOWED:
                os.killpg(proc.pid, signal.SIGKILL)  # the run this test started
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    assert seen[0] <= OUTPUT_ALLOWED, f"over {seen[0] / 2**20:.0f} MiB of the target's output on stderr"
    assert proc.returncode in (0, 1), stdout.decode(errors="replace")  # right gradients; PASS, or a finding
    assert (tmp_path / "r" / "report.json").exists()


def test_the_tail_of_what_the_target_printed_is_kept_for_the_report(tmp_path, capsys, monkeypatch):
    from bptt_report import runner

    monkeypatch.setattr(runner, "OUTPUTS_KEPT", 3)
    r = bptt_report.check("edge_targets:prints_then_raises", quick=True, examples=4, cells="rnn",
                          timeout=TIMEOUT)  # fmt: skip
    err = capsys.readouterr().err
    assert r.verdict == "FAIL"
    kept = [c for c in r.failures if c.output]
    assert len({c.id for c in kept}) == 3 < len({c.id for c in r.failures}), "the first three only"
    for c in kept:  # each call's own output, also when the worker ran ahead of the pool
        shape = (c.config.T,) if c.config.B is None else (c.config.B, c.config.T)
        line = f"about to fail on a problem of {shape}\n"
        head = f"[{100 * 1024 + 1 + len(line)} bytes printed; the last 65536 follow]\nxxx"
        assert c.output.startswith(head) and c.output.endswith("x\n" + line), (c.output[:80], c.output[-80:])
    assert "about to fail" in err, "echoed on stderr too"
    bptt_report.write_report(r, tmp_path / "r", plots=False)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## What the target printed" in md and "about to fail on a problem of" in md
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert any("about to fail" in c["output"] for c in data["checks"])


# ---------------------------------------------------------------------------------------------
# An all-zero reference: no relative error, no warning, the bug named
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zero_reference(tmp_path_factory):
    """The s_t-for-s_{t-1} bug checked and written (plots included), every warning recorded:
    (result, report directory, warnings). Its shrunk failure is T = 1, s0 = None, where the
    true dW is exactly 0."""
    out = tmp_path_factory.mktemp("zero_reference") / "r"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = bptt_report.check("edge_targets:dw_from_s_t", quick=True, timeout=TIMEOUT)
        bptt_report.write_report(r, out)
    return r, out, list(caught)


#: A number printed with an exponent of 100 or more (the relative errors against 0 were 1e305-1e307).
HUGE = re.compile(r"\d[eE]\+?\d{3}")
INF = re.compile(r"\binf\b", re.I)


def test_an_all_zero_reference_is_never_reported_as_a_huge_relative_error(zero_reference):
    r, out, _ = zero_reference
    assert r.verdict == "FAIL"
    for name, text in (("summary", _text(r)), ("report.md", (out / "report.md").read_text())):
        assert not HUGE.search(text), f"{name}: {HUGE.search(text).group()}"
        assert not INF.search(text), f"{name}: inf"
    data = json.loads((out / "report.json").read_text())
    for c in data["checks"]:
        for a in c["failed_arrays"]:
            assert a["rel_error"] is None or a["rel_error"] < 1e100, (c["id"], a)
    for kind, worst in data["summary"]["worst_rel_error"].items():
        for field, w in worst.items():
            assert w["rel_error"] is not None and w["rel_error"] < 1e100, (kind, field, w)


def test_the_replay_of_an_all_zero_reference_says_the_expected_value_is_exactly_0(zero_reference, capsys):
    _, out, _ = zero_reference
    (failure,) = json.loads((out / "report.json").read_text())["failures"][:1]
    cfg = failure["replay_config"]
    assert cfg["T"] == 1 and cfg["s0_kind"] is None
    code = cli.main(["report", "--target", "edge_targets:dw_from_s_t", "--replay", json.dumps(cfg)])
    stdout = capsys.readouterr().out
    assert code == 1, stdout
    assert "exactly 0" in stdout, stdout
    assert not HUGE.search(stdout) and not INF.search(stdout), stdout


def test_the_report_names_s_t_used_where_s_t_minus_1_belongs(zero_reference):
    r, _, _ = zero_reference
    assert re.search(r"[sh]_t is used where [sh]_\{t-1\} belongs", _text(r)), r.summary()


def test_checking_and_writing_an_all_zero_reference_emits_no_runtime_warning(zero_reference):
    _, _, caught = zero_reference
    runtime = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if w.category is RuntimeWarning]
    assert not runtime, runtime


# ---------------------------------------------------------------------------------------------
# Reports that say what they found
# ---------------------------------------------------------------------------------------------
def test_a_batch_mean_convention_is_named_by_its_constant_factor():
    """Every gradient exactly 1/B of the truth (the loss too): the report names the factor."""
    r = bptt_report.check("edge_targets:batch_mean", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "FAIL"
    factor = re.compile(r"1/B\b|\b1/[2-9]\b|(factor|times|scale)\D{0,20}\b0\.(5|3{1,3}|25|2)\b")
    assert factor.search(r.summary()), r.summary()


def test_the_verdict_line_names_what_was_checked_and_what_was_not():
    r = bptt_report.check("broken_impls:tokens_only", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "PASS", r.summary()
    first = r.summary().splitlines()[0]
    assert "tokens (T,)" in first and "not checked" in first, first


def test_a_pass_report_never_calls_an_array_within_the_tolerance_disagreeing(tmp_path):
    """dW off by 5e-13 everywhere: within the absolute tolerance 1e-12, also where the reference
    dW is exactly 0 (T = 1, s0 = None). The verdict is PASS; so is every row of report.md."""
    r = bptt_report.check("edge_targets:within_absolute_tolerance", quick=True, cells="rnn", timeout=TIMEOUT)
    assert r.verdict == "PASS", r.summary()
    bptt_report.write_report(r, tmp_path / "r", plots=False)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "disagrees" not in md, [line for line in md.splitlines() if "disagrees" in line]
    assert not HUGE.search(md), HUGE.search(md).group()


def test_the_gradient_plots_say_whose_gradients_they_show(tmp_path):
    """state_grads.png and lag_profile.png: the target's gradients, or said plainly to be the
    reference's sample models (they were the same pictures for every target, failing ones too)."""
    r = bptt_report.check("broken_impls:transposed_dW", quick=True, examples=8, cells="rnn",
                          max_localized=1, timeout=TIMEOUT)  # fmt: skip
    files = bptt_report.write_report(r, tmp_path / "r")
    if not files.plots_written:
        pytest.skip(f"no plots: {files.plots_note}")
    md = (tmp_path / "r" / "report.md").read_text()
    for plot in ("state_grads.png", "lag_profile.png"):
        caption = md.split(f"![{plot}]({plot})", 1)[1].strip().split("\n\n", 1)[0]
        assert re.search(r"\btarget", caption), f"{plot}: {caption[:300]}"


def test_progress_lines_are_printed_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    """A run of about 10 s (the target sleeps 0.4 s per call) with stderr captured (not a
    terminal): at least one progress line with a count, not silence until the end."""
    argv = ["report", "--quick", "--examples", "8", "--cell", "rnn", "--no-plots", "--timeout",
            str(TIMEOUT), "--target", "edge_targets:slow_correct", "--out", str(tmp_path / "r")]  # fmt: skip
    from bptt_report import runner

    monkeypatch.setattr(runner, "PROGRESS_EVERY", 2.0)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, out
    assert re.search(r"\d", err), f"stderr: {err!r}"
    assert re.search(r"checking: \d+ of \d+ \(\d+%\), \d+ s", err), f"no line while it went on: {err!r}"
