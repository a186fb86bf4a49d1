"""Recurrent layers at the edges of ``check-module``'s contract (tests/check_module/test_edges.py).

Loaded by name (``edge_modules:lstm_two_layers``) in the checker's worker processes; tests/ is on
sys.path there too. Each factory takes torch's keywords (input_size, hidden_size, bias,
batch_first) unless it says otherwise.

torch's own layers, correct, but not the single-layer, one-direction layer of the contract:

    lstm_two_layers          nn.LSTM(num_layers=2)
    lstm_bidirectional       nn.LSTM(bidirectional=True)
    gru_bidirectional        nn.GRU(bidirectional=True)

Factories that cannot, or will not, take the contract:

    MinGRU                   a minGRU-like layer (h_t = (1 - z_t) h_{t-1} + z_t h~_t, z_t and h~_t
                             from x_t alone) whose factory takes ``dim``, not input_size
    rnn_small_hidden_only    nn.RNN, NotImplementedError for hidden_size > 5
    rnn_raises_on_even_T     nn.RNN whose forward raises RuntimeError, naming the shape of x,
                             for an even number of steps (a finding about the module)
    rnn_declines_every_size  nn.RNN's factory, NotImplementedError for every size
    lstm_two_layers_unseen   a module with the contract's parameters whose forward runs a
                             two-layer nn.LSTM kept out of sight (not a submodule): only torch's
                             "Expected hidden[0] size (2, B, H)" shows it
    rnn_without_grad         nn.RNN whose forward runs under torch.no_grad() (no output requires
                             a gradient: its notes say so)
    rnn_wrong_when_long      nn.RNN whose out is 0.1 % off for more than 50 steps (wrong only in
                             the large configuration, whose localization sends large requests)

Elman layers (nn.RNN's equations and parameter names, written with torch operations and
autograd), right in the way check-module calls them today and wrong in another:

    rnn_wrong_in_eval        in eval() mode the bias is b_ih alone (b_hh is dropped)
    rnn_wrong_default_h0     called as m(x), h0 is ones instead of zeros
    rnn_wrong_without_x_grad when x does not require grad, the bias is b_ih alone
    rnn_caches_weights       keeps the value of weight_hh_l0 from its first forward and uses it on
                             every later call (the gradient still reaches the current parameter),
                             so one instance reused with its parameters changed is wrong
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lstm_two_layers(**kw):
    return nn.LSTM(num_layers=2, **kw)


def lstm_bidirectional(**kw):
    return nn.LSTM(bidirectional=True, **kw)


def gru_bidirectional(**kw):
    return nn.GRU(bidirectional=True, **kw)


class MinGRU(nn.Module):
    """h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h~_t with z_t = σ(W_z x_t), h~_t = W_h x_t; x (B, T, dim)."""

    def __init__(self, dim: int, bias: bool = True, batch_first: bool = True) -> None:
        super().__init__()
        self.to_z = nn.Linear(dim, dim, bias=bias)
        self.to_h = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, h0=None):
        h = torch.zeros_like(x[:, 0]) if h0 is None else h0[0]
        out = []
        for t in range(x.shape[1]):
            z = torch.sigmoid(self.to_z(x[:, t]))
            h = (1 - z) * h + z * self.to_h(x[:, t])
            out.append(h)
        return torch.stack(out, 1), h[None]


def rnn_small_hidden_only(**kw):
    if kw["hidden_size"] > 5:
        raise NotImplementedError(f"hidden_size {kw['hidden_size']}: sizes above 5 are not implemented")
    return nn.RNN(**kw)


class _RaisesOnEvenT(nn.RNN):
    def forward(self, x, h0=None):
        if x.shape[1] % 2 == 0:
            raise RuntimeError(f"fused kernel: no launch configuration for x of shape {tuple(x.shape)}")
        return super().forward(x, h0)


def rnn_raises_on_even_T(**kw):
    return _RaisesOnEvenT(**kw)


def rnn_declines_every_size(**kw):
    raise NotImplementedError(f"input_size {kw['input_size']}: this kernel is not implemented on CPU")


class _TwoLayersUnseen(nn.Module):
    def __init__(self, input_size, hidden_size, bias=True, batch_first=True):
        super().__init__()
        rows = 4 * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.zeros(rows, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.zeros(rows, hidden_size))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.zeros(rows))
            self.bias_hh_l0 = nn.Parameter(torch.zeros(rows))
        self._core = [nn.LSTM(input_size, hidden_size, num_layers=2, bias=bias, batch_first=True)]

    def forward(self, x, state):
        core = self._core[0].to(dtype=x.dtype)
        return core(x, state)


def lstm_two_layers_unseen(**kw):
    return _TwoLayersUnseen(**kw)


class _WithoutGrad(nn.RNN):
    def forward(self, x, h0=None):
        with torch.no_grad():
            return super().forward(x, h0)


def rnn_without_grad(**kw):
    return _WithoutGrad(**kw)


class _WrongWhenLong(nn.RNN):
    def forward(self, x, h0=None):
        out, h_n = super().forward(x, h0)
        return (out * 1.001 if x.shape[1] > 50 else out), h_n


def rnn_wrong_when_long(**kw):
    return _WrongWhenLong(**kw)


class _Elman(nn.Module):
    """h_t = tanh(U x_t + b_ih + W h_{t-1} + b_hh) in torch's names (weight_ih_l0 (H, D),
    weight_hh_l0 (H, H), bias_ih_l0, bias_hh_l0 (H,)); x (B, T, D), h0 (1, B, H), out (B, T, H).
    ``flaw`` names the one way it is wrong (None: correct)."""

    def __init__(self, input_size, hidden_size, bias=True, batch_first=True, flaw=None):
        super().__init__()
        assert batch_first
        k = 1 / math.sqrt(hidden_size)
        self.hidden_size, self.flaw, self.nonlinearity = hidden_size, flaw, "tanh"
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-k, k))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-k, k))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size).uniform_(-k, k))
            self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size).uniform_(-k, k))
        else:
            self.bias_ih_l0 = self.bias_hh_l0 = None
        self._cached_W = None

    def _bias(self, x):
        if self.bias_ih_l0 is None:
            return 0
        folded = (self.flaw == "eval" and not self.training) or (
            self.flaw == "no_x_grad" and not x.requires_grad
        )
        return self.bias_ih_l0 if folded else self.bias_ih_l0 + self.bias_hh_l0

    def _recurrent_weight(self):
        W = self.weight_hh_l0
        if self.flaw != "cached_weights":
            return W
        if self._cached_W is None:
            self._cached_W = W.detach().clone()
        return self._cached_W + (W - W.detach())  # the first call's value, today's gradient

    def forward(self, x, h0=None):
        if h0 is None:
            fill = torch.ones if self.flaw == "default_h0" else torch.zeros
            h0 = fill(1, x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        U, W, b = self.weight_ih_l0, self._recurrent_weight(), self._bias(x)
        h, hs = h0[0], []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ U.T + h @ W.T + b)  # h_t = tanh(U x_t + W h_{t-1} + b_ih + b_hh)
            hs.append(h)
        return torch.stack(hs, 1), h[None]


def rnn_wrong_in_eval(**kw):
    return _Elman(flaw="eval", **kw)


def rnn_wrong_default_h0(**kw):
    return _Elman(flaw="default_h0", **kw)


def rnn_wrong_without_x_grad(**kw):
    return _Elman(flaw="no_x_grad", **kw)


def rnn_caches_weights(**kw):
    return _Elman(flaw="cached_weights", **kw)


def rnn_correct(**kw):
    """The same layer without a flaw (the control: it must PASS)."""
    return _Elman(**kw)
