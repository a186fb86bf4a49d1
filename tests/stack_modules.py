"""Stacked, bidirectional, projected and variable-length layers for ``check-module``
(tests/check_module/test_stacks.py), loaded by name in the checker's worker processes (tests/ is
on sys.path there too). Each factory takes torch's keywords (input_size, hidden_size, bias,
batch_first).

torch's own layers, correct:

    lstm_two_layers_f            nn.LSTM(num_layers=2)
    lstm_three_bidirectional_proj  nn.LSTM(num_layers=3, bidirectional=True, proj_size=2)
    gru_bidirectional_f          nn.GRU(bidirectional=True)
    rnn_two_layers_relu          nn.RNN(num_layers=2, nonlinearity="relu")
    lstm_packed                  nn.LSTM, declared (takes_packed_sequence = True on the factory)
                                 to take PackedSequences: fed batches of variable lengths
    lstm_dropout                 nn.LSTM(num_layers=2, dropout=0.5): refused (random in train())

A loop LSTM written with torch operations and torch's parameter names (``StackLSTM``: any
num_layers, bidirectional, proj_size; forward(x, (h0, c0), lengths=None), so it declares that it
takes x plus lengths), correct (``loop_lstm``) and with one planted bug each:

    loop_lstm_layer_1_cut          layer 1's recurrence cut: h_{t-1} and c_{t-1} detached in layer 1
                                   (2 layers, one direction)
    loop_lstm_reverse_forward_weights  the reverse direction computes with the forward direction's
                                   weights (1 layer, bidirectional)
    loop_lstm_reverse_not_per_length   the reverse direction runs from step T - 1 through the
                                   padding instead of from each sequence's last step (1 layer,
                                   bidirectional)
    loop_lstm_projection_lost      layer 0's projection detached: weight_hr_l0 gets no gradient
                                   (2 layers, one direction, proj_size 2)
    loop_lstm_padding_leaks        the reverse direction's state update at a padded step passes
                                   its gradient on unmasked, as a kernel whose backward forgets the
                                   mask (1 layer, bidirectional)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lstm_two_layers_f(**kw):
    return nn.LSTM(num_layers=2, **kw)


def lstm_three_bidirectional_proj(**kw):
    return nn.LSTM(num_layers=3, bidirectional=True, proj_size=2, **kw)


def gru_bidirectional_f(**kw):
    return nn.GRU(bidirectional=True, **kw)


def rnn_two_layers_relu(**kw):
    return nn.RNN(num_layers=2, nonlinearity="relu", **kw)


def lstm_packed(**kw):
    return nn.LSTM(**kw)


lstm_packed.takes_packed_sequence = True


def lstm_dropout(**kw):
    return nn.LSTM(num_layers=2, dropout=0.5, **kw)


class _LeakyWhere(torch.autograd.Function):
    """torch.where(keep, new, old) whose backward gives ``new`` its gradient everywhere (not only
    where keep): the padded steps' candidate state receives gradient."""

    @staticmethod
    def forward(ctx, keep, new, old):
        ctx.save_for_backward(keep)
        return torch.where(keep, new, old)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return None, grad, torch.where(keep, torch.zeros_like(grad), grad)


