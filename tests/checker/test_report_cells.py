"""The report on every cell: the Elman RNN, the GRU and the LSTM, each against its oracle, its
native torch module and finite differences; broken gated targets caught and localized; a
target that supports some cells checked on those alone."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings

import bptt_report
import manual_bptt as mb
from bptt_report import cli
from bptt_report.plan import sweep
from bptt_report.targets.contract import full_support
from manual_bptt.problems import RNNConfig, make_problem
from manual_bptt.testing import rnn_configs

jsonschema = pytest.importorskip("jsonschema")


CELLS = ("rnn", "gru", "lstm")


@pytest.fixture(scope="module")
def default_quick():
    return bptt_report.check(quick=True)


def test_the_default_quick_report_passes_on_every_cell_against_every_reference(default_quick):
    r = default_quick
    r.assert_ok()
    assert r.supported_cells == CELLS
    assert r.checked_by_cell() == r.examples_by_cell() == {"rnn": 11, "gru": 11, "lstm": 10}
    for cell in CELLS:
        kinds = {c.kind for c in r.checks if c.config.cell == cell and c.status == "pass"}
        assert kinds == {"oracle", "torch_rnn", "finite_differences"}, cell
    lstm = {a.name for c in r.checks if c.config.cell == "lstm" for a in c.arrays}
    assert {"U", "W", "b_ih", "b_hh", "V", "c", "ds0.h", "ds0.c", "dxs"} <= lstm
    gru = {a.name for c in r.checks if c.config.cell == "gru" for a in c.arrays}
    assert {"b_ih", "b_hh", "ds0", "dxs"} <= gru and "b" not in gru


def test_report_json_with_cells_validates_against_the_schema(default_quick, tmp_path):
    files = bptt_report.write_report(default_quick, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    jsonschema.validate(data, bptt_report.load_schema())
    checked = {c: v["checked_configurations"] for c, v in data["cells"].items()}
    assert checked == {"rnn": 11, "gru": 11, "lstm": 10}
    assert [g["cell"] for g in data["regimes"]] == ["rnn", "rnn", "gru", "lstm"]
    lstm = data["regimes"][-1]
    assert len(lstm["dE_dc_lag_mean"]) == len(lstm["dE_dh_lag_mean"]) == lstm["config"]["T"]
    assert "## Cells" in (tmp_path / "r" / "report.md").read_text()
    assert files.plots_written


@pytest.mark.parametrize(
    "impl, cell, fields, where",
    [
        # the loss itself differs: a different model, caught in the forward pass
        ("gru_reset_before_matmul", "gru", {"loss", "W", "U"}, "forward pass"),
        # the gate blocks of the weight gradients: wrong at lag 0, and only there
        ("lstm_swapped_ig", "lstm", {"U", "W", "b_ih", "b_hh"}, "immediate"),
        # only the GRU's n block tells b_ih from b_hh (b_hn sits inside r ⊙ (...))
        ("b_ih_grad_to_b_hh", "gru", {"b_hh"}, "immediate"),
    ],
)
def test_broken_gated_targets_are_caught_and_localized_in_their_cell(impl, cell, fields, where):
    r = bptt_report.check(f"broken_impls:{impl}", quick=True, max_localized=1)
    assert r.verdict == "FAIL"
    assert {c.config.cell for c in r.failures} == {cell}
    (loc,) = r.localizations
    assert loc.check.config.cell == cell and loc.where == where
    assert fields <= set(loc.fields)
    if where == "immediate":
        assert loc.first_lag == 0 and loc.lag_method == "truncate"
    if impl == "lstm_swapped_ig":  # declared: the other cells are not even probed
        assert r.unsupported_features() == {"not declared in cells": ["rnn", "gru"]}
    if impl == "b_ih_grad_to_b_hh":
        assert set(loc.fields) == {"b_hh"} and r.supported_cells == CELLS
        assert loc.shrunk is not None and loc.shrunk.config.cell == "gru"
    with pytest.raises(AssertionError, match="FAIL"):
        r.assert_ok()


def test_a_target_for_the_elman_cell_only_passes_with_the_gated_cells_unsupported():
    r = bptt_report.check("broken_impls:correct_double_sum", quick=True)
    r.assert_ok()
    assert r.supported_cells == ("rnn",)
    assert r.checked_by_cell() == {"rnn": 32, "gru": 0, "lstm": 0}, "the Elman cell takes the whole sweep"
    unsupported = {f: why for why, feats in r.unsupported_features().items() for f in feats}
    assert set(unsupported) == {"gru", "lstm"}
    assert all(why.startswith("probed: raised NotImplementedError") for why in unsupported.values())
    assert "cells: rnn 32 checked, gru unsupported, lstm unsupported" in r.summary()


def test_a_typeerror_for_a_params_type_makes_that_cell_unsupported_not_failing():
    r = bptt_report.check("broken_impls:elman_only_typeerror", quick=True, cells=["rnn", "lstm"])
    r.assert_ok()
    assert r.cells == ("rnn", "lstm") and r.supported_cells == ("rnn",)
    (caps,) = [c for c in r.all_capabilities if c.cell == "lstm"]
    assert caps.unsupported["lstm"].startswith("probed: raised TypeError for LSTMParams")


def test_declared_inputs_without_cells_still_probe_each_cell():
    r = bptt_report.check("broken_impls:elman_only_declared_inputs", quick=True)
    r.assert_ok()
    assert r.supported_cells == ("rnn",) and r.capabilities.sources["rnn"] == "probed (on tokens (T,))"
    assert set(r.unsupported_features()["probed: raised NotImplementedError: the Elman cell (RNNParams) "
                                        "only, got GRUParams"]) == {"gru"}  # fmt: skip


def test_a_target_supporting_no_requested_cell_is_insufficient():
    r = bptt_report.check("broken_impls:lstm_swapped_ig", quick=True, cells="gru")
    assert r.verdict == "INSUFFICIENT" and not r.checked
    assert "nothing could be checked" in r.summary()


def test_the_cell_flag_checks_one_cell(tmp_path, capsys):
    out = str(tmp_path / "r")
    argv = ["report", "--quick", "--cell", "lstm", "--no-plots", "--no-progress", "--out", out]
    assert cli.main(argv) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert list(data["cells"]) == ["lstm"]
    assert {c["config"]["cell"] for c in data["checks"]} == {"lstm"}
    assert data["coverage"]["checked_configurations"] == 32
    assert "cells: lstm 32 checked" in capsys.readouterr().out


def test_the_elman_sweep_and_its_arrays_are_those_of_the_sweep_without_cells():
    """Fingerprints of the sweep of seed 0 as it was before the cell field existed.

    Every array but W comes straight from the random stream and is compared bitwise. W is
    rescaled to a spectral radius computed by LAPACK (np.linalg.eigvals), whose last bits
    differ between CPUs (the same code gave other W bytes on an AMD Zen 5 host than where the
    bitwise fingerprint was first taken), so W is compared by two weighted sums at 1e-12."""
    drawn = sweep.drawn_configs(0, sweep.QUICK)
    planned = sweep.plan_configs(0, sweep.QUICK)  # the last three made large, one size each
    assert planned[:-3] == drawn[:-3] and (planned[-3].T, planned[-2].B, planned[-1].H) == (64, 8, 32)
    assert planned[-3:] == sweep.large_configs(drawn[-3:], sweep.QUICK, sweep.space_of(full_support("rnn")))
    cfgs = drawn + sweep.plan_fd_configs(0, sweep.FULL)
    rows = [tuple(v for k, v in dataclasses.asdict(c).items() if k != "cell") for c in cfgs]
    assert hashlib.sha256(repr(rows).encode()).hexdigest()[:16] == "6f512cb1c3948963"
    h = hashlib.sha256()
    Ws = []
    for c in cfgs:
        p = make_problem(c)
        Ws.append(p.params.W)
        for a in [*(a for n, a in p.params.items() if n != "W"), p.xs, p.ys, p.s0, p.mask]:
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    assert h.hexdigest()[:16] == "3ec9cee2d6bbb715"
    weighted = sum((i + 1) * float(W.sum()) for i, W in enumerate(Ws))
    absolute = sum(float(np.abs(W).sum()) for W in Ws)
    assert abs(weighted - 897.2506079646852) <= 1e-12 * 897.25
    assert abs(absolute - 317.8397429702505) <= 1e-12 * 317.84
    assert all(c.cell == "rnn" for c in cfgs)


def test_split_examples_and_each_cells_own_stream():
    assert sweep.split_examples(3000, CELLS) == {"rnn": 1000, "gru": 1000, "lstm": 1000}
    assert sweep.split_examples(32, CELLS) == {"rnn": 11, "gru": 11, "lstm": 10}
    assert sweep.split_examples(3000, ("rnn",)) == {"rnn": 3000}
    gru = sweep.plan_configs(0, sweep.QUICK, full_support("gru"))
    lstm = sweep.plan_configs(0, sweep.QUICK, full_support("lstm"))
    assert {c.cell for c in gru} == {"gru"} and {c.activation for c in gru} == {None}
    assert [c.seed for c in gru] != [c.seed for c in lstm]
    assert {c.truncate is None for c in gru} == {True, False}
    assert {c.s0_kind for c in lstm} >= {"shared", "per_row"}


@settings(max_examples=25, deadline=None)
@given(rnn_configs(cells=("gru", "lstm"), bias=True, s0_kinds=("shared", "per_row")))
def test_gated_problems_have_different_nonzero_biases_and_a_nonzero_lstm_state(cfg):
    prob = make_problem(cfg)
    p = prob.params
    assert cfg.activation is None and "activation" not in prob.kwargs()
    assert isinstance(p, mb.GRUParams if cfg.cell == "gru" else mb.LSTMParams)
    assert np.all(p.b_ih != 0) and np.all(p.b_hh != 0) and not np.any(p.b_ih == p.b_hh)
    if cfg.cell == "lstm":
        assert isinstance(prob.s0, mb.LSTMState)
        assert prob.s0.h.shape == prob.s0.c.shape and np.all(prob.s0.h != 0) and np.all(prob.s0.c != 0)


def test_gated_weight_scales_drive_gates_into_and_out_of_saturation():
    def saturated(scale: float) -> float:
        cfg = RNNConfig(T=6, B=4, D=5, H=6, K=3, tokens=False, bias=True, activation=None, truncate=None,
                        reduction="sum", use_mask=False, s0_kind="per_row", weight_scale=scale, seed=1,
                        cell="lstm")  # fmt: skip
        prob = make_problem(cfg)
        p = prob.params
        a = prob.xs @ p.U.T + p.b_ih + prob.s0.h[:, None] @ p.W.T + p.b_hh  # first-step-like pre-activations
        return float(np.mean(np.abs(a) > 3))  # sigmoid' < 0.05, tanh' < 0.01

    assert saturated(0.1) == 0 and saturated(3.0) > 0.25  # 0.39 measured


def test_a_gated_config_refuses_an_activation_and_an_elman_config_needs_one():
    base = dict(T=2, B=None, D=2, H=3, K=2, tokens=True, bias=True, truncate=None, reduction="sum",
                use_mask=False, s0_kind=None, weight_scale=1.0, seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="activation: applies to the Elman cell only"):
        RNNConfig(activation="tanh", cell="gru", **base)
    with pytest.raises(ValueError, match="activation: the Elman cell needs a name"):
        RNNConfig(activation=None, **base)
    with pytest.raises(ValueError, match="cell: expected one of"):
        RNNConfig(activation=None, cell="elman", **base)
    with pytest.raises(ValueError, match="cells: expected 'all' or some of"):
        bptt_report.check(cells="gated")
