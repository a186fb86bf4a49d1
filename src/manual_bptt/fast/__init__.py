"""The fast paths: each a tested optimization of a cell's spec (manual_bptt.cells), never the only
statement of its math. numpy only.

    blocks.py   what they share: blocks of steps, the inputs of a block as contiguous rows,
                dE/dxs written in place, dU for token inputs
    elman.py    the Elman cell: the forward recurrence, full BPTT by the reverse recursion, a
                block of steps at a time, and truncated BPTT by the sum over lags
    gated.py    the GRU and the LSTM: one preallocated gate buffer, one stacked product per step,
                full BPTT a block of steps at a time

Each is property-tested against the generic drivers (manual_bptt.drivers) over its cell's spec,
and against the autograd oracle. A cell without a fast path runs on the generic drivers alone.
"""
