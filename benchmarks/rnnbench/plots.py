"""scaling.png: time against T (left) and peak memory of bptt against T (right), log-log."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _log_T_axis(ax, Ts: list[int]) -> None:
    """T ticks at the measured T only, labelled as plain numbers."""
    ax.set_xticks(Ts, [str(T) for T in Ts], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("T (sequence length)")


def time_panel(ax, scaling: dict) -> None:
    """Median time per method, with its fitted power law over the T it was fitted on."""
    for m, r in scaling["methods"].items():
        Ts, ts = np.array(r["T"]), np.array(r["median_s"])
        (line,) = ax.loglog(Ts, ts * 1e3, "o", label=f"{m}: exponent {r['exponent']:.2f}")
        fit_T = np.array(r["fit_T"])
        coef = np.polyfit(np.log(fit_T), np.log(ts[len(Ts) - len(fit_T) :]), 1)
        ax.loglog(fit_T, np.exp(np.polyval(coef, np.log(fit_T))) * 1e3, "-", color=line.get_color())
    _log_T_axis(ax, sorted({T for r in scaling["methods"].values() for T in r["T"]}))
    ax.set_ylabel("median time (ms)")
    ax.set_title("time against T (log-log)")
    ax.legend(loc="upper left")


def memory_panel(ax, mem: dict) -> None:
    """Measured peak, predicted peak and the cached states, in MiB."""
    Ts = [r["T"] for r in mem["rows"]]

    def mib(key: str) -> list[float]:
        return [r[key] / 2**20 for r in mem["rows"]]

    ax.loglog(Ts, mib("peak_bytes"), "o-", label=f"bptt peak (exp. {mem['exponent']:.2f})")
    ax.loglog(Ts, mib("predicted_bytes"), "^:", label="predicted (see results.md)")
    ax.loglog(Ts, mib("cached_bytes"), "s--", label="cached s")
    _log_T_axis(ax, Ts)
    ax.set_ylabel("MiB")
    ax.set_title("peak memory of bptt (tracemalloc)")
    ax.legend()


def plot(result: dict, path: Path) -> None:
    """Write scaling.png of a run with a scaling part."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.22)
    time_panel(ax1, result["scaling"])
    memory_panel(ax2, result["memory"])
    fig.savefig(path, dpi=110)