class StackLSTM(nn.Module):
    """torch.nn.LSTM's equations in a plain loop, in torch's names and layout (weight_ih_l{l}
    (4H, D_l), weight_hh_l{l} (4H, H_out), bias_ih_l{l}, bias_hh_l{l} (4H,), weight_hr_l{l}
    (H_out, H), "_reverse" for the second direction); x (B, T, D), h0 (L*dirs, B, H_out), c0
    (L*dirs, B, H), lengths (B,) or None; out (B, T, dirs*H_out), 0 past each length. ``flaw``
    names the one planted bug (None: correct)."""

    def __init__(self, input_size, hidden_size, bias=True, batch_first=True, num_layers=1,
                 bidirectional=False, proj_size=0, flaw=None):  # fmt: skip
        super().__init__()
        assert batch_first
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bidirectional
        self.proj_size, self.bias, self.batch_first, self.flaw = proj_size, bias, True, flaw
        H, H_out, dirs = hidden_size, proj_size or hidden_size, 2 if bidirectional else 1
        k = 1 / math.sqrt(H)
        for layer in range(num_layers):
            D_l = input_size if layer == 0 else dirs * H_out
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = {"weight_ih": (4 * H, D_l), "weight_hh": (4 * H, H_out)}
                if bias:
                    shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
                if proj_size:
                    shapes["weight_hr"] = (H_out, H)
                for kind, shape in shapes.items():
                    self.register_parameter(kind + sfx, nn.Parameter(torch.empty(shape).uniform_(-k, k)))

    def _param(self, kind, layer, d):
        if self.flaw == "reverse_forward_weights":
            d = 0
        return getattr(self, f"{kind}_l{layer}" + ("_reverse" if d else ""), None)

    def forward(self, x, state=None, lengths=None):
        B, T, _ = x.shape
        dirs = 2 if self.bidirectional else 1
        H_out = self.proj_size or self.hidden_size
        if state is None:
            rows = self.num_layers * dirs
            state = (x.new_zeros(rows, B, H_out), x.new_zeros(rows, B, self.hidden_size))
        h0, c0 = state
        n = torch.full((B,), T) if lengths is None else lengths
        valid = torch.arange(T)[None, :] < n[:, None]  # (B, T)
        inp, h_n, c_n = x, [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                h, c = h0[layer * dirs + d], c0[layer * dirs + d]
                hs = [None] * T
                for t in range(T) if d == 0 else reversed(range(T)):
                    keep = valid[:, t, None]
                    if self.flaw == "reverse_not_per_length" and d == 1:
                        keep = torch.ones_like(keep)
                    h_prev, c_prev = h, c
                    if self.flaw == "layer_1_cut" and layer == 1:
                        h_prev, c_prev = h.detach(), c.detach()
                    h_new, c_new = self._step(inp[:, t], h_prev, c_prev, layer, d)
                    if self.flaw == "padding_leaks" and d == 1:
                        h, c = _LeakyWhere.apply(keep, h_new, h), _LeakyWhere.apply(keep, c_new, c)
                    else:
                        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
                    hs[t] = torch.where(keep, h_new, torch.zeros_like(h_new))  # 0 past the length
                outs.append(torch.stack(hs, 1))
                h_n.append(h)
                c_n.append(c)
            inp = torch.cat(outs, -1)  # [forward; reverse]
        return inp, (torch.stack(h_n), torch.stack(c_n))

    def _step(self, x_t, h, c, layer, d):
        """c_t = f c_{t-1} + i g; h_t = W_hr (o tanh c_t) (o tanh c_t without a projection)."""
        a = x_t @ self._param("weight_ih", layer, d).T + h @ self._param("weight_hh", layer, d).T
        if self.bias:
            a = a + self._param("bias_ih", layer, d) + self._param("bias_hh", layer, d)
        i, f, g, o = a.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        m = torch.sigmoid(o) * torch.tanh(c)
        if self.proj_size:
            W_hr = self._param("weight_hr", layer, d)
            if self.flaw == "projection_lost" and layer == 0:
                W_hr = W_hr.detach()
            m = m @ W_hr.T
        return m, c


def loop_lstm(**kw):
    """Correct (the control): 2 layers, bidirectional, proj_size 2."""
    return StackLSTM(num_layers=2, bidirectional=True, proj_size=2, **kw)


def loop_lstm_layer_1_cut(**kw):
    return StackLSTM(num_layers=2, flaw="layer_1_cut", **kw)


def loop_lstm_reverse_forward_weights(**kw):
    return StackLSTM(bidirectional=True, flaw="reverse_forward_weights", **kw)


def loop_lstm_reverse_not_per_length(**kw):
    return StackLSTM(bidirectional=True, flaw="reverse_not_per_length", **kw)


def loop_lstm_projection_lost(**kw):
    return StackLSTM(num_layers=2, proj_size=2, flaw="projection_lost", **kw)


def loop_lstm_padding_leaks(**kw):
    return StackLSTM(bidirectional=True, flaw="padding_leaks", **kw)
