"""Full BPTT of the gated cells (GRU, LSTM) with preallocated buffers and blocks of steps. numpy only.

The same math as the specs cells.gru and cells.lstm over drivers.run / drivers.backprop (the
tests prove the two agree, and agree with the autograd oracle), arranged for speed:

* one gate buffer ``gates`` (T, B, 4H) per call. The GRU keeps [r_t, z_t, gh_n, n_t] in it
  (gh_n = W_n h_{t-1} + b_hn, which n_t multiplies by r_t), the LSTM [gate_i, gate_f, gate_g,
  gate_o]. The backward overwrites each step's gates, in place, with that step's error signals:
  GRU [dE/dgi_r, dE/dgi_z, dE/dgh_n, dE/dgi_n] (so dE/dgh_t is the first 3H columns), LSTM
  dE/da_t = dE/dgi_t = dE/dgh_t. Besides it a call keeps h_t (T + 1, B, H), for the LSTM c_t
  (T + 1, B, H) and tanh(c_t) (T, B, H), and blocks of about blocks._ROWS rows (t, b), reused.
* forward, per block of steps: gi_t = U x_t + b_ih for the whole block in one product (or a
  gather of columns for token ids), then per step one stacked (B, G*H) product W h_{t-1} and the
  gate arithmetic in place. Each sigmoid is 1 / (1 + exp(-a)) in place: the gate blocks that
  take a sigmoid get -a directly, from U and W with those blocks negated (exact) and from the
  biases folded into -gi (b_hh too, except the GRU's b_hn, which r_t multiplies).
* backward, the blocks last first: the output layer for the block's steps (logits, softmax
  cross-entropy, dV, dc and dE_t/dh_t = V^T dE/do_t: manual_bptt.output), or the caller's upstream
  gradient; then per step the gate derivatives in place and one (B, G*H) by (G*H, H) product for
  dE/dh_{t-1}; then the block's terms of dU, dW, db_ih, db_hh and dE/dx_t, one product each.

Overflow is never a warning: the first step whose state, logits or dE/dgh_t is not finite raises
NonFiniteError (the same quantity and step as the generic drivers name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..cells.gru import GRUCache
from ..cells.lstm import LSTMCache
from ..drivers import Run
from ..errors import QUIET, NonFiniteError, all_finite, first_nonfinite
from ..output import logits, output_layer, raise_loss_overflow
from .blocks import add_rows_by_token, step_blocks, x_buffer, x_rows


def check_finite(what: str, a: np.ndarray, start: int = 0) -> None:
    """NonFiniteError naming ``what`` and the first step of a, (n, ...) steps from ``start``, not finite.

    Call it inside ``np.errstate(**QUIET)`` (see errors.first_nonfinite)."""
    t = first_nonfinite(a)
    if t is not None:
        raise NonFiniteError(
            f"{what}: not finite from step t = {start + t} on (the computation overflowed); "
            "scale the parameters or inputs down",
            what=what,
            step=start + t,
        )


@dataclass(frozen=True, eq=False)
class FastForward:
    """The forward pass of the fast path, time-major, in the compute dtype.

    Attributes:
        lstm: True for the LSTM (G = 4), False for the GRU (G = 3).  H: hidden size.
        hs: (T + 1, B, H) h_{t-1} at index t: hs[0] = h0, hs[t + 1] = h_t.
        cs: (T + 1, B, H) the LSTM's cell states c_t the same way (cs[0] = c0); None for the GRU.
        tanh_c: (T, B, H) tanh(c_t) (LSTM); None for the GRU.
        gates: (T, B, 4H) the gates (see the module docstring for the layout).
    """

    lstm: bool
    H: int
    hs: np.ndarray
    cs: np.ndarray | None
    tanh_c: np.ndarray | None
    gates: np.ndarray

    @property
    def G(self) -> int:
        """The number of gate blocks of U, W, b_ih, b_hh: 4 (LSTM) or 3 (GRU)."""
        return 4 if self.lstm else 3

    def final_state(self) -> np.ndarray:
        """s_{T-1}, (B, S): h_{T-1}, or [h_{T-1}; c_{T-1}] for the LSTM (a fresh array)."""
        if self.lstm:
            return np.concatenate([self.hs[-1], self.cs[-1]], axis=1)
        return self.hs[-1].copy()


def _sigmoid_signs(lstm: bool, H: int, dtype: np.dtype) -> np.ndarray:
    """(G*H,) -1 on the gate blocks that take a sigmoid (GRU r, z; LSTM i, f, o), +1 elsewhere."""
    blocks = (-1, -1, 1, -1) if lstm else (-1, -1, 1)
    return np.repeat(np.asarray(blocks, dtype=dtype), H)


def forward(
    lstm: bool,
    U: np.ndarray,
    W: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
    s0: np.ndarray,
) -> FastForward:
    """Run the cell over every step, keeping what the backward needs (FastForward).

    Args:
        lstm: the cell.  U (G*H, D), W (G*H, H), b_ih, b_hh (G*H,) or None: in the compute dtype.
        tokens: (T, B) token ids, or None.  X: (T, B, D) dense inputs (any strides), or None.
        s0: (B, S) initial state (S = H, or 2H for the LSTM's [h0; c0]).

    Raises:
        NonFiniteError "z_t" (the message's name for the state) at the first step whose state is
        not finite.
    """
    H = W.shape[1]
    GH = W.shape[0]
    T, B = (tokens.shape if tokens is not None else X.shape[:2])
    dt = W.dtype
    sign = _sigmoid_signs(lstm, H, dt)
    UTs = np.ascontiguousarray((U * sign[:, None]).T)  # (D, G*H), the sigmoid blocks negated
    bias = None  # folded into gi: the sign times b_ih + b_hh, but the GRU's b_hn stays apart
    if b_ih is not None:
        folded = b_ih + b_hh if lstm else np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
        bias = sign * folded
    b_hn = None if lstm or b_hh is None else b_hh[2 * H :]
    WTs = np.ascontiguousarray((W * sign[:, None]).T) if lstm else np.ascontiguousarray(W.T)  # (H, G*H)
    hs = np.empty((T + 1, B, H), dtype=dt)
    hs[0] = s0[:, :H]
    cs = tanh_c = None
    if lstm:
        cs = np.empty((T + 1, B, H), dtype=dt)
        cs[0] = s0[:, H:]
        tanh_c = np.empty((T, B, H), dtype=dt)
    gates = np.empty((T, B, 4 * H), dtype=dt)
    blocks = step_blocks(T, B)
    steps = blocks[0][1]
    gi = np.empty((steps, B, GH), dtype=dt)
    x_buf = x_buffer(X, steps)
    tmp = np.empty((B, H), dtype=dt)
    with np.errstate(**QUIET):
        for start, end in blocks:
            gi_blk = gi[: end - start]
            if tokens is not None:
                np.take(UTs, tokens[start:end], axis=0, out=gi_blk)  # U x_t = a column of U
            else:
                np.matmul(x_rows(X, start, end, x_buf), UTs, out=gi_blk.reshape(-1, GH))
            if bias is not None:
                gi_blk += bias
            for t in range(start, end):
                if lstm:
                    _lstm_step(gates[t], gi_blk[t - start], hs, cs, tanh_c, t, WTs, tmp)
                else:
                    _gru_step(gates[t], gi_blk[t - start], hs, t, WTs, b_hn, H)
            check_finite("z_t", hs[start + 1 : end + 1], start)
            if lstm:
                check_finite("z_t", cs[start + 1 : end + 1], start)
    return FastForward(lstm=lstm, H=H, hs=hs, cs=cs, tanh_c=tanh_c, gates=gates)


def _gru_step(
    g: np.ndarray, gi: np.ndarray, hs: np.ndarray, t: int, WT: np.ndarray, b_hn: np.ndarray | None, H: int
) -> None:
    """One GRU step into g (B, 4H) = [r, z, gh_n, n] and hs[t + 1].

    gi = [-(gi_r + b_hr), -(gi_z + b_hz), gi_n]: the sigmoid blocks negated, with their b_hh.
    """
    h_prev, h = hs[t], hs[t + 1]
    np.matmul(h_prev, WT, out=g[:, : 3 * H])  # gh = W h_{t-1}, one stacked (B, 3H) product
    rz = g[:, : 2 * H]
    np.subtract(gi[:, : 2 * H], rz, out=rz)  # -(gi_r + gh_r), -(gi_z + gh_z)
    np.exp(rz, out=rz)
    rz += 1.0
    np.reciprocal(rz, out=rz)  # r_t = σ(gi_r + gh_r), z_t = σ(gi_z + gh_z)
    r, z, gh_n, n = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    if b_hn is not None:
        gh_n += b_hn  # gh_n = W_n h_{t-1} + b_hn
    np.multiply(r, gh_n, out=n)
    n += gi[:, 2 * H :]
    np.tanh(n, out=n)  # n_t = tanh(gi_n + r_t ⊙ gh_n)
    np.subtract(h_prev, n, out=h)
    h *= z
    h += n  # h_t = n_t + z_t ⊙ (h_{t-1} - n_t) = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}


def _lstm_step(
    g: np.ndarray,
    gi: np.ndarray,
    hs: np.ndarray,
    cs: np.ndarray,
    tanh_c: np.ndarray,
    t: int,
    WTs: np.ndarray,
    tmp: np.ndarray,
) -> None:
    """One LSTM step into g (B, 4H) = [gate_i, gate_f, gate_g, gate_o], cs[t + 1], tanh_c[t], hs[t + 1].

    gi = [-a'_i, -a'_f, a'_g, -a'_o] with a' = U x_t + b_ih + b_hh; WTs: W^T with i, f, o negated.
    """
    H = tmp.shape[1]
    np.matmul(hs[t], WTs, out=g)  # [-gh_i, -gh_f, gh_g, -gh_o], one stacked (B, 4H) product
    g += gi  # [-a_i, -a_f, a_g, -a_o]
    for lo, hi in ((0, 2 * H), (3 * H, 4 * H)):
        s = g[:, lo:hi]
        np.exp(s, out=s)
        s += 1.0
        np.reciprocal(s, out=s)  # gate_i = σ(a_i), gate_f = σ(a_f); gate_o = σ(a_o)
    gate_i, gate_f, gate_g, gate_o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    np.tanh(gate_g, out=gate_g)  # gate_g = tanh(a_g)
    c_t = cs[t + 1]
    np.multiply(gate_f, cs[t], out=c_t)
    np.multiply(gate_i, gate_g, out=tmp)
    c_t += tmp  # c_t = gate_f ⊙ c_{t-1} + gate_i ⊙ gate_g
    np.tanh(c_t, out=tanh_c[t])
    np.multiply(gate_o, tanh_c[t], out=hs[t + 1])  # h_t = gate_o ⊙ tanh(c_t)


#: The per-block source of dE_t/dh_t from above: (start, end, out) writes the direct gradient of
#: the steps [start, end) into out, (end - start, B, H), and returns their part of the loss.
Upstream = Callable[[int, int, np.ndarray], float]


@dataclass(frozen=True, eq=False)
class Sweep:
    """What the backward sweep returns.

    Attributes:
        loss: the sum of the upstream's loss parts.
        dU (G*H, D), dW (G*H, H), db_ih, db_hh (G*H,) (None without biases).
        ds0: (B, S) dE/ds0 per row ([dE/dh0; dE/dc0] for the LSTM).
    """

    loss: float
    dU: np.ndarray
    dW: np.ndarray
    db_ih: np.ndarray | None
    db_hh: np.ndarray | None
    ds0: np.ndarray


def backward(
    fw: FastForward,
    U: np.ndarray,
    W: np.ndarray,
    has_bias: bool,
    tokens: np.ndarray | None,
    X: np.ndarray | None,
    upstream: Upstream,
    ds_final: np.ndarray | None,
    dxs_tm: np.ndarray | None,
) -> Sweep:
    """The reverse recursion of full BPTT and the weight gradients, the blocks of steps last first.

    With g_t = dE/ds_t = (upstream's dE_t/dh_t, 0 for c_t) + the gradient carried from step t + 1,
    each step turns its gates into dE/dgi_t, dE/dgh_t in place and carries dE/ds_{t-1}; then

        dU = sum_t dgi_t^T x_t   db_ih = sum_t dgi_t   dW = sum_t dgh_t^T h_{t-1}   db_hh = sum_t dgh_t
        dE/dx_t = dgi_t U   (into dxs_tm, (T, B, D), a time-major view of the caller's layout)

    Args:
        fw: the forward pass (its gates are overwritten).  U (G*H, D), W (G*H, H).
        has_bias: whether to return db_ih, db_hh.  tokens, X: the inputs, as for forward.
        upstream: see Upstream.  ds_final: (B, S) gradient arriving at s_{T-1} from beyond, or None.
        dxs_tm: (T, B, D) receives dE/dx_t (dense inputs), or None.

    Raises:
        NonFiniteError "dE/dgh_t" at the first step whose dE/dgh_t is not finite.
    """
    H, G, lstm = fw.H, fw.G, fw.lstm
    T, B = fw.gates.shape[:2]
    dt = fw.gates.dtype
    D = U.shape[1]
    blocks = step_blocks(T, B)
    steps = blocks[0][1]
    direct = np.empty((steps, B, H), dtype=dt)  # dE_t/dh_t from above, one block of steps
    dgi_buf = None if lstm else np.empty((steps * B, G * H), dtype=dt)  # the GRU's dgi, contiguous
    x_buf = x_buffer(X, steps)
    scratch = np.empty((3, B, H), dtype=dt)
    carry_h = np.zeros((B, H), dtype=dt)
    carry_c = np.zeros((B, H), dtype=dt) if lstm else None
    if ds_final is not None:
        carry_h += ds_final[:, :H]
        if lstm:
            carry_c += ds_final[:, H:]
    dW = np.zeros((G * H, H), dtype=dt)
    dU = np.zeros((G * H, D), dtype=dt) if tokens is None else None
    dUT = np.zeros((D, G * H), dtype=dt) if tokens is not None else None
    db_ih = np.zeros(G * H, dtype=dt) if has_bias else None
    db_hh = np.zeros(G * H, dtype=dt) if has_bias else None
    finite = True
    loss = 0.0
    with np.errstate(**QUIET):
        for start, end in reversed(blocks):
            n = (end - start) * B
            blk = direct[: end - start]
            loss += upstream(start, end, blk)
            for t in range(end - 1, start - 1, -1):
                carry_h += blk[t - start]  # dE/dh_t = direct + carried from step t + 1
                if lstm:
                    _lstm_back(fw.gates[t], fw.cs[t], fw.tanh_c[t], W, carry_h, carry_c, scratch)
                else:
                    _gru_back(fw.gates[t], fw.hs[t], W, carry_h, scratch)
            rows = fw.gates[start:end].reshape(n, 4 * H)
            dgh = rows if lstm else rows[:, : 3 * H]
            finite = finite and all_finite(dgh)
            dW += dgh.T @ fw.hs[start:end].reshape(n, H)  # dW += sum_t dgh_t^T h_{t-1}
            if lstm:
                dgi = rows  # dE/dgi_t = dE/dgh_t = dE/da_t
            else:
                dgi = dgi_buf[:n]
                dgi[:, : 2 * H] = rows[:, : 2 * H]  # dgi_r, dgi_z (the same as in dgh)
                dgi[:, 2 * H :] = rows[:, 3 * H :]  # dgi_n
            if has_bias:
                db_ih += dgi.sum(axis=0)  # db_ih += sum_t dgi_t
                db_hh += dgh.sum(axis=0)  # db_hh += sum_t dgh_t
            if tokens is not None:
                add_rows_by_token(dUT, tokens[start:end].reshape(n), dgi)  # dU[:, v] += dgi_t, x_t = v
            else:
                dU += dgi.T @ x_rows(X, start, end, x_buf)  # dU += sum_t dgi_t^T x_t
                dxs_tm[start:end] = (dgi @ U).reshape(end - start, B, D)  # dE/dx_t = dgi_t U
        if not finite:
            check_finite("dE/dgh_t", fw.gates if lstm else fw.gates[:, :, : 3 * H])
    if dUT is not None:
        dU = np.ascontiguousarray(dUT.T)
    ds0 = np.concatenate([carry_h, carry_c], axis=1) if lstm else carry_h
    return Sweep(loss=loss, dU=dU, dW=dW, db_ih=db_ih, db_hh=db_hh, ds0=ds0)


def _gru_back(g: np.ndarray, h_prev: np.ndarray, W: np.ndarray, dh: np.ndarray, scratch: np.ndarray) -> None:
    """One GRU step back: g (B, 4H) [r, z, gh_n, n] -> [dgi_r, dgi_z, dgh_n, dgi_n] in place;
    dh: dE/dh_t -> dE/dh_{t-1}."""
    H = dh.shape[1]
    r, z, gh_n, n = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    dz, through_z, tmp = scratch
    np.subtract(h_prev, n, out=dz)
    dz *= dh  # dE/dz_t = dE/dh_t ⊙ (h_{t-1} - n_t)
    np.multiply(dh, z, out=through_z)  # dE/dh_t ⊙ z_t: the path to h_{t-1} outside the gates
    dn = np.subtract(dh, through_z, out=dh)  # dE/dn_t = dE/dh_t ⊙ (1 - z_t)
    np.multiply(z, z, out=tmp)
    np.subtract(z, tmp, out=z)
    z *= dz  # dE/dgi_z = dE/dz_t ⊙ z_t (1 - z_t)
    np.multiply(n, n, out=n)
    np.subtract(1.0, n, out=n)
    n *= dn  # dE/dgi_n = dE/dn_t ⊙ (1 - n_t²)
    dr = np.multiply(n, gh_n, out=dz)  # dE/dr_t = dE/dgi_n ⊙ gh_n
    np.multiply(n, r, out=gh_n)  # dE/dgh_n = dE/dgi_n ⊙ r_t
    np.multiply(r, r, out=tmp)
    np.subtract(r, tmp, out=r)
    r *= dr  # dE/dgi_r = dE/dr_t ⊙ r_t (1 - r_t)
    np.matmul(g[:, : 3 * H], W, out=dh)  # W^T dE/dgh_t, dgh = [dgi_r, dgi_z, dgh_n]
    dh += through_z  # dE/dh_{t-1} = dE/dh_t ⊙ z_t + W^T dE/dgh_t


def _lstm_back(
    g: np.ndarray,
    c_prev: np.ndarray,
    tanh_c: np.ndarray,
    W: np.ndarray,
    carry_h: np.ndarray,
    carry_c: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """One LSTM step back: g (B, 4H) the gates -> dE/da_t; (carry_h, carry_c): dE/ds_t = [dE/dh_t;
    the part of dE/dc_t from step t + 1] -> dE/ds_{t-1}."""
    H = carry_h.shape[1]
    gate_i, gate_f, gate_g, gate_o = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H], g[:, 3 * H :]
    dc_t, tmp, dc_g = scratch
    np.multiply(tanh_c, tanh_c, out=dc_t)
    np.subtract(1.0, dc_t, out=dc_t)
    dc_t *= gate_o
    dc_t *= carry_h
    dc_t += carry_c  # dE/dc_t = dE/dc_t (carried) + dE/dh_t ⊙ gate_o ⊙ (1 - tanh(c_t)²)
    np.multiply(gate_o, gate_o, out=tmp)
    np.subtract(gate_o, tmp, out=gate_o)
    gate_o *= tanh_c
    gate_o *= carry_h  # dE/da_o = dE/dh_t ⊙ tanh(c_t) ⊙ σ'
    np.multiply(dc_t, gate_g, out=dc_g)  # dE/dc_t ⊙ gate_g, for dE/da_i
    np.multiply(gate_g, gate_g, out=gate_g)
    np.subtract(1.0, gate_g, out=gate_g)
    gate_g *= gate_i
    gate_g *= dc_t  # dE/da_g = dE/dc_t ⊙ gate_i ⊙ (1 - gate_g²)
    np.multiply(gate_i, gate_i, out=tmp)
    np.subtract(gate_i, tmp, out=gate_i)
    gate_i *= dc_g  # dE/da_i = dE/dc_t ⊙ gate_g ⊙ σ'
    np.multiply(dc_t, gate_f, out=carry_c)  # dE/dc_{t-1} = dE/dc_t ⊙ gate_f
    np.multiply(gate_f, gate_f, out=tmp)
    np.subtract(gate_f, tmp, out=gate_f)
    gate_f *= c_prev
    gate_f *= dc_t  # dE/da_f = dE/dc_t ⊙ c_{t-1} ⊙ σ'
    np.matmul(g, W, out=carry_h)  # dE/dh_{t-1} = W^T dE/da_t


def output_upstream(
    fw: FastForward, V: np.ndarray, c: np.ndarray | None, Y: np.ndarray, weight: np.ndarray
) -> tuple[Upstream, np.ndarray, np.ndarray | None]:
    """The softmax output layer as an Upstream, with the dV (K, H) and dc (K,) it adds to.

    For the steps of each block: o_t = V h_t + c, dE/do_t = w_t (y_hat_t - onehot(y_t)),
    dV += sum_t dE/do_t h_t^T, dc += sum_t dE/do_t, dE_t/dh_t = V^T dE/do_t.
    Raises NonFiniteError "o_t" at the first step (of all) whose logits are not finite, and "E_t"
    or "E" (see output.raise_loss_overflow) for the block whose loss is not finite.
    """
    B, H, K = fw.hs.shape[1], fw.H, V.shape[0]
    T = fw.gates.shape[0]
    dt = fw.gates.dtype
    VT = np.ascontiguousarray(V.T)
    steps = step_blocks(T, B)[0][1]
    dO_buf = np.empty((steps * B, K), dtype=dt)
    dV = np.zeros((K, H), dtype=dt)
    dc = None if c is None else np.zeros(K, dtype=dt)

    def from_output_layer(start: int, end: int, out: np.ndarray) -> float:
        n = (end - start) * B
        h = fw.hs[start + 1 : end + 1].reshape(n, H)  # h_t, one row per (t, b)

        def overflow(loss: np.floating) -> None:
            if not all_finite(logits(h, VT, c)):  # name the first step of all whose logits overflowed
                for lo, hi in step_blocks(T, B):
                    o = logits(fw.hs[lo + 1 : hi + 1].reshape(-1, H), VT, c)
                    check_finite("o_t", o.reshape(hi - lo, B, K), lo)
            # a term w_t E_t, or their sum, overflowed: name it
            raise_loss_overflow(fw.hs[start + 1 : end + 1], V, c, Y[start:end], weight[start:end], start)

        y, w = Y[start:end].reshape(n), weight[start:end].reshape(n)
        e = out.reshape(n, H)  # receives dE_t/dh_t = V^T dE/do_t
        part = output_layer(h, VT, V, c, y, w, overflow, dO_out=dO_buf[:n], e_out=e, dV=dV, dc=dc)
        return float(part.loss)

    return from_output_layer, dV, dc


def spec_run(fw: FastForward) -> Run:
    """The forward pass as the generic drivers' Run: the states s (T + 1, B, S) and, per step,
    the spec's cache (cells.gru.GRUCache / cells.lstm.LSTMCache) as views of fw's buffers.

    So truncated BPTT (drivers.backprop over the spec's backward steps) starts from the same
    states as every other method: forward, bptt and backward report identical h_t.
    """
    H, T = fw.H, fw.gates.shape[0]
    g = fw.gates
    if fw.lstm:
        s = np.concatenate([fw.hs, fw.cs], axis=2)
        caches = [LSTMCache(g[t], fw.cs[t], fw.tanh_c[t]) for t in range(T)]
    else:
        s = fw.hs
        caches = [
            GRUCache(fw.hs[t], g[t, :, :H], g[t, :, H : 2 * H], g[t, :, 3 * H :], g[t, :, 2 * H : 3 * H])
            for t in range(T)
        ]
    return Run(s=s, caches=caches)
