"""check-module's layer contract and plan, without a worker: what a module's configuration is read
as, which configurations are refused and how, the likely cause of a shape mismatch or of a
forward that raised on the contract's call (on torch's own messages), the ways of calling a layer
that the plan covers, and the merging of findings that differ only in shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bptt_report.judge.compare import compare_module_arrays
from bptt_report.module import cases, contract
from bptt_report.module.check import merged, uncovered
from bptt_report.module.session import Evaluation
from bptt_report.module.worker import PLAIN_CALL, call_of
from bptt_report.run.protocol import Reply

GIVEN = {"input_size": 3, "hidden_size": 5, "bias": True, "batch_first": True}


class _Named(nn.Module):
    """No configuration attributes: only parameters named as torch names them."""

    def __init__(self, *names: str, shape: tuple[int, int] = (2, 5)) -> None:
        super().__init__()
        for n in names:
            self.register_parameter(n, nn.Parameter(torch.zeros(shape)))


# --- the configuration, read from outside ------------------------------------------------------
def test_the_configuration_is_read_from_torchs_attributes():
    c = contract.read_config(nn.LSTM(3, 5, num_layers=2, batch_first=True, proj_size=2))
    assert (c.num_layers, c.bidirectional, c.proj_size, c.batch_first, c.bias) == (2, False, 2, True, True)
    assert c.where("num_layers") == "attribute"
    assert contract.read_config(nn.RNN(3, 5, nonlinearity="relu")).nonlinearity == "relu"


def test_without_attributes_the_parameter_names_say_layers_directions_and_projection():
    c = contract.read_config(_Named("weight_ih_l0", "weight_ih_l1", "weight_hh_l1_reverse"))
    assert (c.num_layers, c.bidirectional) == (2, True) and c.where("num_layers") == "parameter names"
    assert contract.read_config(_Named("weight_hr_l0", shape=(3, 7))).proj_size == 3
    plain = contract.read_config(_Named("weight_ih_l0", "weight_hh_l0"))
    assert (plain.num_layers, plain.bidirectional, plain.proj_size) == (1, None, None)


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.LSTM(3, 5, num_layers=2, batch_first=True), contract.Shape(num_layers=2)),
        (nn.GRU(3, 5, bidirectional=True, batch_first=True), contract.Shape(directions=2)),
        (nn.LSTM(3, 5, 3, batch_first=True, bidirectional=True, proj_size=2), contract.Shape(3, 2, 2)),
        (_Named("weight_ih_l0", "weight_ih_l2", "weight_hh_l1_reverse"), contract.Shape(3, 2)),
        (_Named("weight_ih_l0", "weight_hr_l0", shape=(4, 6)), contract.Shape(proj_size=4)),
    ],
)
def test_stacked_bidirectional_and_projected_layers_are_read_as_their_shape_and_not_refused(module, shape):
    config = contract.read_config(module)
    assert contract.refusal(module, config, GIVEN, "lstm") is None
    assert contract.shape_of(config) == shape and contract.shape_of(config, "packed").feed == "packed"


def test_what_is_not_checked_is_refused_saying_why():
    """Dropout between layers is random in train() mode (the reference has none); a projection on
    another cell than the LSTM is the wrong --cell."""
    m = nn.LSTM(3, 5, num_layers=2, dropout=0.5, batch_first=True)
    why = contract.refusal(m, contract.read_config(m), GIVEN, "lstm")
    assert why.startswith("torch.nn.LSTM with dropout=0.5: in train() mode") and "dropout=0" in why
    one = nn.LSTM(3, 5, dropout=0.0, batch_first=True)  # (torch ignores dropout with one layer)
    assert contract.refusal(one, contract.read_config(one), GIVEN, "lstm") is None
    named = _Named("weight_ih_l0", "weight_hh_l0", "weight_hr_l0", shape=(3, 5))
    why = contract.refusal(named, contract.read_config(named), GIVEN, "gru")
    assert "with proj_size=3 (read from its parameter names)" in why and "did you mean --cell lstm?" in why


def test_the_contracts_own_layers_are_not_refused_and_a_contradiction_is():
    for layer in (nn.RNN, nn.GRU, nn.LSTM):
        m = layer(3, 5, batch_first=True)
        assert contract.refusal(m, contract.read_config(m), GIVEN) is None
    m = nn.GRU(3, 5)  # batch_first=False, whatever it was given
    assert "given batch_first=True but built torch.nn.GRU with batch_first=False" in contract.refusal(
        m, contract.read_config(m), GIVEN
    )


def test_a_factory_without_the_contracts_keywords_is_named_with_what_it_takes():
    def min_gru(dim, bias=True):
        return None

    why = contract.factory_mismatch(min_gru, GIVEN)
    assert "it takes no input_size, hidden_size, batch_first" in why and "(dim, bias=True)" in why
    assert contract.factory_mismatch(nn.LSTM, GIVEN) is None  # (*args, **kwargs): tried by calling

    def wrapped(**kw):
        return None

    assert contract.factory_mismatch(wrapped, GIVEN) is None
    exc = TypeError("__init__() got an unexpected keyword argument 'input_size'")
    assert "does not take the contract's keywords" in contract.factory_type_error(exc, GIVEN)
    assert contract.factory_type_error(TypeError("unsupported operand type(s)"), GIVEN) is None


# --- the likely cause of a mismatch ----------------------------------------------------------
@pytest.mark.parametrize(
    ("got", "want", "cell", "words"),
    [
        ((28, 2), (21, 2), "gru", ": 4H rows, as an LSTM has: did you mean --cell lstm?"),
        ((21, 2), (28, 2), "lstm", ": 3H rows, as a GRU has: did you mean --cell gru?"),
        ((7, 2), (21, 2), "gru", ": H rows, as an Elman RNN (torch.nn.RNN) has: did you mean --cell rnn?"),
        ((14, 2), (7, 2), "rnn", ": 2H rows, as no cell of check-module has (rnn H, gru 3H, lstm 4H)"),
    ],
)
def test_rows_of_another_cell_suggest_that_cell(got, want, cell, words):
    text = contract.shape_hint("weight_ih_l0", got, want, cell, D=2, H=7)
    assert text == f"weight_ih_l0 has shape {got}, expected {want}{words}"


def test_columns_that_are_not_h_name_the_projection_and_columns_that_are_not_d_the_input_size():
    proj = contract.shape_hint("weight_hh_l0", (28, 4), (28, 7), "lstm", D=2, H=7)
    assert "as an LSTM with proj_size=4 has" in proj
    assert "where the factory was given input_size=2" in contract.shape_hint(
        "weight_ih_l0", (28, 3), (28, 2), "lstm", D=2, H=7
    )


def _torch_message(module: nn.Module, x: torch.Tensor, state) -> str:
    with pytest.raises(RuntimeError) as info:
        module(x, state)
    return str(info.value)


def test_torchs_own_hidden_size_errors_are_recognised_with_their_cause():
    B, T, D, H = 4, 6, 2, 7
    case = {"B": B, "T": T, "D": D, "H": H}
    x, h0 = torch.randn(B, T, D), torch.zeros(1, B, H)
    two = _torch_message(nn.LSTM(D, H, num_layers=2, batch_first=True), x, (h0, h0))
    assert "layers x directions" in contract.forward_mismatch(two, case)
    both = _torch_message(nn.GRU(D, H, bidirectional=True, batch_first=True), x, h0)
    assert "stacked (num_layers > 1) or bidirectional" in contract.forward_mismatch(both, case)
    second = _torch_message(nn.GRU(D, H), x, h0)  # batch_first=False
    assert "ignored batch_first=True" in contract.forward_mismatch(second, case)
    proj = _torch_message(nn.LSTM(D, H, proj_size=3, batch_first=True), x, (h0, h0))
    assert "proj_size=3" in contract.forward_mismatch(proj, case)
    wide = _torch_message(nn.GRU(D + 1, H, batch_first=True), x, h0)
    assert "built for input_size=3 where the factory was given input_size=2" in contract.forward_mismatch(
        wide, case
    )


def test_a_forward_that_raises_otherwise_is_the_modules_own_failure():
    case = {"B": 4, "T": 6, "D": 2, "H": 7}
    own = "fused kernel: no launch configuration for x of shape (4, 6, 2)"
    assert contract.forward_mismatch(own, case) is None
    # a hidden-size message about a state check-module did not give: not recognised
    assert contract.forward_mismatch("Expected hidden size (2, 4, 7), got [3, 4, 7]", case) is None


# --- the plan: every way of calling a layer, large sizes ---------------------------------------
def _plan(n: int, cell: str = "gru") -> list[dict]:
    return cases.plan(np.random.default_rng(5), np.random.default_rng([5, 1]), cell, "float64", True, n)


def test_two_configurations_call_the_layer_every_way():
    first, second = _plan(2)
    assert call_of(first) == PLAIN_CALL and first["bias"] and second["bias"]
    ways = {kv for c in (first, second) for kv in call_of(c).items()}
    assert ways == set(cases.CALL_WORDS)
    assert "warmup" in second and second["warmup"].keys() == second["params"].keys()
    assert all(not np.array_equal(second["warmup"][n], second["params"][n]) for n in second["params"])


def test_the_plan_has_large_configurations_called_the_plain_way_and_keeps_the_first_draws():
    plan = _plan(12)
    large = [c for c in plan if c["large"]]
    assert len(large) == 2 and plan[-2:] == large and len(_plan(4)) == 4 and _plan(4)[-1]["large"]
    for c in large:
        assert c["T"] >= 64 and c["B"] >= 8 and c["H"] >= 32 and call_of(c) == PLAIN_CALL
    rng = np.random.default_rng(5)  # the calls' own draws come from the second generator
    again = [cases.draw_case(rng, "gru", "float64", True, bias=(i % 4 != 2)) for i in range(10)]
    for c, d in zip(plan, again, strict=False):
        assert (c["D"], c["H"], c["T"], c["B"]) == (d["D"], d["H"], d["T"], d["B"])
        assert np.array_equal(c["x"], d["x"])
    assert not any(c["large"] for c in _plan(3))


def test_as_called_compares_what_the_call_could_produce():
    case = _plan(2, "lstm")[1]  # eval, m(x), x without grad, reused
    used, skipped = cases.as_called(case, {"out": None})
    assert skipped == {"h0", "c0", "x"} and not used["h0"].any() and not used["c0"].any()
    assert case["h0"].any()  # the case itself is left as it was
    used, skipped = cases.as_called(case, {"out": None, "h0": None, "c0": None})  # a forward that needs h0
    assert skipped == {"x"} and np.array_equal(used["h0"], case["h0"]) and call_of(used)["h0"]


def test_a_way_of_calling_no_checked_configuration_used_is_not_covered():
    plan = _plan(3)
    ok, declined = Reply(status="ok"), Reply(status="unsupported")
    assert uncovered(plan, [Evaluation(c, ok) for c in plan]) == []
    evals = [Evaluation(plan[0], ok), Evaluation(plan[1], declined), Evaluation(plan[2], ok)]
    missing = uncovered(plan, evals)
    assert "in eval() mode" in missing and "as m(x), without h0" in missing
    assert "on a reused instance (parameters changed)" not in missing  # #2 reuses one too


# --- findings merged --------------------------------------------------------------------------
def test_texts_that_differ_only_in_shapes_are_one_line_with_a_count():
    texts = [
        (0, "the module raised RuntimeError: no kernel for x of shape (4, 6, 2)"),
        (2, "the module raised RuntimeError: no kernel for x of shape (3, 4, 5)"),
        (3, "the module raised RuntimeError: got [1, 4, 7]"),
        (1, "the module called sys.exit(3)"),
        (4, "the module called sys.exit(4)"),
        (5, "the module raised RuntimeError: Expected hidden[0] size (2, 4, 7)"),
        (6, "the module raised RuntimeError: Expected hidden[1] size (2, 4, 7)"),
    ]
    lines = merged(texts, 7)
    assert lines[0] == (
        "the module raised RuntimeError: no kernel for x of shape (4, 6, 2) in 2 of 7 configurations "
        "(first #0; the shapes differ)"
    )
    assert lines[1] == "the module raised RuntimeError: got [1, 4, 7] during configuration #3"
    assert len(lines) == 6  # other numbers than shapes (an exit status, an index) are other findings


# --- stacks: the shape, its parameters, how variable lengths are declared and drawn ------------
@pytest.mark.parametrize(
    "shape", [contract.Shape(), contract.Shape(2, 1, 0), contract.Shape(3, 2, 2), contract.Shape(1, 2, 0)]
)
def test_a_shapes_parameters_are_those_of_torchs_layer_of_that_shape(shape):
    for cell, cls in (("rnn", nn.RNN), ("gru", nn.GRU), ("lstm", nn.LSTM)):
        if shape.proj_size and cell != "lstm":
            continue
        for bias in (True, False):
            kw = {"proj_size": shape.proj_size} if shape.proj_size else {}
            m = cls(3, 5, num_layers=shape.num_layers, bidirectional=shape.directions == 2, bias=bias, **kw)
            want = {n: tuple(t.shape) for n, t in m.state_dict().items()}
            got = shape.param_shapes(cell, 3, 5, bias)
            assert list(got.items()) == list(want.items()), (cell, bias)


def test_a_module_declares_variable_lengths_by_its_forward_or_an_attribute():
    from torch.nn.utils.rnn import PackedSequence

    class TakesLengths(nn.Module):
        def forward(self, x, state=None, lengths=None):
            return x

    class Annotated(nn.Module):
        def forward(self, x: PackedSequence, state=None):
            return x

    def factory(**kw):
        return nn.LSTM(**kw)

    assert contract.declared_feed(factory, TakesLengths()) == "lengths"
    assert contract.declared_feed(factory, Annotated()) == "packed"
    assert contract.declared_feed(factory, nn.LSTM(3, 5)) is None  # torch's own: --lengths
    factory.takes_packed_sequence = True
    assert contract.declared_feed(factory, nn.LSTM(3, 5)) == "packed"


def test_lengths_are_drawn_of_each_kind():
    rng = np.random.default_rng(0)
    for T, B in ((4, 4), (5, 2), (70, 9)):
        for _ in range(20):
            n = cases.draw_lengths(rng, "different", T, B)
            assert len(set(n)) == B and n.min() == 1 and n.max() <= T and not np.all(np.diff(n) < 0)
            assert np.array_equal(cases.draw_lengths(rng, "full", T, B), np.full(B, T))
            some = cases.draw_lengths(rng, "some one", T, B)
            assert some.min() == 1 and some.max() == T and some.dtype == np.int64
    plan = cases.plan(np.random.default_rng(5), np.random.default_rng([5, 1]), "lstm", "float64", True, 3,
                      lambda D, H, bias: contract.Shape(2, 2, 2, "packed"))  # fmt: skip
    first, full, some = (c["lengths"] for c in plan)  # the kinds in turn: different, full, some one
    assert len(set(first)) == len(first) and np.all(full == plan[1]["T"]) and some.min() == 1
    c, reused = plan[0], plan[1]
    assert c["h0"].shape == (4, c["B"], 2) and c["c0"].shape == (4, c["B"], c["H"])
    assert c["dout"].shape == (c["B"], c["T"], 4) and "weight_hr_l1_reverse" in c["params"]
    assert reused["warmup"].keys() == reused["params"].keys()


@pytest.mark.parametrize("shape", [contract.Shape(2, 1, 0), contract.Shape(3, 2, 2, "packed"),
                                   contract.Shape(1, 2, 0, "lengths")])  # fmt: skip
def test_the_stack_reference_equals_torchs_own_layer_of_that_shape_at_float64(shape):
    """The reference (manual_bptt.backward on a StackParams) and the baseline (torch's own layer
    of the shape, fed a PackedSequence when there are lengths) on the same drawn case, in this
    process: the mapping of the parameters, the (L*dirs, B, .) states, the upstream gradients and
    the lengths."""
    settings = {"cell": "", "dtype": "float64", "device": "cpu"}
    rng = np.random.default_rng(2)
    for cell in ("rnn", "gru", "lstm") if not shape.proj_size else ("lstm",):
        settings["cell"] = cell
        for i, bias in enumerate((True, False)):
            case = cases.draw_case(rng, cell, "float64", True, bias, shape_of=lambda D, H, b: shape,
                                   kind=cases.LENGTHS[i])  # fmt: skip
            ref = cases.reference(cell, "relu" if cell == "rnn" else "tanh", case)
            native = cases.baseline(cell, "relu" if cell == "rnn" else "tanh", settings, case)
            assert list(native) == list(ref)
            for e in compare_module_arrays(native, ref, None, "float64"):
                assert e.passed, (cell, e)
            if shape.feed:
                past = np.arange(case["T"])[None, :] >= case["lengths"][:, None]
                assert past.any() == (i == 0) and not ref["x"][past].any() and not ref["out"][past].any()


def test_a_shape_mismatch_in_a_stack_names_its_likely_cause():
    two = contract.Shape(2, 2, 0)
    hint = contract.shape_hint("weight_ih_l1", (28, 7), (28, 14), "lstm", D=3, H=7, shape=two)
    assert "as a layer of one direction gives it, where bidirectional was read" in hint
    proj = contract.Shape(2, 1, 3)
    hint = contract.shape_hint("weight_hh_l0", (28, 7), (28, 3), "lstm", D=3, H=7, shape=proj)
    assert "where proj_size is 3" in hint
    hint = contract.shape_hint("weight_ih_l1", (28, 7), (28, 3), "lstm", D=3, H=7, shape=proj)
    assert "the layer above a projection takes the projected h_t" in hint
    assert "did you mean --cell gru?" in contract.shape_hint(
        "weight_ih_l1_reverse", (21, 14), (28, 14), "lstm", D=3, H=7, shape=two
    )
    names = ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]
    extra = contract.extra_hint(["weight_ih_l1", "weight_hh_l1"], names, contract.Shape(),
                                contract.LayerConfig(num_layers=1, source=(("num_layers", "attribute"),)))
    assert "those of 2 layers of 1 direction, where num_layers=1 (from its attribute)" in extra
    missing = contract.missing_hint(["weight_ih_l0", "weight_hh_l0"], contract.Shape(2, 1, 0))
    assert "those of 1 layer of 1 direction, where num_layers=2" in missing


def test_torchs_hidden_size_error_for_a_stack_it_cannot_see_is_recognised():
    B, T, D, H = 4, 6, 2, 7
    shape = contract.Shape(num_layers=2)  # read: two layers; the module runs three
    case = {"B": B, "T": T, "D": D, "H": H, "shape": shape}
    h0 = torch.zeros(2, B, H)
    three = _torch_message(nn.LSTM(D, H, num_layers=3, batch_first=True), torch.randn(B, T, D), (h0, h0))
    assert "an initial state of 3 layers x directions" in contract.forward_mismatch(three, case)
    assert contract.forward_mismatch(three, dict(case, shape=contract.Shape())) is None  # not what was given
    packed = dict(case, shape=contract.Shape(feed="packed"))
    cause = contract.forward_mismatch("'PackedSequence' object has no attribute 'shape'", packed)
    assert "does not take a PackedSequence" in cause
    assert contract.forward_mismatch("'PackedSequence' object has no attribute 'shape'", case) is None
