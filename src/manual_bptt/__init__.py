"""manual_bptt: hand-written backpropagation through time for recurrent networks, in numpy.

Three cells, chosen by the type of the parameters: the Elman RNN (RNNParams), the GRU
(GRUParams) and the LSTM (LSTMParams), the gated ones in PyTorch's nn.GRU / nn.LSTM layout; and
stacks of them of every shape torch's recurrent layers take (StackParams: layers, directions, the
LSTM's projection, variable lengths), in torch's names and layout.
The Elman model:

    a_t = U x_t + W s_{t-1} + b      s_t = f(a_t)      o_t = V s_t + c
    y_hat_t = softmax(o_t)           E = sum_t E_t,    E_t = -log y_hat_t[y_t]

(the gated cells replace the first line by their gates, with o_t = V h_t + c). bptt, forward,
decompose, state_jacobian and rtrl take any of the three; backward is the vector-Jacobian product
of the recurrent layer alone, with upstream gradients instead of the output layer.

Every gradient here is written by hand and proven against PyTorch autograd by the test
suite. This package depends on numpy only and never imports torch.
"""

from .activations import ACTIVATIONS
from .decompose import (
    MAX_FULL_BYTES,
    Decomposition,
    LagProfile,
    StepTerms,
    TermNorms,
    decompose,
    state_jacobian,
)
from .elman import BPTTResult, ForwardResult
from .errors import DEFAULT_MAX_BYTES, NonFiniteError, TooLargeError
from .gated import GatedBPTTResult, GatedForwardResult
from .gated_params import GRUParams, LSTMParams, LSTMState
from .layer import LayerResult, backward, bptt, forward
from .params import RNNParams
from .rtrl import MAX_RTRL_BYTES, rtrl
from .stack import StackBPTTResult, StackForwardResult, StackLayerResult
from .stack_params import LayerWeights, StackParams

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MAX_BYTES",
    "MAX_FULL_BYTES",
    "MAX_RTRL_BYTES",
    "BPTTResult",
    "Decomposition",
    "ForwardResult",
    "GRUParams",
    "GatedBPTTResult",
    "GatedForwardResult",
    "LSTMParams",
    "LSTMState",
    "LagProfile",
    "LayerResult",
    "LayerWeights",
    "NonFiniteError",
    "RNNParams",
    "StackBPTTResult",
    "StackForwardResult",
    "StackLayerResult",
    "StackParams",
    "StepTerms",
    "TermNorms",
    "TooLargeError",
    "backward",
    "bptt",
    "decompose",
    "forward",
    "rtrl",
    "state_jacobian",
]
__version__ = "0.1.0"
