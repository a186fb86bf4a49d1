"""Recurrent layers written the way a user of ``check-module`` writes them: an nn.Module with torch's
parameter names around a torch.autograd.Function whose backward is written by hand.

Correct ones (Elman, GRU, LSTM) and broken ones, each with one mistake of the kind such kernels
have. Loaded by name (``user_modules:correct_lstm``) in the checker's worker processes; tests/
is on sys.path. Each factory takes torch's keywords: input_size, hidden_size, bias, batch_first.

Shapes: x (B, T, D), h0 and c0 (B, H) inside the Functions ((1, B, H) at the module), hs (B, T, H).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

G = {"rnn": 1, "gru": 3, "lstm": 4}


def _sum_into(acc: torch.Tensor, term: torch.Tensor, half: bool) -> torch.Tensor:
    """acc + term, accumulated in float16 when ``half`` (the broken float32 kernel's mistake)."""
    if half:
        return (acc.to(torch.float16) + term.to(torch.float16)).to(acc.dtype)
    return acc + term


class ElmanFunction(torch.autograd.Function):
    """h_t = tanh(U x_t + b_ih + W h_{t-1} + b_hh); hs (B, T, H). flags: "cut" (the carried gradient
    goes back one step only), "dw_h_t" (dW from h_t instead of h_{t-1}), "bias_hh_only" (b_ih gets
    no gradient), "half" (the parameter gradients accumulated in float16)."""

    @staticmethod
    def forward(ctx, x, h0, U, W, b_ih, b_hh, flags):
        h, hs = h0, []
        for t in range(x.shape[1]):
            a = x[:, t] @ U.T + h @ W.T  # a_t, (B, H)
            if b_ih is not None:
                a = a + b_ih + b_hh
            h = torch.tanh(a)
            hs.append(h)
        out = torch.stack(hs, 1)
        ctx.save_for_backward(x, h0, U, W, out)
        ctx.flags, ctx.has_bias = flags, b_ih is not None
        return out

    @staticmethod
    def backward(ctx, dout):
        x, h0, U, W, hs = ctx.saved_tensors
        flags = ctx.flags
        half = "half" in flags
        dU, dW = torch.zeros_like(U), torch.zeros_like(W)
        db = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
        dx = torch.zeros_like(x)
        carried = torch.zeros_like(h0)  # dL/dh_t arriving through the recurrence
        for t in reversed(range(x.shape[1])):
            h = hs[:, t]
            prev = hs[:, t - 1] if t > 0 else h0
            da = (dout[:, t] + carried) * (1 - h * h)  # dL/da_t = dL/dh_t * tanh'(a_t)
            if "random_order" in flags:  # the batch summed in a random order, as atomics would
                perm = torch.randperm(da.shape[0])
                dU = _sum_into(dU, da[perm].T @ x[perm, t], half)
            else:
                dU = _sum_into(dU, da.T @ x[:, t], half)
            dW = _sum_into(dW, da.T @ (h if "dw_h_t" in flags else prev), half)
            db = _sum_into(db, da.sum(0), half)
            dx[:, t] = da @ U
            if "cut" in flags:  # only the gradient from above goes back, one step
                carried = (dout[:, t] * (1 - h * h)) @ W
            else:
                carried = da @ W  # dL/dh_{t-1} = W^T dL/da_t
        db_ih = db_hh = None
        if ctx.has_bias:
            db_ih = torch.zeros_like(db) if "bias_hh_only" in flags else db
            db_hh = db.clone()
        return dx, carried, dU, dW, db_ih, db_hh, None


class GRUFunction(torch.autograd.Function):
    """torch.nn.GRU's equations (gates r, z, n); flag "reset_first": r applied to h_{t-1} before the
    matrix product, n = tanh(U_n x + b_in + W_n (r * h) + b_hn) (a different function)."""

    @staticmethod
    def forward(ctx, x, h0, U, W, b_ih, b_hh, flags):
        H = h0.shape[1]
        h, hs, saved = h0, [], []
        reset_first = "reset_first" in flags
        for t in range(x.shape[1]):
            gi = x[:, t] @ U.T + (0 if b_ih is None else b_ih)  # (B, 3H)
            gh = h @ W.T + (0 if b_hh is None else b_hh)
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
            if reset_first:
                ghn = (r * h) @ W[2 * H :].T + (0 if b_hh is None else b_hh[2 * H :])
                n = torch.tanh(gi[:, 2 * H :] + ghn)
            else:
                ghn = gh[:, 2 * H :]
                n = torch.tanh(gi[:, 2 * H :] + r * ghn)
            saved.append(torch.stack([r, z, n, ghn], 0))
            h = (1 - z) * n + z * h
            hs.append(h)
        out = torch.stack(hs, 1)
        ctx.save_for_backward(x, h0, U, W, out, torch.stack(saved, 0))
        ctx.flags, ctx.has_bias = flags, b_ih is not None
        return out

    @staticmethod
    def backward(ctx, dout):
        x, h0, U, W, hs, saved = ctx.saved_tensors
        reset_first = "reset_first" in ctx.flags
        H = h0.shape[1]
        dU, dW, dx = torch.zeros_like(U), torch.zeros_like(W), torch.zeros_like(x)
        db_ih = torch.zeros(3 * H, dtype=U.dtype, device=U.device)
        db_hh = torch.zeros_like(db_ih)
        carried = torch.zeros_like(h0)
        for t in reversed(range(x.shape[1])):
            r, z, n, ghn = saved[t]
            prev = hs[:, t - 1] if t > 0 else h0
            dh = dout[:, t] + carried
            dn = dh * (1 - z) * (1 - n * n)  # dL/d(pre-activation of n)
            dz = dh * (prev - n) * z * (1 - z)
            dprev = dh * z
            if reset_first:
                drh = dn @ W[2 * H :]  # dL/d(r * h)
                dr = drh * prev * r * (1 - r)
                dprev = dprev + drh * r
                dgh = torch.cat([dr, dz], 1)
                dW[: 2 * H] += dgh.T @ prev
                dW[2 * H :] += dn.T @ (r * prev)
                dprev = dprev + dgh @ W[: 2 * H]
                dgh = torch.cat([dr, dz, dn], 1)
            else:
                dr = dn * ghn * r * (1 - r)
                dgh = torch.cat([dr, dz, dn * r], 1)  # dL/d(W h + b_hh)
                dW += dgh.T @ prev
                dprev = dprev + dgh @ W
            dgi = torch.cat([dr, dz, dn], 1)  # dL/d(U x + b_ih)
            dU += dgi.T @ x[:, t]
            db_ih += dgi.sum(0)
            db_hh += dgh.sum(0)
            dx[:, t] = dgi @ U
            carried = dprev
        if not ctx.has_bias:
            db_ih = db_hh = None
        return dx, carried, dU, dW, db_ih, db_hh, None


class LSTMFunction(torch.autograd.Function):
    """torch.nn.LSTM's equations (gates i, f, g, o); returns hs and cs (B, T, H). Flag "swap_ig":
    the gradients of the i and g gate pre-activations exchanged."""

    @staticmethod
    def forward(ctx, x, h0, c0, U, W, b_ih, b_hh, flags):
        H = h0.shape[1]
        h, c, hs, cs, gates = h0, c0, [], [], []
        for t in range(x.shape[1]):
            a = x[:, t] @ U.T + h @ W.T  # (B, 4H)
            if b_ih is not None:
                a = a + b_ih + b_hh
            i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])
            g, o = torch.tanh(a[:, 2 * H : 3 * H]), torch.sigmoid(a[:, 3 * H :])
            c = f * c + i * g
            h = o * torch.tanh(c)
            gates.append(torch.stack([i, f, g, o], 0))
            hs.append(h)
            cs.append(c)
        out, cells = torch.stack(hs, 1), torch.stack(cs, 1)
        ctx.save_for_backward(x, h0, c0, U, W, out, cells, torch.stack(gates, 0))
        ctx.flags, ctx.has_bias = flags, b_ih is not None
        return out, cells

    @staticmethod
    def backward(ctx, dout, dcells):
        x, h0, c0, U, W, hs, cs, gates = ctx.saved_tensors
        dU, dW, dx = torch.zeros_like(U), torch.zeros_like(W), torch.zeros_like(x)
        db = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
        dh_next, dc_next = torch.zeros_like(h0), torch.zeros_like(c0)
        for t in reversed(range(x.shape[1])):
            i, f, g, o = gates[t]
            c = cs[:, t]
            c_prev = cs[:, t - 1] if t > 0 else c0
            h_prev = hs[:, t - 1] if t > 0 else h0
            dh = dout[:, t] + dh_next
            tc = torch.tanh(c)
            dc = dcells[:, t] + dc_next + dh * o * (1 - tc * tc)  # dL/dc_t
            da_i = dc * g * i * (1 - i)
            da_f = dc * c_prev * f * (1 - f)
            da_g = dc * i * (1 - g * g)
            da_o = dh * tc * o * (1 - o)
            if "swap_ig" in ctx.flags:
                da_i, da_g = da_g, da_i
            da = torch.cat([da_i, da_f, da_g, da_o], 1)  # dL/da_t, (B, 4H)
            dU += da.T @ x[:, t]
            dW += da.T @ h_prev
            db += da.sum(0)
            dx[:, t] = da @ U
            dh_next, dc_next = da @ W, dc * f
        db_ih, db_hh = (db, db.clone()) if ctx.has_bias else (None, None)
        return dx, dh_next, dc_next, dU, dW, db_ih, db_hh, None


