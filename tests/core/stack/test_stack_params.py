"""StackParams and LayerWeights: torch's names and layout, checked at construction, every message
naming the array by its torch name; from and to a state dict, from and to the one-layer types,
init; read-only copies that never alias the caller's arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest
from stack_cases import stack_params, stack_problem

import manual_bptt as mb
import reference as ref


def refused(message: str, call) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


def state_dict(variant="lstm-proj", **kw):
    spec, params, _ = stack_problem(variant, L=2, bidirectional=True, **kw)
    return spec, params


def test_a_projection_must_be_smaller_than_H_and_only_the_lstms():
    _, params = state_dict()  # H = 5, P = 4
    for rows in (5, 6, 0):
        bad = dict(params, weight_hr_l0=np.zeros((rows, 5)))
        refused("weight_hr_l0: proj_size (its rows) must be 0 < proj_size < H (its columns)",
                lambda bad=bad: mb.StackParams.from_state_dict("lstm", bad))  # fmt: skip
    refused("proj_size: expected 0 or 0 < proj_size < hidden_size = 5, got 5",
            lambda: mb.StackParams.init("lstm", 2, 5, proj_size=5))  # fmt: skip
    refused("proj_size: only the LSTM has a projection, got 2 for 'gru'",
            lambda: mb.StackParams.init("gru", 2, 5, proj_size=2))  # fmt: skip
    _, params = state_dict("gru")
    with_proj = dict(params, weight_hr_l0=np.zeros((2, 5)))
    refused(
        "weight_hr_l0: only the LSTM has a projection",
        lambda: mb.StackParams.from_state_dict("gru", with_proj),
    )


def test_state_dict_problems_are_named():
    _, params = state_dict()
    missing = {k: v for k, v in params.items() if k != "weight_hh_l1_reverse"}
    refused(
        "mapping: missing 'weight_hh_l1_reverse'", lambda: mb.StackParams.from_state_dict("lstm", missing)
    )
    refused("mapping: unexpected names ['bias_l0', 'weight']",
            lambda: mb.StackParams.from_state_dict("lstm", {**params, "weight": 1,
                                                            "bias_l0": 2}))  # fmt: skip
    wrong = dict(params, weight_ih_l1=np.zeros((20, 4)))
    refused("weight_ih_l1: expected shape (20, 8) (G*H, dirs * H_out) with G = 4, H = 5, proj_size = 4, "
            "got (20, 4)",
            lambda: mb.StackParams.from_state_dict("lstm", wrong))  # fmt: skip
    no_bias = {k: v for k, v in params.items() if k != "bias_hh_l1"}
    refused(
        "bias_hh_l1: missing; layer 0 has biases", lambda: mb.StackParams.from_state_dict("lstm", no_bias)
    )
    no_proj = {k: v for k, v in params.items() if k != "weight_hr_l1_reverse"}
    refused("weight_hr_l1_reverse: missing; layer 0 has a projection",
            lambda: mb.StackParams.from_state_dict("lstm", no_proj))  # fmt: skip
    one_direction = {k: v for k, v in params.items() if not k.endswith("_l0_reverse")}
    refused("mapping: unexpected reverse direction of layer 1 (layer 0 has no reverse direction)",
            lambda: mb.StackParams.from_state_dict("lstm", one_direction))  # fmt: skip
    refused("mapping: expected a dict from torch's parameter names to arrays",
            lambda: mb.StackParams.from_state_dict("lstm", [1, 2]))  # fmt: skip
    refused("cell: expected one of ['gru', 'lstm', 'rnn'], got 'LSTM'",
            lambda: mb.StackParams.from_state_dict("LSTM", params))  # fmt: skip


def test_a_state_dict_of_another_cell_names_the_likely_cell():
    _, lstm = state_dict("lstm")
    refused(
        "weight_hh_l0: expected shape (G*H, H) = (15, 5) with G = 3 (gru), got (20, 5): 20 rows is not 3 "
        "blocks of H = 5; did you mean cell='lstm'?",
        lambda: mb.StackParams.from_state_dict("gru", lstm),
    )
    _, gru = state_dict("gru")
    refused("weight_hh_l0: expected shape (G*H, H) = (20, 5) with G = 4 (lstm), got (15, 5)",
            lambda: mb.StackParams.from_state_dict("lstm", gru))  # fmt: skip
    assert "did you mean cell='gru'?" in _message(lambda: mb.StackParams.from_state_dict("lstm", gru))
    _, rnn = state_dict("rnn-tanh")
    assert "did you mean cell='rnn'?" in _message(lambda: mb.StackParams.from_state_dict("gru", rnn))


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_the_output_layer_and_the_nonlinearity_are_checked():
    spec, params = state_dict()
    refused("V: expected shape (K, dirs * H_out) with dirs * H_out = 2 x 4 = 8",
            lambda: stack_params(spec, params, V=np.zeros((3, 4))))  # fmt: skip
    refused("c: expected shape (K,) = (3,), got (4,)", lambda: stack_params(spec, params, V=np.zeros((3, 8)),
                                                                            c=np.zeros(4)))  # fmt: skip
    refused("c: given without V", lambda: stack_params(spec, params, c=np.zeros(4)))
    refused("nonlinearity: the Elman cell's ('rnn'); the LSTM fixes its own",
            lambda: mb.StackParams.from_state_dict("lstm", params, nonlinearity="relu"))  # fmt: skip
    _, rnn = state_dict("rnn-tanh")
    refused("nonlinearity: expected 'tanh' or 'relu' for the Elman cell, got 'sigmoid'",
            lambda: mb.StackParams.from_state_dict("rnn", rnn, nonlinearity="sigmoid"))  # fmt: skip
    assert mb.StackParams.from_state_dict("rnn", rnn).nonlinearity == "tanh"


def test_layers_of_different_shapes_are_refused():
    p = mb.StackParams.init("gru", 2, 3, num_layers=2, bidirectional=True, seed=0)
    refused("layers[1]: has 1 direction(s), layer 0 has 2",
            lambda: mb.StackParams("gru", (p.layers[0], p.layers[1][:1])))  # fmt: skip
    refused("layers: expected a tuple of L >= 1 layers", lambda: mb.StackParams("gru", ()))
    refused(
        "layers[0][1]: expected a LayerWeights, got dict",
        lambda: mb.StackParams("gru", ((p.layers[0][0], {}),)),
    )
    lw = p.layers[1][0]
    wide = mb.LayerWeights(U=lw.U, W=np.zeros((9, 4)), b_ih=lw.b_ih, b_hh=lw.b_hh)
    refused("weight_hh_l1: expected shape (9, 3) (G*H, H_out) with G = 3, H = 3, got (9, 4)",
            lambda: mb.StackParams("gru", (p.layers[0], (wide, p.layers[1][1]))))  # fmt: skip


def test_the_arrays_are_read_only_copies():
    spec, params = state_dict()
    mine = {k: v.copy() for k, v in params.items()}
    p = stack_params(spec, mine)
    before = p["weight_hh_l1_reverse"].copy()
    mine["weight_hh_l1_reverse"][:] = 7.0
    np.testing.assert_array_equal(p["weight_hh_l1_reverse"], before)
    assert not any(a.flags.writeable for a in p.arrays())
    with pytest.raises(ValueError):
        p.layers[0][0].U[0, 0] = 1.0
    assert [name for name, _ in p.items()] == list(spec.param_shapes())
    with pytest.raises(KeyError):
        p["weight_hr_l2"]


def test_init_is_torchs_initialisation_and_seeded():
    p = mb.StackParams.init(
        "lstm", 3, 6, num_layers=3, bidirectional=True, proj_size=2, output_size=5, seed=1
    )
    q = mb.StackParams.init(
        "lstm", 3, 6, num_layers=3, bidirectional=True, proj_size=2, output_size=5, seed=1
    )
    assert (p.num_layers, p.directions, p.proj_size, p.out_size, p.output_size) == (3, 2, 2, 2, 5)
    assert p["weight_ih_l0"].shape == (24, 3) and p["weight_ih_l2_reverse"].shape == (24, 4)
    assert p["weight_hh_l1"].shape == (24, 2) and p["weight_hr_l1"].shape == (2, 6) and p.V.shape == (5, 4)
    for (name, a), (_, b) in zip(p.items(), q.items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
        bound = 1 / np.sqrt(4) if name in ("V", "c") else 1 / np.sqrt(6)
        assert np.abs(a).max() <= bound, name
    f32 = mb.StackParams.init("rnn", 2, 3, bias=False, dtype=np.float32, nonlinearity="relu", seed=2)
    assert f32.dtype == np.float32 and not f32.bias and f32.nonlinearity == "relu" and f32.V is None
    refused(
        "num_layers: expected an integer >= 1, got 0", lambda: mb.StackParams.init("rnn", 2, 3, num_layers=0)
    )
    refused(
        "bidirectional: expected True or False, got 1",
        lambda: mb.StackParams.init("rnn", 2, 3, bidirectional=1),
    )


def test_to_params_is_only_for_todays_one_layer_case():
    p = mb.StackParams.init("gru", 2, 3, num_layers=2, output_size=4, seed=0)
    refused("p: only a stack of one layer, one direction and no projection converts to today's types, got "
            "num_layers = 2", p.to_params)  # fmt: skip
    refused("V: to_params needs the output layer V", mb.StackParams.init("gru", 2, 3, seed=0).to_params)
    refused("p: expected manual_bptt.RNNParams, GRUParams or LSTMParams, got dict",
            lambda: mb.StackParams.from_params({}))  # fmt: skip
    g = mb.StackParams.init("lstm", 2, 3, num_layers=2, bidirectional=True, seed=0).astype(np.float32)
    assert g.dtype == np.float32 and g.num_layers == 2


def test_a_state_dict_value_that_is_no_plain_array_is_named_by_its_torch_name():
    import torch

    spec, params = state_dict("gru")
    module = ref.make_torch_stack(spec, params)
    named = dict(module.named_parameters())  # Parameters require grad: np.asarray cannot read them
    refused("weight_ih_l0: a Parameter that requires grad: pass value.detach().numpy()",
            lambda: mb.StackParams.from_state_dict("gru", named))  # fmt: skip
    strings = {**params, "weight_hh_l1": np.array(["a"])}
    refused("weight_hh_l1: expected a real numeric array, got dtype <U1",
            lambda: mb.StackParams.from_state_dict("gru", strings))  # fmt: skip
    p = mb.StackParams.from_state_dict("gru", module.state_dict())
    np.testing.assert_array_equal(p["weight_hh_l1_reverse"], module.weight_hh_l1_reverse.detach().numpy())
    assert isinstance(module.weight_hh_l1_reverse, torch.nn.Parameter)
