"""check_module: PyTorch recurrent layers written as users write them (tests/user_modules.py, each a
hand-written backward in a torch.autograd.Function) against the float64 reference.

Correct layers and torch's own pass at float64 and float32; each broken one is caught, and the
sentence that localizes it says where. The modules run in worker processes (loaded by name;
tests/ is on sys.path there too).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bptt_report.cells import CELLS
from bptt_report.errors import UsageError
from bptt_report.judge.compare import FACTOR, compare_module_array, compare_module_arrays
from bptt_report.module import cases
from bptt_report.module import check as mc
from bptt_report.module.check import check_module

QUICK = {"quick": True, "examples": 2}


def failing(r: mc.ModuleCheckResult) -> list[str]:
    return [a.name for a in r.arrays if not a.ok]


# --- units (no worker) ------------------------------------------------------------------------
def test_a_drawn_configuration_has_unequal_sizes_distinct_biases_and_random_upstream_gradients():
    rng = np.random.default_rng(3)
    for cell in CELLS:
        for _ in range(20):
            c = cases.draw_case(rng, cell, "float32", False, bias=True)
            assert len({c["D"], c["H"], c["T"], c["B"]}) == 4
            b_ih, b_hh = c["params"]["bias_ih_l0"], c["params"]["bias_hh_l0"]
            assert np.all(b_ih != 0) and np.all(b_hh != 0) and not np.allclose(b_ih, b_hh)
            assert len(np.unique(c["dout"])) > c["dout"].size // 2  # never all-ones
            assert np.all(c["x"] == c["x"].astype(np.float32))  # rounded to the module's dtype
            assert np.any(c["h0"] != 0)


def test_bfloat16_rounding_is_exact_in_bfloat16():
    a = np.random.default_rng(0).standard_normal(50)
    r = cases._round(a, "bfloat16")
    assert np.array_equal(cases._round(r, "bfloat16"), r) and not np.array_equal(r, a)


@pytest.mark.parametrize("cell", CELLS)
def test_the_reference_equals_torchs_own_layer_at_float64(cell):
    """The mapping of torch's parameters to ours (b = b_ih + b_hh for the Elman cell) and of the
    upstream gradients, checked against nn.RNN / nn.GRU / nn.LSTM in this process."""
    settings = {"cell": cell, "dtype": "float64", "device": "cpu"}
    rng = np.random.default_rng(1)
    for bias in (True, False):
        case = cases.draw_case(rng, cell, "float64", False, bias=bias)
        ref = cases.reference(cell, "tanh", case)
        native = cases.baseline(cell, "tanh", settings, case)
        for e in compare_module_arrays(native, ref, None, "float64"):
            assert e.passed, e


def test_nan_fails_the_verdict_at_every_dtype():
    ref = np.ones((2, 3))
    bad = ref.copy()
    bad[0, 1] = np.nan
    for dtype in ("float64", "float32"):
        e = compare_module_array("x", bad, ref, None if dtype == "float64" else ref.copy(), dtype)
        assert not e.passed and math.isinf(e.abs_error)


def test_the_lower_precision_verdict_is_relative_to_the_baseline():
    ref = np.ones(4)
    base = ref + 1e-7
    assert compare_module_array("x", ref + (FACTOR - 1) * 1e-7, ref, base, "float32").passed
    assert not compare_module_array("x", ref + (FACTOR + 1) * 1e-7, ref, base, "float32").passed


def test_usage_errors_before_any_work():
    with pytest.raises(UsageError, match="cell: expected one of rnn, gru, lstm"):
        check_module("torch.nn:LSTM", cell="elman")
    with pytest.raises(UsageError, match="dtype"):
        check_module("torch.nn:LSTM", cell="lstm", dtype="int8")
    with pytest.raises(UsageError, match="examples"):
        check_module("torch.nn:LSTM", cell="lstm", examples=0)
    with pytest.raises(UsageError, match="lengths: expected True, False or None, got 'yes'"):
        check_module("torch.nn:LSTM", cell="lstm", lengths="yes")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            check_module("torch.nn:LSTM", cell="lstm", device="cuda")


# --- correct layers pass ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", CELLS)
def test_a_correct_hand_written_layer_passes(cell, dtype):
    r = check_module(f"user_modules:correct_{cell}", cell=cell, dtype=dtype, **QUICK)
    r.assert_ok()
    assert r.checked == 2 and len(r.arrays) == (10 if cell == "lstm" else 8)
    if dtype == "float32":
        assert all(a.ratio <= FACTOR and a.base_rel > 0 for a in r.arrays)


def test_torchs_own_elman_layer_passes_at_float32():
    """(nn.GRU, nn.LSTM: the reference test above in this process, and the command-line test.)"""
    r = check_module("torch.nn:RNN", cell="rnn", dtype="float32", **QUICK)
    assert r.verdict == "PASS" and r.baseline_name == "torch.nn.RNN", r.summary()
    assert all(a.ratio <= 2 for a in r.arrays)  # the baseline is the module itself (in another process)


def test_a_module_named_differently_is_checked_through_the_adapter_hook():
    check_module("user_modules:adapted_rnn", cell="rnn", **QUICK).assert_ok()


# --- broken layers are caught and localized ---------------------------------------------------
def test_a_recurrence_cut_after_one_step_is_wrong_from_lag_2():
    r = check_module("user_modules:rnn_cut_after_one_step", cell="rnn", **QUICK)
    assert r.verdict == "FAIL" and "weight_hh_l0" in failing(r)
    loc = r.localization
    assert loc.first_wrong_lag == 2
    assert [p.ok for p in loc.lags[:2]] == [True, True] and all(p.module == 0 for p in loc.lags[2:])
    assert (
        "dW, db_ih, db_hh, dx, dh0 wrong from lag 2 on: the recurrence is cut after one step" in loc.sentence
    )
    with pytest.raises(AssertionError, match="cut after one step"):
        r.assert_ok()


def test_h_t_where_h_t_minus_1_belongs_in_dw_is_named():
    r = check_module("user_modules:rnn_dw_from_h_t", cell="rnn", **QUICK)
    assert failing(r) == ["weight_hh_l0"]
    loc = r.localization
    assert loc.first_wrong_lag is None and loc.smallest_T == 1
    assert "dW wrong while dx agrees at every lag" in loc.sentence
    assert "h_t is used where h_{t-1} belongs" in loc.sentence


def test_the_gru_reset_gate_before_the_matrix_product_is_a_forward_error():
    r = check_module("user_modules:gru_reset_before_matmul", cell="gru", **QUICK)
    assert r.verdict == "FAIL" and r.findings[0].startswith("the forward is wrong: out, h_n differ")
    assert r.localization.forward_first_step == 0 and r.localization.smallest_T == 1
    assert r.localization.sentence.startswith("the forward is wrong")


def test_swapped_lstm_i_and_g_gate_gradients_are_named():
    r = check_module("user_modules:lstm_i_g_swapped", cell="lstm", **QUICK)
    assert not any(n in failing(r) for n in cases.FORWARD)
    assert "the i and g gate gradients are swapped" in r.localization.sentence
    assert "the i and g gate blocks of dU, dW, db_ih, db_hh are exchanged" in r.localization.sentence


def test_the_b_ih_gradient_given_to_b_hh_only_is_named():
    r = check_module("user_modules:rnn_bias_ih_to_hh", cell="rnn", **QUICK)
    assert failing(r) == ["bias_ih_l0"]
    assert (
        "db_ih is zero while db_hh agrees: the gradient of b_ih was given to b_hh only"
        in r.localization.sentence
    )


def test_float16_accumulation_in_a_float32_kernel_fails_the_precision_aware_verdict_only():
    r = check_module("user_modules:rnn_float16_accumulation", cell="rnn", dtype="float32", **QUICK)
    assert r.verdict == "FAIL"
    bad = [a for a in r.arrays if not a.ok]
    assert {a.name for a in bad} >= {"weight_ih_l0", "weight_hh_l0"}
    assert all(a.ratio > 100 * FACTOR for a in bad)
    assert all(a.rel < 1e-2 for a in r.arrays)  # a loose fixed tolerance (1e-2 relative) would pass it
    assert "less accurate than torch's own module at float32" in r.localization.sentence


def test_an_input_modified_in_place_is_a_finding():
    r = check_module("user_modules:rnn_mutates_h0", cell="rnn", **QUICK)
    assert r.verdict == "FAIL" and not failing(r)
    assert r.findings == ["the module modified its input h0 in place in 2 of 2 configurations (first #0)"]


def test_nondeterminism_is_reported_with_its_size_not_failed():
    r = check_module("user_modules:rnn_random_summation_order", cell="rnn", dtype="float32", **QUICK)
    assert r.verdict == "PASS", r.summary()
    assert 0 < r.nondeterminism["weight_ih_l0"] < 1e-5 and "nondeterministic" in r.summary()


def test_a_module_that_ends_its_process_is_a_finding_not_a_crash():
    r = check_module("user_modules:exits_on_long_sequences", cell="rnn", quick=True, examples=1)
    assert r.verdict == "FAIL" and r.checked == 0
    assert any("process ended with status 0" in f for f in r.findings), r.findings


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("user_modules:renamed_parameters", "has no parameter weight_ih_l0, weight_hh_l0, bias_ih_l0"),
        ("user_modules:returns_out_only", r"the forward must return \(out, h_n\), got a Tensor"),
        ("user_modules:no_such_factory", "has no attribute 'no_such_factory'"),
    ],
)
def test_a_module_outside_the_contract_is_a_usage_error_naming_what_is_missing(spec, message):
    with pytest.raises(UsageError, match=message):
        check_module(spec, cell="rnn", **QUICK)