class UserLayer(nn.Module):
    """One layer in torch's layout (weight_ih_l0 (G*H, D), weight_hh_l0 (G*H, H), bias_ih_l0,
    bias_hh_l0 (G*H,)), forward(x, h0) -> (out, h_n) ((h0, c0) -> (out, (h_n, c_n)) for the LSTM)."""

    def __init__(self, cell, input_size, hidden_size, bias=True, batch_first=True, flags=()):
        super().__init__()
        assert batch_first
        self.cell, self.flags = cell, frozenset(flags)
        self.nonlinearity = "tanh"
        rows = G[cell] * hidden_size
        k = 1 / math.sqrt(hidden_size)
        self.weight_ih_l0 = nn.Parameter(torch.empty(rows, input_size).uniform_(-k, k))
        self.weight_hh_l0 = nn.Parameter(torch.empty(rows, hidden_size).uniform_(-k, k))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(rows).uniform_(-k, k))
            self.bias_hh_l0 = nn.Parameter(torch.empty(rows).uniform_(-k, k))
        else:
            self.bias_ih_l0 = self.bias_hh_l0 = None

    def forward(self, x, state):
        p = (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
        if self.cell == "lstm":
            h0, c0 = state
            out, cells = LSTMFunction.apply(x, h0[0], c0[0], *p, self.flags)
            return out, (out[:, -1][None], cells[:, -1][None])
        fn = ElmanFunction if self.cell == "rnn" else GRUFunction
        h0 = state
        out = fn.apply(x, h0[0].clone() if "mutate_h0" in self.flags else h0[0], *p, self.flags)
        if "mutate_h0" in self.flags:
            with torch.no_grad():
                h0.zero_()  # "reset the state buffer" in the caller's tensor
        return out, out[:, -1][None]


def correct_rnn(**kw):
    return UserLayer("rnn", **kw)


def correct_gru(**kw):
    return UserLayer("gru", **kw)


def correct_lstm(**kw):
    return UserLayer("lstm", **kw)


def rnn_cut_after_one_step(**kw):
    return UserLayer("rnn", flags={"cut"}, **kw)


def rnn_dw_from_h_t(**kw):
    return UserLayer("rnn", flags={"dw_h_t"}, **kw)


def rnn_bias_ih_to_hh(**kw):
    return UserLayer("rnn", flags={"bias_hh_only"}, **kw)


def rnn_float16_accumulation(**kw):
    return UserLayer("rnn", flags={"half"}, **kw)


def rnn_random_summation_order(**kw):
    return UserLayer("rnn", flags={"random_order"}, **kw)


def rnn_mutates_h0(**kw):
    return UserLayer("rnn", flags={"mutate_h0"}, **kw)


def gru_reset_before_matmul(**kw):
    return UserLayer("gru", flags={"reset_first"}, **kw)


def lstm_i_g_swapped(**kw):
    return UserLayer("lstm", flags={"swap_ig"}, **kw)


# --- modules that break the contract or the checker's process ---------------------------------
class _Renamed(nn.Module):
    def __init__(self, input_size, hidden_size, bias=True, batch_first=True):
        super().__init__()
        self.w_x = nn.Parameter(torch.zeros(hidden_size, input_size))
        self.w_h = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.nonlinearity = "tanh"

    def forward(self, x, h0):
        return x, h0


def renamed_parameters(**kw):
    return _Renamed(**kw)


class _OutOnly(nn.RNN):
    def forward(self, x, h0=None):
        return super().forward(x, h0)[0]


def returns_out_only(**kw):
    return _OutOnly(**kw)


class _Exits(nn.RNN):
    def forward(self, x, h0=None):
        if x.shape[1] > 3:
            os._exit(0)
        return super().forward(x, h0)


def exits_on_long_sequences(**kw):
    return _Exits(**kw)


class _Adapted(nn.Module):
    """A correct Elman layer with parameters named differently, checked through the adapter hook."""

    def __init__(self, input_size, hidden_size, bias=True, batch_first=True):
        super().__init__()
        self.inner = UserLayer("rnn", input_size, hidden_size, bias=bias)
        self.nonlinearity = "tanh"

    def set_reference_params(self, params):
        with torch.no_grad():
            for name, value in params.items():
                getattr(self.inner, name).copy_(value)

    def reference_grads(self):
        return {n: p.grad for n, p in self.inner.named_parameters()}

    def forward(self, x, h0):
        return self.inner(x, h0)


def adapted_rnn(**kw):
    return _Adapted(**kw)
