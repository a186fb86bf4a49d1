"""PyTorch autograd oracles for BPTT: the Elman RNN, the GRU and the LSTM; plain, unrolled, checkable by eye.

    import reference as ref
    r = ref.bptt(p, xs, ys, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None)
    r.loss, r.grads.U, r.grads.W, r.grads.V, r.grads.b, r.grads.c, r.ds0, r.dxs, r.final_state

`p` is any object with numpy attributes U (H, D), W (H, H), V (K, H), b (H,) or None,
c (K,) or None.

The gated cells, in PyTorch's layer-0 layout (U (G*H, D), W (G*H, H), b_ih and b_hh (G*H,) or
both None, V (K, H), c (K,) or None; GRU gates r, z, n, LSTM gates i, f, g, o):

    r = ref.gru_bptt(p, xs, ys, s0=None, truncate=None, reduction="sum", mask=None)
    r = ref.lstm_bptt(p, xs, ys, s0=(h0, c0), ...)        # r.ds0, r.final_state: LSTMState(h, c)
    r.loss, r.grads.U, .W, .b_ih, .b_hh, .V, .c, r.ds0, r.dxs, r.final_state
    r = ref.bptt_cell("rnn" | "gru" | "lstm", p, xs, ys, **kwargs)

The recurrent layer alone (no output layer): L = sum_t <dhs_t, h_t> + <d_final, final state>,

    r = ref.layer_backward("rnn" | "gru" | "lstm", p, xs, dhs, s0=None, d_final=None, truncate=None)
    r.grads["U"], ["W"], ["b"] or ["b_ih"], ["b_hh"]; r.dxs, r.ds0, r.hs, r.final_state

Every shape of torch's recurrent layers (num_layers, bidirectional, the LSTM's proj_size, bias,
variable lengths), the parameters a dict keyed by torch's names (`weight_ih_l0`, ...,
`weight_hr_l1_reverse`): L = sum <d_outputs, outputs> + <d_h_n, h_n> + <d_c_n, c_n>,

    spec = ref.StackSpec("rnn" | "gru" | "lstm", input_size, hidden_size, num_layers=1,
                         bidirectional=False, proj_size=0, bias=True, nonlinearity="tanh")
    r = ref.stack_backward(spec, params, x, h0=None, c0=None, lengths=None,
                           d_outputs=None, d_h_n=None, d_c_n=None)
    r.outputs, r.h_n, r.c_n, r.grads[name], r.dx, r.dh0, r.dc0
    module = ref.make_torch_stack(spec, params); params = ref.stack_params_from_torch(module)
    r = ref.torch_stack_backward(module, x, ...)          # the native module, packed when lengths

See `reference.gated`, `reference.decompose_gated`, `reference.torch_gated`, `reference.layer`,
`reference.stack` and `reference.torch_stack`.
"""

from .autograd import ParamsLike, RefGrads, RefResult, bptt
from .decompose import state_jacobian, untied_terms
from .decompose_gated import (
    GatedTerms,
    gated_state_jacobian,
    gated_terms,
    gru_state_jacobian,
    gru_terms,
    lstm_state_jacobian,
    lstm_terms,
)
from .gated import (
    GatedGrads,
    GatedParamsLike,
    GatedResult,
    LSTMState,
    bptt_cell,
    gated_bptt,
    gru_bptt,
    lstm_bptt,
)
from .layer import LayerRef, layer_backward
from .stack import (
    StackResult,
    StackSpec,
    check_stack_inputs,
    check_stack_params,
    param_name,
    spec_from_params,
    stack_backward,
)
from .torch_gated import (
    make_torch_gru,
    make_torch_lstm,
    params_from_torch,
    to_torch,
    torch_gated_bptt,
    torch_gru_bptt,
    torch_lstm_bptt,
)
from .torch_rnn import make_torch_rnn, torch_rnn_bptt
from .torch_stack import make_torch_stack, spec_of_module, stack_params_from_torch, torch_stack_backward

__all__ = [
    "GatedGrads",
    "GatedParamsLike",
    "GatedResult",
    "GatedTerms",
    "LSTMState",
    "LayerRef",
    "ParamsLike",
    "RefGrads",
    "RefResult",
    "StackResult",
    "StackSpec",
    "bptt",
    "bptt_cell",
    "check_stack_inputs",
    "check_stack_params",
    "gated_bptt",
    "gated_state_jacobian",
    "gated_terms",
    "gru_bptt",
    "gru_state_jacobian",
    "gru_terms",
    "layer_backward",
    "lstm_bptt",
    "lstm_state_jacobian",
    "lstm_terms",
    "make_torch_gru",
    "make_torch_lstm",
    "make_torch_rnn",
    "make_torch_stack",
    "param_name",
    "params_from_torch",
    "spec_from_params",
    "spec_of_module",
    "stack_backward",
    "stack_params_from_torch",
    "state_jacobian",
    "to_torch",
    "torch_gated_bptt",
    "torch_gru_bptt",
    "torch_lstm_bptt",
    "torch_rnn_bptt",
    "torch_stack_backward",
    "untied_terms",
]
