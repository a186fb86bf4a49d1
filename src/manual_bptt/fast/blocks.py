"""Blocks of steps: what the fast paths of every cell share. numpy only.

A fast path runs the Python loop over single steps only for the recursions themselves; every
other product runs over a block of steps at once, about _ROWS rows (t, b): enough rows for
full-speed matrix products, few enough to stay in cache. Blocks are reused from block to block,
so a call allocates one of each besides its outputs and the states.

    step_blocks          [start, end) of the blocks of a call (at least one step each)
    sub_block_steps      steps of a sub-block of elementwise work, at most _NUMBERS numbers
    x_buffer, x_rows     the inputs x_t of a block as C-contiguous rows, read in place or copied
                         into one reused block (batch-first dense inputs)
    input_grad_arrays    dE/dxs in the caller's layout and its time-major view, written in place
    add_rows_by_token    dU for token inputs: the rows of the steps that read token v, summed
"""

from __future__ import annotations

import numpy as np

from .._inputs import Batch

#: Rows (t, b) per block of steps (at least one step per block), where work is done a block
#: of steps at a time: enough rows for full-speed matrix products, few enough to stay in cache.
_ROWS = 1024
#: Numbers per block of elementwise work done a block of steps at a time (f'(a_t) in the Elman
#: backward recursion): 256 KiB of float64, so the block stays in cache between its uses.
_NUMBERS = 1 << 15


def step_blocks(T: int, B: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive blocks of steps: _ROWS rows (t, b) each, at least one step."""
    steps = max(1, _ROWS // B)
    return [(t, min(t + steps, T)) for t in range(0, T, steps)]


def sub_block_steps(steps: int, B: int, H: int) -> int:
    """Steps per sub-block of elementwise work on (B, H) rows: at most _NUMBERS numbers, at least
    one step, at most ``steps`` (a block's)."""
    return min(steps, max(1, _NUMBERS // (B * H)))


def x_buffer(X: np.ndarray | None, steps: int) -> np.ndarray | None:
    """The one block of ``steps`` steps that x_rows copies into, or None when no copy is needed
    (token inputs, or a C-contiguous X)."""
    if X is None or X.flags.c_contiguous:
        return None
    return np.empty_like(X[:steps], order="C")


def x_rows(X: np.ndarray, start: int, end: int, buf: np.ndarray | None) -> np.ndarray:
    """x_k for the steps k in [start, end) as a C-contiguous (rows, D) matrix of rows (t, b).

    A C-contiguous X, (T, B, D), gives a view. The time-major view of the caller's
    batch-first array (see Batch.X) is copied into buf (from x_buffer), reused for every
    block: the matrix products get contiguous rows, and no (T, B, D) copy is made.
    """
    if buf is None:
        return X[start:end].reshape(-1, X.shape[-1])
    x = buf[: end - start]
    np.copyto(x, X[start:end])  # x_k for the steps k of this block, time-major
    return x.reshape(-1, X.shape[-1])


def input_grad_arrays(batch: Batch, dtype: np.dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(dxs in the caller's layout, its time-major (T, B, D) view), in ``dtype``; (None, None) for
    token inputs."""
    if batch.tokens is not None:
        return None, None
    if batch.batched:
        dxs = np.empty((batch.B, batch.T, batch.D), dtype=dtype)
        return dxs, dxs.swapaxes(0, 1)
    dxs = np.empty((batch.T, batch.D), dtype=dtype)
    return dxs, dxs[:, None, :]


def add_rows_by_token(dUT: np.ndarray, tokens: np.ndarray, rows: np.ndarray) -> None:
    """dUT[v] += the sum of the rows[i] with tokens[i] = v.

    That is dU += sum_k g_k x_k^T for one-hot x_k: column v of dU collects the g_k of the
    steps with x_k = v. np.add.at sums repeated indices (plain += would keep one of them);
    on flat indices v * width + j it costs O(rows * width), whatever the vocabulary.
    """
    width = rows.shape[1]  # H for the Elman cell, G*H for a gated one
    cell = (tokens[:, None] * width + np.arange(width)).reshape(-1)  # flat index of (v, j) in dUT
    np.add.at(dUT.reshape(-1), cell, rows.reshape(-1))
