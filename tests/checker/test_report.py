"""The gradient-correctness report (bptt_report): it passes on correct implementations, catches
and localizes broken ones, and writes a valid, atomic report.

Every check here runs the quick sweep (32 configurations against the oracle, 3 against
finite differences) with at most one localization, so each takes about a second.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import bptt_report
import manual_bptt as mb
from bptt_report.judge import compare
from bptt_report.output import plots, report
from bptt_report.plan import sweep
from bptt_report.targets import contract
from manual_bptt.testing import WEIGHT_SCALES


def quick(target, **kw):
    return bptt_report.check(target, quick=True, max_localized=kw.pop("max_localized", 1), **kw)


# ---------------------------------------------------------------------------------------------
# Correct implementations pass
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target", [None, "manual_bptt:bptt", "reference:bptt", "broken_impls:correct_double_sum"]
)
def test_report_passes_on_correct_implementations(target):
    # reference.bptt is the Elman cell's oracle: with GRUParams it raises AttributeError (a failure)
    r = quick(target, cells="rnn" if target == "reference:bptt" else "all")
    assert r.ok, r.summary()
    counts = r.counts()
    assert counts["oracle"]["pass"] == r.size.examples
    assert counts["torch_rnn"]["pass"] > 0, "nn.RNN applies to tanh/relu full-BPTT configurations"
    assert counts["finite_differences"]["pass"] == r.size.fd_examples
    assert not r.localizations and not r.failures
    r.assert_ok()
    for field, (err, _, n) in r.worst_errors().items():
        assert n > 0 and err <= compare.RTOL, field


def test_a_callable_target_is_accepted_and_named():
    r = quick(mb.bptt)
    assert r.ok and r.target == "manual_bptt.layer:bptt"  # named by the module that defines it


# ---------------------------------------------------------------------------------------------
# Broken implementations are caught, the right parameter named, the lag localized
# ---------------------------------------------------------------------------------------------
# impl, the array that must be named, the exact set of disagreeing arrays (None: not fixed),
# where, first lag, smallest failing T of the shrunk configuration
CASES = [
    ("transposed_dW", "W", {"W"}, "immediate", 0, 1),
    ("wrong_bias_gradient", "b", {"b"}, "immediate", 0, 1),
    ("off_by_one_time_loop", "W", None, "immediate", 0, 1),
    ("transposed_recurrence", "W", None, "recurrence", 1, 2),
    ("sign_error", "W", None, "recurrence", 1, 2),
    ("one_step_recurrence", "W", None, "recurrence", 2, 3),
    ("output_sign_error", "V", {"V"}, "output layer", None, 1),
]


@pytest.mark.parametrize(
    ("impl", "named", "exact", "where", "lag", "shrunk_T"), CASES, ids=[c[0] for c in CASES]
)
def test_broken_implementation_is_caught_and_localized(impl, named, exact, where, lag, shrunk_T):
    r = quick(f"broken_impls:{impl}")
    assert not r.ok
    assert r.counts()["oracle"]["fail"] > 0
    with pytest.raises(AssertionError, match=named):
        r.assert_ok()
    (loc,) = r.localizations
    assert named in loc.fields, loc.verdict
    if exact is not None:
        assert set(loc.fields) == exact, loc.verdict
    assert loc.where == where, loc.verdict
    assert loc.first_lag == lag, loc.verdict
    assert not loc.float32
    if lag is not None:
        assert loc.lag_method == "truncate"
        steps = {s.tau: s for s in loc.lag_steps}
        assert all(not steps[t].failing for t in range(lag)), "agrees below the first lag"
        assert steps[lag].failing
    # the smallest failing configuration: T as short as the bug allows, the named array still failing
    assert loc.shrunk is not None
    assert loc.shrunk.config.T == shrunk_T, loc.verdict
    assert loc.smallest_T is not None and loc.smallest_T >= shrunk_T
    # the worst element is reported with its values and the tolerance
    w = loc.worst
    assert w.index is not None and w.abs_error > w.tolerance > 0
    assert f"tolerance {w.tolerance:.3e}" in loc.verdict
    assert f"Where: {where}" in loc.verdict


def test_missing_recurrence_without_truncate_is_localized_by_sequence_length():
    """A target without the truncate keyword: truncation is unsupported (not a failure, and not
    drawn in the sweep), and the lag is bounded by the shortest failing sequence instead."""
    r = quick("broken_impls:one_step_no_truncate")
    assert not r.ok
    assert set(r.capabilities.unsupported) == {"truncate"} and not r.unsupported
    assert all(c.config.truncate is None for c in r.checks)
    (loc,) = r.localizations
    assert loc.lag_method == "sequence length" and loc.where == "recurrence"
    assert loc.smallest_T >= 3 and loc.first_lag is None, "two steps back are needed to see the bug"
    assert loc.shrunk is not None and loc.shrunk.config.T == 3
    assert f"first disagrees at T = {loc.smallest_T}" in loc.verdict


@pytest.mark.parametrize("impl", ["float32_arithmetic", "float32_outputs"])
def test_float32_implementation_fails_and_says_so(impl):
    r = quick(f"broken_impls:{impl}")
    assert not r.ok
    assert r.counts()["oracle"]["pass"] == 0, "float32 cannot meet rtol 1e-10 anywhere"
    assert r.float32_suspected
    (loc,) = r.localizations
    assert loc.float32 and loc.where == "precision"
    assert "float32" in loc.verdict and "float32" in r.summary()
    assert all(
        c.message.startswith("float32") for c in r.failures if c.kind == "oracle" and "loss" in c.failing
    )


def test_unsupported_options_are_not_failures_and_the_sweep_stays_inside_the_rest():
    r = quick("broken_impls:correct_without_mask")
    assert r.ok, r.summary()
    assert set(r.capabilities.unsupported) == {"mask"}
    assert "no mask keyword" in r.capabilities.unsupported["mask"]
    assert not r.unsupported and not any(c.config.use_mask for c in r.checks)
    assert len(r.checked) == r.size.examples
    assert "not supported, so not checked: mask" in r.summary()


def kwargs_target(p, xs, ys, **kw):
    """Takes **kwargs, so only the TypeError it raises says that mask is unsupported."""
    if "mask" in kw:
        raise TypeError("kwargs_target() got an unexpected keyword argument 'mask'")
    return mb.bptt(p, xs, ys, **kw)


def raising_target(p, xs, ys, **kw):
    raise ValueError("not implemented here")


def nan_target(p, xs, ys, **kw):
    r = mb.bptt(p, xs, ys, **kw)
    W = r.grads.W.copy()
    W[0, 0] = np.nan
    return type(r)(loss=r.loss, grads=r.grads.replace(W=W), ds0=r.ds0, dxs=r.dxs, final_state=r.final_state)


def test_typeerror_on_a_keyword_is_unsupported_other_errors_fail_with_their_traceback():
    r = quick(kwargs_target, max_localized=0)
    assert r.ok, r.summary()
    assert set(r.capabilities.unsupported) == {"mask"}, "only the keyword the TypeError names"
    assert {"s0", "truncate", "reduction=mean"} <= set(r.capabilities.options)

    r = quick(raising_target)
    assert not r.ok and all(c.status == "fail" for c in r.checks)
    assert "raised ValueError: not implemented here" in r.failures[0].message
    assert r.localizations[0].fields == ("exception",)
    ((kind, first),) = r.tracebacks()
    assert kind == "the target raised ValueError"
    assert 'raise ValueError("not implemented here")' in first.traceback


def test_nan_in_the_target_output_fails():
    r = quick(nan_target)
    assert not r.ok
    (loc,) = r.localizations
    assert loc.fields[0] == "W" and loc.worst.note == "dW contains NaN at (0, 0)"
    assert loc.where == "malformed output"
    assert "np.float64" not in r.summary()


def test_parallel_jobs_give_the_same_result(monkeypatch):
    import bptt_report.runner

    monkeypatch.setattr(bptt_report.runner, "PARALLEL_FROM", 0)  # two workers even for this small sweep
    serial = bptt_report.check("broken_impls:sign_error", quick=True, examples=8, max_localized=1)
    parallel = bptt_report.check("broken_impls:sign_error", quick=True, examples=8, max_localized=1, jobs=2)
    assert [(c.id, c.kind, c.status, c.failing) for c in serial.checks] == [
        (c.id, c.kind, c.status, c.failing) for c in parallel.checks
    ]
    assert serial.localizations[0].verdict == parallel.localizations[0].verdict


def test_a_sweep_too_small_to_gain_runs_on_one_worker():
    from bptt_report.runner import PARALLEL_FROM, effective_jobs

    assert effective_jobs(4, PARALLEL_FROM - 1) == 1
    assert effective_jobs(4, PARALLEL_FROM) == 4 and effective_jobs(1, 10**5) == 1


def test_check_rejects_bad_arguments():
    with pytest.raises(bptt_report.TargetError, match="cannot import module"):
        bptt_report.check("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="cannot be imported by name"):
        bptt_report.check(lambda *a, **k: None)
    with pytest.raises(ValueError, match="examples"):
        bptt_report.check(examples=0)
    with pytest.raises(ValueError, match="examples"):
        bptt_report.check(examples=10**9)
    with pytest.raises(ValueError, match="jobs: at most"):
        bptt_report.check(jobs=1000)
    with pytest.raises(ValueError, match="timeout"):
        bptt_report.check(timeout=0)


# ---------------------------------------------------------------------------------------------
# The sweep, the comparison, the targets
# ---------------------------------------------------------------------------------------------
def test_sweep_covers_every_value_of_every_dimension():
    configs = sweep.plan_configs(0, sweep.QUICK)
    assert len(configs) == sweep.QUICK.examples
    assert {(c.tokens, c.B is not None) for c in configs} == set(contract.FORMS.values())
    assert {c.activation for c in configs} == set(mb.ACTIVATIONS)
    assert {c.reduction for c in configs} == {"sum", "mean"}
    assert {c.use_mask for c in configs} == {c.bias for c in configs} == {True, False}
    assert {c.s0_kind for c in configs} == {None, "shared", "per_row"}
    assert {c.weight_scale for c in configs} == set(WEIGHT_SCALES)
    truncs = {c.truncate for c in configs}
    assert None in truncs and 0 in truncs and 1 in truncs
    assert any(c.truncate is not None and 1 < c.truncate < c.T - 1 for c in configs)
    assert any(c.truncate is not None and c.truncate >= c.T - 1 for c in configs)
    assert {1, 2, 3} <= {c.T for c in configs}
    assert sweep.plan_configs(0, sweep.QUICK) == configs, "deterministic"
    assert sweep.plan_configs(1, sweep.QUICK) != configs
    fd = sweep.plan_fd_configs(0, sweep.FULL)
    assert all(c.truncate is None and c.activation != "relu" and c.T <= 4 for c in fd)


def test_compare_never_passes_on_nan_and_names_the_worst_element():
    ref = np.array([[1.0, -2.0], [0.5, 4.0]])
    ok = compare.compare_array("W", ref + 1e-13, ref)
    assert ok.passed and ok.rel_error < 1e-10
    bad = ref.copy()
    bad[1, 0] += 1e-6
    c = compare.compare_array("W", bad, ref)
    assert not c.passed and c.index == (1, 0) and c.expected == 0.5
    assert c.tolerance == pytest.approx(1e-10 * 4.0 + 1e-12)
    nan = ref.copy()
    nan[0, 1] = np.nan
    c = compare.compare_array("W", nan, ref)
    assert not c.passed and c.note == "dW contains NaN at (0, 1)" and c.describe() == c.note
    nan[1, 1] = -np.inf
    nan[0, 1] = 0.0
    assert compare.compare_array("W", nan, ref).note == "dW contains -inf at (1, 1)"
    assert compare.compare_array("loss", np.nan, np.float64(1.0)).note == "the loss is NaN"
    assert not compare.compare_array("W", ref.T[:1], ref).passed
    shape = compare.compare_array("U", np.zeros((3, 2)), np.zeros((2, 3))).note
    assert shape == "dU has shape (3, 2), expected (2, 3): transposed?"
    assert "missing" in compare.compare_array("W", None, ref).note
    # both exactly zero: equal, and no 0/0 anywhere
    assert compare.compare_array("b", np.zeros(3), np.zeros(3)).passed
    assert compare.compare_fd("b", np.zeros(3), np.zeros(3)).passed
    assert not compare.compare_fd("b", np.array([np.nan, 0, 0]), np.zeros(3)).passed
    f32 = compare.compare_array("V", ref.astype(np.float32) * (1 + 1e-7), ref)
    assert not f32.passed and "float32" in f32.note
    # a gradient for a parameter the model does not have: None or zeros are fine
    assert compare.compare_optional("b", None, None) is None
    assert compare.compare_optional("b", np.zeros(2), None) is None
    assert not compare.compare_optional("b", np.ones(2), None).passed


def test_load_target_errors_are_clear():
    assert contract.load_target("manual_bptt:bptt") is mb.bptt
    assert contract.load_target("manual_bptt:RNNParams.init") == mb.RNNParams.init
    for spec, match in [
        ("manual_bptt.bptt", "MODULE:FUNCTION"),
        ("manual_bptt:", "MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("manual_bptt:no_such_function", "has no attribute 'no_such_function'"),
        ("manual_bptt:__version__", "not a callable"),
    ]:
        with pytest.raises(contract.TargetError, match=match):
            contract.load_target(spec)


def test_only_non_default_keywords_are_passed():
    mask = np.ones(3, dtype=bool)
    kw = contract.non_default(
        {"activation": "tanh", "s0": None, "truncate": 0, "reduction": "sum", "mask": mask}
    )
    assert set(kw) == {"truncate", "mask"}
    assert contract.non_default({"activation": "relu", "reduction": "mean"}) == {
        "activation": "relu",
        "reduction": "mean",
    }


# ---------------------------------------------------------------------------------------------
# Writing the report
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken_result():
    return quick("broken_impls:one_step_recurrence")


@pytest.fixture(scope="module")
def written(broken_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "broken"
    return report.write_report(broken_result, out), out


def read_png(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature, its chunks' CRCs and its IEND."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in {kind!r}"
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    ihdr = data[16:24]
    return struct.unpack(">II", ihdr)


def test_report_files_json_schema_and_pngs(written):
    files, out = written
    assert files.plots_written and files.plots_note == ""
    assert set(files.files) == {"report.json", "report.md", "report.xml", *plots.PLOT_FILES}
    assert sorted(p.name for p in out.iterdir()) == sorted(files.files)
    data = json.loads((out / "report.json").read_text())
    schema = bptt_report.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    assert data["schema_version"] == bptt_report.SCHEMA_VERSION
    assert data["ok"] is False and data["summary"]["failed"] > 0
    assert set(data["environment"]) >= {"python", "numpy", "torch", "platform"}
    assert data["settings"]["seed"] == 0
    assert len(data["checks"]) == data["summary"]["checks"]
    (failure,) = data["failures"]
    assert failure["where"] == "recurrence" and failure["first_lag"] == 2
    assert data["plots"]["status"] == "written"
    for name in data["plots"]["files"]:
        w, h = read_png(out / name)
        assert w >= 600 and h >= 300
    import matplotlib.image

    img = matplotlib.image.imread(out / "errors.png")
    assert img.ndim == 3 and img.std() > 0.01, "the plot is not blank"


def test_markdown_summary(written):
    _, out = written
    md = (out / "report.md").read_text()
    assert md.startswith("# Gradient check of `broken_impls:one_step_recurrence`: FAIL")
    assert "| check | configurations | agree | disagree | unsupported |" in md
    assert "## Disagreements, localized" in md and "first disagreeing lag **2**" in md
    for png in ("errors.png", "state_grads.png", "lag_profile.png"):
        assert f"]({png})" in md


def test_passing_report_validates(tmp_path):
    r = quick(None, examples=6)
    files = report.write_report(r, tmp_path / "ok", plots=False)
    data = json.loads((tmp_path / "ok" / "report.json").read_text())
    jsonschema.validate(data, bptt_report.load_schema(), cls=jsonschema.Draft202012Validator)
    assert data["ok"] is True and data["failures"] == []
    assert data["plots"] == {
        "status": "skipped",
        "files": [],
        "note": "plots were not requested (--no-plots)",
    }
    assert files.files == ("report.md", "report.xml", "report.json")


def test_missing_matplotlib_skips_plots_with_a_clear_note(broken_result, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    files = report.write_report(broken_result, tmp_path / "r")
    assert not files.plots_written
    assert "pip install 'manual-bptt[plot]'" in files.plots_note
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["plots"]["status"] == "skipped" and "matplotlib" in data["plots"]["note"]
    assert "Not drawn: the plots need matplotlib" in (tmp_path / "r" / "report.md").read_text()
    assert not list((tmp_path / "r").glob("*.png"))


def test_writing_is_atomic(broken_result, tmp_path, monkeypatch):
    out = tmp_path / "r"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # interrupted half-way: after the plots, before the md and json

    def first_plot_only(result, regimes, directory):
        (directory / "errors.png").write_bytes(b"\x89PNG half")
        return ["errors.png"]

    # a new directory: nothing at all appears
    monkeypatch.setattr(plots, "write_plots", first_plot_only)
    monkeypatch.setattr(report, "render_markdown", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(broken_result, out)
    assert os.listdir(tmp_path) == []

    # an existing report: left exactly as it was
    monkeypatch.undo()
    report.write_report(broken_result, out, plots=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(plots, "write_plots", first_plot_only)
    monkeypatch.setattr(report, "render_markdown", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(broken_result, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["r"], "no temporary directory left behind"


def test_out_must_be_a_directory(broken_result, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        report.write_report(broken_result, f, plots=False)
