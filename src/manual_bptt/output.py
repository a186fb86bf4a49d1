"""The output layer every cell and every path shares: logits, softmax, the loss and its gradients. numpy only.

With h_t the layer's output at step t (s_t for the Elman cell, h_t for the GRU and the LSTM) and
w_t the weight of E_t (mask_t, or mask_t / the number of counted targets for reduction="mean"):

    o_t = V h_t + c                  y_hat_t = softmax(o_t)
    E_t = -log y_hat_t[y_t]          E = sum_t w_t E_t
    dE/do_t = w_t (y_hat_t - onehot(y_t))
    dV = sum_t dE/do_t h_t^T         dc = sum_t dE/do_t
    e_t = V^T dE/do_t                (dE_t/dh_t, the direct part: what the recurrence receives)

The functions take the steps as rows, one row per (t, b): h (n, H), o and dE/do (n, K). They are
called on every step at once (the generic paths, decompose, rtrl) or on a block of steps at a
time (the fast paths: see manual_bptt.fast), always inside ``np.errstate(**errors.QUIET)``: a
loss that is not finite is named by the caller's ``overflow`` (NonFiniteError), never reported
as a numpy warning.

    output_layer         the whole layer on rows: E's part, dE/do_t, dV, dc and e_t
    logits, softmax      o_t and y_hat_t, for the forward passes and the decomposition's factors
    softmax_cross_entropy   E and dE/do_t from the logits, in place, by log-sum-exp
    raise_loss_overflow, raise_loss_sum_overflow   which step's o_t or E_t overflowed, or the sum E
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .errors import NonFiniteError, check_steps_finite


def logits(h: np.ndarray, VT: np.ndarray, c: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """o_t = V h_t + c for rows of outputs: h (n, H), VT = V^T (H, K), c (K,) or None -> (n, K).

    Any leading shape of h works ((n, B, H) -> (n, B, K)). ``out``: an optional (n, K) array for
    the result. A C-contiguous V^T is the faster product; the caller chooses which it passes.
    """
    o = np.matmul(h, VT, out=out)  # V h_t
    if c is not None:
        o += c  # + c
    return o


def softmax(o: np.ndarray) -> np.ndarray:
    """y_hat_t = softmax(o_t) over the last axis, shifted by the maximum (no overflow). Any shape."""
    y_hat = np.exp(o - o.max(axis=-1, keepdims=True))  # exp(o_t - max_j o_t[j])
    y_hat /= y_hat.sum(axis=-1, keepdims=True)
    return y_hat


def softmax_cross_entropy(o: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.floating:
    """Turn logits o, (n, K), into dE/do in place, and return sum_i w_i E_i for these rows.

    E_i = -log softmax(o_i)[y_i] by log-sum-exp, so large logits give finite results; one
    buffer holds the logits, then their exponentials, then dE/do: a single exp, no
    temporaries of that size. y: (n,) labels; w: (n,) weights. The sum has o's dtype.
    """
    rows = np.arange(len(o))
    o -= o.max(axis=1, keepdims=True)  # o_t - max_j o_t[j]: the shift of log-sum-exp (E_t is the same)
    o_y = o[rows, y]  # o_t[y_t], shifted
    y_hat = np.exp(o, out=o)  # exp(o_t), shifted, in place
    sum_exp = y_hat.sum(axis=1)
    loss = w @ (np.log(sum_exp) - o_y)  # E_t = -log y_hat_t[y_t] = log sum_j exp(o_t[j]) - o_t[y_t]
    y_hat *= (w / sum_exp)[:, None]  # w_t y_hat_t = w_t exp(o_t) / sum_j exp(o_t[j])
    y_hat[rows, y] -= w  # dE/do_t = w_t (y_hat_t - onehot(y_t))
    return loss


class OutputGrads(NamedTuple):
    """What output_layer computes for its rows.

    Attributes:
        loss: sum_t w_t E_t over the rows, in the compute dtype (a numpy scalar).
        dO: (n, K) dE/do_t.  e: (n, H) e_t = V^T dE/do_t.
        dV: (K, H) and dc: (K,) or None: the sums they were added to, or these rows' own.
    """

    loss: np.floating
    dO: np.ndarray
    e: np.ndarray
    dV: np.ndarray
    dc: np.ndarray | None


def output_layer(
    h: np.ndarray,
    VT: np.ndarray,
    V: np.ndarray,
    c: np.ndarray | None,
    y: np.ndarray,
    w: np.ndarray,
    overflow: Callable[[np.floating], None],
    *,
    dO_out: np.ndarray | None = None,
    e_out: np.ndarray | None = None,
    dV: np.ndarray | None = None,
    dc: np.ndarray | None = None,
) -> OutputGrads:
    """The output layer on rows of outputs: the loss and every gradient of its steps.

        o_t = V h_t + c,   dE/do_t = w_t (y_hat_t - onehot(y_t)),   e_t = V^T dE/do_t,
        dV += sum_t dE/do_t h_t^T,   dc += sum_t dE/do_t

    Args:
        h: (n, H) the outputs h_t, one row per (t, b), C-contiguous.
        VT: (H, K) V^T for the logits (see logits).  V: (K, H).  c: (K,) or None.
        y: (n,) labels.  w: (n,) the weights w_t.
        overflow: called with the loss when it is not finite (a logit o_t, a term E_t or their
            sum overflowed): it raises NonFiniteError naming which (the caller knows its steps).
        dO_out: an optional (n, K) array for the logits, then dE/do_t.
        e_out: an optional (n, H) array for e_t.
        dV, dc: the sums (K, H) and (K,) to add these rows' terms to, in place (a fast path's
            blocks of steps); None: these rows' own, fresh (dc is None when c is).
    """
    dO = logits(h, VT, c, out=dO_out)  # o_t, one row per (t, b)
    loss = softmax_cross_entropy(dO, y, w)  # dO now holds dE/do_t
    if not math.isfinite(loss):
        overflow(loss)
    dV_rows = dO.T @ h  # sum_t dE/do_t h_t^T
    if dV is None:
        dV = dV_rows
    else:
        dV += dV_rows
    if c is not None:
        dc_rows = dO.sum(axis=0)  # sum_t dE/do_t
        if dc is None:
            dc = dc_rows
        else:
            dc += dc_rows
    e = np.matmul(dO, V, out=e_out)  # e_t = V^T dE/do_t
    return OutputGrads(loss, dO, e, dV, dc)


def raise_loss_overflow(
    h: np.ndarray, V: np.ndarray, c: np.ndarray | None, Y: np.ndarray, weight: np.ndarray, start: int
) -> None:
    """NonFiniteError at the first step whose logits o_t or loss E_t is not finite, else for the
    sum E of finite terms that overflowed. For a loss found not finite; every cell's.

    Args:
        h: (n, B, H) the outputs (s_t, or h_t) of the steps start, ..., start + n - 1.
        V: (K, H).  c: (K,) or None.  Y: (n, B) labels.  weight: (n, B) the weights w_t.
    """
    o = logits(h, V.T, c)  # o_t, (n, B, K)
    check_steps_finite("o_t", o, start)
    shifted = o - o.max(axis=-1, keepdims=True)  # log-sum-exp, as in softmax_cross_entropy
    shifted_y = np.take_along_axis(shifted, Y[:, :, None], axis=-1)[..., 0]
    E_t = (np.log(np.exp(shifted).sum(axis=-1)) - shifted_y) * weight  # w_t E_t, (n, B)
    check_steps_finite("E_t", E_t, start)
    raise_loss_sum_overflow(start, start + len(h) - 1, h.dtype)


def raise_loss_sum_overflow(first: int, last: int, dtype: np.dtype) -> None:
    """NonFiniteError for the loss E: its finite terms w_t E_t of steps first..last sum past the
    largest float of ``dtype``."""
    raise NonFiniteError(
        f"E: the sum of the finite terms w_t E_t of steps {first}..{last} overflowed in {dtype}",
        what="E",
        step=None,
    )
