"""The loss-curve PNG; matplotlib (the ``plot`` extra) is imported only here, when the plot is written."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .loop import TrainResult

__all__ = ["write_plot"]


def write_plot(path: Path, result: TrainResult, title: str) -> bool:
    """Write the loss curve PNG; False (with a message on stderr) when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure  # object API: no pyplot, no global backend change
    except ImportError:
        print(
            'matplotlib is not installed: loss-curve plot skipped (pip install "manual-bptt[plot]")',
            file=sys.stderr,
        )
        return False
    steps = np.arange(1, len(result.losses) + 1)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot(steps, result.losses, lw=0.5, alpha=0.3, color="tab:blue", label="loss per step")
    ax.plot(steps, result.smoothed, lw=1.5, color="tab:blue", label="smoothed")
    ax.axhline(result.baseline, ls="--", color="gray", label=f"uniform log K = {result.baseline:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_ylim(0, max(result.baseline, float(np.max(result.smoothed))) * 1.1)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
