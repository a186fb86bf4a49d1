"""The three cells as both products name them: the Elman RNN, the GRU and the LSTM. numpy only.

    CELLS         "rnn", "gru", "lstm" (manual_bptt.problems.CELLS)
    GATE_NAMES    each cell's gate blocks in PyTorch's stacked order (the Elman cell: one block)
    GATES         how many blocks: G = 1, 3, 4 (weights of G*H rows)
    NATIVE        the native torch module of each cell: torch.nn.RNN, GRU, LSTM
    cell_of_params  which cell a parameters object is for (RNNParams, GRUParams, LSTMParams)
"""

from __future__ import annotations

from typing import Any

from manual_bptt import GRUParams, LSTMParams
from manual_bptt.problems import CELLS

__all__ = ["CELLS", "GATES", "GATE_NAMES", "NATIVE", "cell_of_params"]

#: Gate blocks, in PyTorch's stacked layout (GRU r, z, n; LSTM i, f, g, o).
GATE_NAMES: dict[str, tuple[str, ...]] = {
    "rnn": ("",),
    "gru": GRUParams.GATE_NAMES,
    "lstm": LSTMParams.GATE_NAMES,
}
#: Gate blocks per cell.
GATES: dict[str, int] = {cell: len(names) for cell, names in GATE_NAMES.items()}
#: The native torch module of each cell: torch.nn.<NATIVE[cell]>.
NATIVE: dict[str, str] = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def cell_of_params(p: Any) -> str:
    """ "gru" / "lstm" for GRUParams / LSTMParams (by their G = 3 / 4 gate blocks), else "rnn"."""
    gates = getattr(type(p), "GATES", 0)
    return {GATES["gru"]: "gru", GATES["lstm"]: "lstm"}.get(gates, "rnn")
