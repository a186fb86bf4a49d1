"""manual_bptt: hand-written backpropagation through time for the Elman RNN, in numpy.

    a_t = U x_t + W s_{t-1} + b      s_t = f(a_t)      o_t = V s_t + c
    y_hat_t = softmax(o_t)           E = sum_t E_t,    E_t = -log y_hat_t[y_t]

Every gradient here is written by hand and proven against PyTorch autograd by the test
suite. This package depends on numpy only and never imports torch.
"""

from .activations import ACTIVATIONS
from .core import BPTTResult, ForwardResult, bptt, forward
from .decompose import (
    MAX_FULL_BYTES,
    Decomposition,
    LagProfile,
    StepTerms,
    TermNorms,
    TooLargeError,
    decompose,
    state_jacobian,
)
from .errors import DEFAULT_MAX_BYTES, NonFiniteError
from .params import RNNParams
from .rtrl import MAX_RTRL_BYTES, rtrl

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MAX_BYTES",
    "MAX_FULL_BYTES",
    "MAX_RTRL_BYTES",
    "BPTTResult",
    "Decomposition",
    "ForwardResult",
    "LagProfile",
    "NonFiniteError",
    "RNNParams",
    "StepTerms",
    "TermNorms",
    "TooLargeError",
    "bptt",
    "decompose",
    "forward",
    "rtrl",
    "state_jacobian",
]
__version__ = "0.1.0"
