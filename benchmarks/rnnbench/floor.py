"""The floor: the matrix products of one bptt call, and nothing else."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import manual_bptt as mb
from manual_bptt.fast.blocks import step_blocks


def products_alone(
    p: mb.RNNParams, T: int, B: int, X: np.ndarray | None, mm: Callable[..., np.ndarray] = np.matmul
) -> None:
    """The matrix products of one bptt call, and nothing else: a floor for bptt's time.

    The same products as manual_bptt.bptt (full BPTT), at the same shapes, in the same blocks
    of steps (manual_bptt.fast.blocks.step_blocks) and the same order: per block, U x_t (dense) over
    its rows, then W s_{t-1} step by step; backward, the blocks last first: V s_t, dV,
    V^T dE/do, W^T delta_t step by step, dW, dU, dE/dx. The
    states are allocated fresh, as bptt does. Left out: validation, the activation, softmax
    and loss, every other elementwise pass and the copies between layouts. The numbers
    multiplied are not the model's (each product reads what an earlier product wrote, or
    the inputs), so they stay finite and nothing else is needed to run them.

    Args:
        p: the parameters.  T, B: steps and sequences.
        X: dense inputs x_t, time-major and C-contiguous (T, B, D) (made before timing: bptt
            copies batch-first xs a block at a time), or None for token inputs.
        mm: the matrix product, called as mm(a, b) or mm(a, b, out=c) (a test counts FLOPs).
    """
    U = np.asarray(p.U)
    H = U.shape[0]
    blocks = step_blocks(T, B)
    states = np.empty((T + 1, B, H), dtype=U.dtype)
    states[0] = 0.0
    _forward_products(p, blocks, states, X, mm)
    _backward_products(p, blocks, states, X, mm)


def _forward_products(p: mb.RNNParams, blocks, states: np.ndarray, X: np.ndarray | None, mm) -> None:
    """Per block: U x_t over its rows (into the states; bptt: into a block of a_t), then W s_{t-1}."""
    U, W = np.asarray(p.U), np.asarray(p.W)
    (H, D), B = U.shape, states.shape[1]
    UT, WT = np.ascontiguousarray(U.T), np.ascontiguousarray(W.T)
    recur = np.empty((B, H), dtype=U.dtype)
    for start, end in blocks:
        s_blk = states[start + 1 : end + 1]
        if X is None:
            s_blk[...] = 0.1  # U x_t is a column of U: no product
        else:
            mm(X[start:end].reshape(-1, D), UT, out=s_blk.reshape(-1, H))
        for t in range(start, end):
            mm(states[t], WT, out=recur)  # W s_{t-1}


def _backward_products(p: mb.RNNParams, blocks, states: np.ndarray, X: np.ndarray | None, mm) -> None:
    """The blocks last first: V s_t, dV, V^T dE/do, W^T delta_t step by step, dW, dU, dE/dx."""
    U, W, V = (np.asarray(m) for m in (p.U, p.W, p.V))
    (H, D), K, B = U.shape, V.shape[0], states.shape[1]
    VT = np.ascontiguousarray(V.T)
    steps = blocks[0][1]
    e = np.empty((steps, B, H), dtype=U.dtype)
    dO = np.empty((steps * B, K), dtype=U.dtype)
    dx = np.empty((steps * B, D), dtype=U.dtype)
    carry = np.empty((B, H), dtype=U.dtype)
    dW, dU, dV = np.zeros_like(W), np.zeros_like(U), np.zeros_like(V)
    for start, end in reversed(blocks):
        n = (end - start) * B
        S, S_in = states[start + 1 : end + 1].reshape(n, H), states[start:end].reshape(n, H)
        e_blk = e[: end - start]
        mm(S, VT, out=dO[:n])  # o_t = V s_t
        dV += mm(dO[:n].T, S)  # dV = sum_t dE/do_t s_t^T
        mm(dO[:n], V, out=e_blk.reshape(n, H))  # e_t = V^T dE/do_t
        for t in reversed(range(end - start)):
            mm(e_blk[t], W, out=carry)  # W^T delta_t
        dW += mm(e_blk.reshape(n, H).T, S_in)  # dW = sum_t delta_t s_{t-1}^T
        if X is not None:
            dU += mm(e_blk.reshape(n, H).T, X[start:end].reshape(n, D))  # dU = sum_t delta_t x_t^T
            mm(e_blk.reshape(n, H), U, out=dx[:n])  # dE/dx_t = U^T delta_t


def gated_products_alone(
    p: object,
    T: int,
    B: int,
    X: np.ndarray | None,
    mm: Callable[..., np.ndarray] = np.matmul,
) -> None:
    """The matrix products of one gated bptt call (GRU G = 3, LSTM G = 4), and nothing else.

    The same products as manual_bptt.bptt's fast path for the gated cells (manual_bptt.fast.gated),
    at the same shapes, in the same blocks of steps and order: per block, U x_t (dense) over its rows
    into a (rows, G*H) block, then W h_{t-1} step by step, one stacked (B, G*H) product each;
    backward, the blocks last first: V h_t, dV, V^T dE/do, then W^T dE/dgh_t step by step, then
    dW, dU and dE/dx over the block's rows. Left out: validation, the gate arithmetic, softmax
    and loss, every other elementwise pass and copy. As for products_alone, the numbers
    multiplied are not the model's; they stay finite.

    Args:
        p: the weights: anything with U (G*H, D), W (G*H, H) and V (K, H) (GRUParams, LSTMParams).
        T, B: steps and sequences.
        X: dense inputs, time-major and C-contiguous (T, B, D), or None for token inputs.
        mm: the matrix product, called as mm(a, b) or mm(a, b, out=c).
    """
    U, W, V = (np.asarray(m) for m in (p.U, p.W, p.V))
    (GH, D), H, K = U.shape, W.shape[1], V.shape[0]
    dt = U.dtype
    blocks = step_blocks(T, B)
    steps = blocks[0][1]
    UT, WT, VT = (np.ascontiguousarray(m.T) for m in (U, W, V))
    hs = np.empty((T + 1, B, H), dtype=dt)
    hs[...] = 0.01
    gates = np.empty((T, B, GH), dtype=dt)
    gi = np.empty((steps * B, GH), dtype=dt)
    for start, end in blocks:  # forward
        n = (end - start) * B
        if X is not None:
            mm(X[start:end].reshape(n, D), UT, out=gi[:n])  # U x_t
        for t in range(start, end):
            mm(hs[t], WT, out=gates[t])  # W h_{t-1}, (B, G*H)
    dO = np.empty((steps * B, K), dtype=dt)
    e = np.empty((steps * B, H), dtype=dt)
    dx = np.empty((steps * B, D), dtype=dt)
    carry = np.empty((B, H), dtype=dt)
    dW, dU, dV = np.zeros_like(W), np.zeros_like(U), np.zeros_like(V)
    for start, end in reversed(blocks):  # backward
        n = (end - start) * B
        Hrows = hs[start + 1 : end + 1].reshape(n, H)
        mm(Hrows, VT, out=dO[:n])  # o_t = V h_t
        dV += mm(dO[:n].T, Hrows)  # dV = sum_t dE/do_t h_t^T
        mm(dO[:n], V, out=e[:n])  # V^T dE/do_t
        for t in range(end - 1, start - 1, -1):
            mm(gates[t], W, out=carry)  # W^T dE/dgh_t
        rows = gates[start:end].reshape(n, GH)
        dW += mm(rows.T, hs[start:end].reshape(n, H))  # dW = sum_t dgh_t^T h_{t-1}
        if X is not None:
            x = X[start:end].reshape(n, D)
            dU += mm(rows.T, x)  # dU = sum_t dgi_t^T x_t
            mm(rows, U, out=dx[:n])  # dE/dx_t = dgi_t U
