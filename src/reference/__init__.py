"""PyTorch autograd oracle for BPTT in a vanilla RNN: plain, unrolled, checkable by eye.

    import reference as ref
    r = ref.bptt(p, xs, ys, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None)
    r.loss, r.grads.U, r.grads.W, r.grads.V, r.grads.b, r.grads.c, r.ds0, r.dxs, r.final_state

`p` is any object with numpy attributes U (H, D), W (H, H), V (K, H), b (H,) or None,
c (K,) or None.
"""

from .autograd import ParamsLike, RefGrads, RefResult, bptt
from .decompose import state_jacobian, untied_terms
from .torch_rnn import make_torch_rnn, params_from_torch, torch_rnn_bptt

__all__ = [
    "ParamsLike",
    "RefGrads",
    "RefResult",
    "bptt",
    "make_torch_rnn",
    "params_from_torch",
    "state_jacobian",
    "torch_rnn_bptt",
    "untied_terms",
]
