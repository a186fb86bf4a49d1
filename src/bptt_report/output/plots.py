"""The report's PNG plots (needs matplotlib, the ``plot`` extra; drawn with the Agg backend).

errors.png        relative error of every checked array, per field, against the tolerance
state_grads.png   log10 ||dE_t/dz_k|| over (t, k), one column per sample model (bptt_report.output.regimes):
                  the Elman cell vanishing and exploding, the GRU, the LSTM's h path and c path
                  (the reference's sample models, not the target: the plots and report.md say so)
lag_profile.png   term norm ||term_W[t, t - L]||, ||dz_t/dz_{t-L}||_2 and ||dE_t/dz_{t-L}|| against
                  the lag L (the LSTM's h and c paths apart)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PlotsUnavailable, install_hint
from ..judge.compare import FD_ATOL, FD_RTOL, FIELDS, RTOL
from ..judge.results import CheckResult

#: Where exact zeros are drawn on the log axis.
ZERO_FLOOR = 1e-18
#: A row t of state_grads.png is left grey when ||dE_t/ds_t|| is below this fraction of the largest.
CERTAIN_ROW = 1e-8
#: Plot file names, in report order.
PLOT_FILES = ("errors.png", "state_grads.png", "lag_profile.png")



def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; PlotsUnavailable with the install hint if missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable(
            f"the plots need matplotlib, which is not installed: {install_hint('plot')}"
        ) from exc
    return plt


def _errors_by_field(
    result: CheckResult, kinds: tuple[str, ...], elementwise: bool = False
) -> dict[str, list[tuple[float, bool]]]:
    """field -> [(error, passed)] over the checks of ``kinds``: the relative error
    max|a - r| / max|r|, or with ``elementwise`` the finite-difference criterion itself,
    max over entries of |a - n| / (atol + rtol max(|a|, |n|)), which passes when <= 1."""
    out: dict[str, list[tuple[float, bool]]] = {f: [] for f in FIELDS}
    for c in result.checks:
        if c.kind in kinds:
            for a in c.arrays:
                if a.name in out:
                    if elementwise:
                        e = a.abs_error / a.tolerance if a.tolerance > 0 else float("inf")
                    else:
                        e = a.rel_error
                    out[a.name].append((e, a.passed))
    return {f: v for f, v in out.items() if v}


def _strip(
    ax: Any,
    data: dict[str, list[tuple[float, bool]]],
    tol: float,
    title: str,
    rng: np.random.Generator,
    ylabel: str = "relative error  max|a - r| / max|r|",
    line_label: str = "",
) -> None:
    """One panel: log10 relative error per field, jittered points over a box, the tolerance line.

    Blue: the array passed; red: it disagreed (a blue point above the line passed by atol, its
    reference being tiny). Exact zeros sit at ZERO_FLOOR.
    """
    labels = []
    for i, (name, pairs) in enumerate(data.items()):
        e = np.asarray([p[0] for p in pairs], dtype=float)
        passed = np.asarray([p[1] for p in pairs], dtype=bool)
        finite = np.isfinite(e)
        y = np.where(finite, np.maximum(e, ZERO_FLOOR), np.nan)
        x = i + rng.uniform(-0.28, 0.28, size=e.size)
        ax.scatter(x[passed & finite], y[passed & finite], s=6, alpha=0.35, color="tab:blue", linewidths=0)
        ax.scatter(x[~passed & finite], y[~passed & finite], s=12, alpha=0.8, color="tab:red", linewidths=0)
        if np.any(finite):
            ax.boxplot(
                [y[finite]],
                positions=[i],
                widths=0.6,
                showfliers=False,
                medianprops={"color": "black"},
                boxprops={"color": "0.3"},
                whiskerprops={"color": "0.3"},
                capprops={"color": "0.3"},
            )
        n_zero = int(np.sum(e == 0))
        n_bad = int(np.sum(~passed))
        labels.append(
            f"{name}\nn={e.size}"
            + (f"\n{n_zero} exact" if n_zero else "")
            + (f"\n{n_bad} fail" if n_bad else "")
        )
    ax.axhline(tol, color="tab:red", linestyle="--", linewidth=1)
    text = line_label or f" rtol {tol:g}"
    ax.text(len(labels) - 0.5, tol, text, color="tab:red", va="bottom", ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def plot_errors(result: CheckResult, path: Path) -> None:
    """errors.png: the error distribution per field, oracle + nn.RNN and finite differences."""
    plt = pyplot()
    rng = np.random.default_rng(0)
    exact = _errors_by_field(result, ("oracle", "torch_rnn"))
    fd = _errors_by_field(result, ("finite_differences",), elementwise=True)
    norm_wise = {"ylabel": "relative error  max|a - r| / max|r|", "line_label": f" rtol {RTOL:g}"}
    panels = [(exact, RTOL, "against the oracle and nn.RNN / nn.GRU / nn.LSTM (float64)", norm_wise)]
    if fd:
        elementwise = {
            "ylabel": f"max |a - n| / ({FD_ATOL:g} + {FD_RTOL:g} max(|a|, |n|))",
            "line_label": " passes below 1 (elementwise)",
        }
        panels.append(
            (fd, 1.0, "against central finite differences (the criterion it is judged by)", elementwise)
        )
    widths = [max(len(d), 1) for d, _, _, _ in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3 + 0.85 * sum(widths), 5.4), width_ratios=widths, squeeze=False
    )
    for ax, (data, tol, title, labels) in zip(axes[0], panels, strict=True):
        if data:
            _strip(ax, data, tol, title, rng, **labels)
        else:
            ax.text(0.5, 0.5, "no arrays compared", ha="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=10)
    verdict = {
        "PASS": "all agree",
        "FAIL": f"{len(result.failures)} checks disagree or fail, in red",
        "INSUFFICIENT": "nothing disagrees, but too little was checked",
    }[result.verdict]
    fig.suptitle(f"Relative error per array: {result.target} ({verdict})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _heatmaps(regimes: list[dict[str, Any]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, ||dE_t/d·_k|| (T, T), ||dE_t/dz_t|| (T,)) per panel: one per sample model, the
    LSTM's as its h path and its c path (both scaled by the full state's lag-0 norm)."""
    out = []
    for reg in regimes:
        full = np.asarray(reg["dE_ds_norms"], dtype=float)
        scale = (
            f"radius of W = {reg['spectral_radius']:g}"
            if reg.get("cell", "rnn") == "rnn"
            else f"init scale {reg['weight_scale']:g}"
        )
        head = f"{reg['name']}: {reg['activation']}, {scale}" if reg.get("cell", "rnn") == "rnn" else (
            f"{reg['name']} ({scale})"
        )
        if reg.get("cell") == "lstm":
            for part, key in (("h path ||dE_t/dh_k||", "dE_dh_norms"),
                              ("c path ||dE_t/dc_k||", "dE_dc_norms")):  # fmt: skip
                out.append((f"{head}, {part}", np.asarray(reg[key], dtype=float), np.diag(full)))
        else:
            out.append((head, full, np.diag(full)))
    return out


def plot_state_grads(regimes: list[dict[str, Any]], path: Path) -> None:
    """state_grads.png: log10 ||dE_t/dz_k|| over (t, k), one column per sample model (two for the
    LSTM: h path, c path); below it the same divided by ||dE_t/dz_t||, which removes the size
    of each E_t's own gradient and leaves the growth or decay with the lag t - k."""
    plt = pyplot()
    panels_of = _heatmaps(regimes)
    n = len(panels_of)
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n, 8.6), squeeze=False)
    for j, (title, norms, diag) in enumerate(panels_of):
        T = norms.shape[0]
        lower = np.tril(np.ones((T, T), dtype=bool))
        # rows whose E_t is already certain (dE_t/ds_t about 0): left grey, off the colour scale
        certain = diag <= CERTAIN_ROW * max(float(diag.max()), ZERO_FLOOR)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(diag[:, None] > 0, norms / diag[:, None], np.nan)
        panels = (
            (norms, "log10 ||dE_t/dz_k||", ""),
            (relative, "log10 ||dE_t/dz_k|| / ||dE_t/dz_t||", "rel. to lag 0: "),
        )
        for i, (values, label, prefix) in enumerate(panels):
            ax = axes[i, j]
            shown = np.full((T, T), np.nan)
            shown[lower] = np.log10(np.maximum(values[lower], ZERO_FLOOR))
            shown[values == 0] = np.nan  # exact zeros (the c path at k = t) grey, off the scale
            shown[certain, :] = np.nan
            cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
            finite = shown[np.isfinite(shown)]
            limits = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
            im = ax.imshow(shown, origin="upper", cmap=cmap, interpolation="nearest", aspect="equal",
                           vmin=limits[0], vmax=limits[1])  # fmt: skip
            for t in np.flatnonzero(certain):
                ax.text(
                    t / 2, t, "E_t certain: dE_t/ds_t ~ 0", fontsize=6, va="center", ha="center", color="0.3"
                )
            ax.set_xlabel("k (the state differentiated)")
            ax.set_ylabel("t (the loss term E_t)")
            ax.set_title(f"{prefix}{title}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    fig.suptitle(
        "The reference's sample models, not the target: how far back each E_t reaches, ||dE_t/dz_k|| for "
        "k <= t (z: the full state)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lag_profile(regimes: list[dict[str, Any]], path: Path) -> None:
    """lag_profile.png: mean term norm, mean ||dz_t/dz_{t-L}||_2 and mean ||dE_t/dz_{t-L}|| against
    the lag L (log scale); the LSTM's h and c paths apart in the last panel."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = ("tab:blue", "tab:red", "tab:green", "tab:purple")
    for reg, color in zip(regimes, colors, strict=False):
        lag = np.asarray(reg["lag"])
        term = np.maximum(np.asarray(reg["term_W_mean"], dtype=float), ZERO_FLOOR)
        jac = np.maximum(np.asarray(reg["jac_spec_mean"], dtype=float), ZERO_FLOOR)
        if reg.get("cell", "rnn") == "rnn":
            label = f"{reg['name']} (radius {reg['spectral_radius']:g})"
        else:
            label = f"{reg['name']} (init scale {reg['weight_scale']:g})"
        axes[0].semilogy(lag, term, "o-", color=color, markersize=3, label=label)
        axes[1].semilogy(lag, jac, "o-", color=color, markersize=3, label=label)
        paths = [("", "dE_ds_lag_mean", "o-")]
        if reg.get("cell") == "lstm":
            paths += [(", h path", "dE_dh_lag_mean", "--"), (", c path", "dE_dc_lag_mean", ":")]
        for suffix, key, style in paths:
            if key in reg:
                m = np.asarray(reg[key], dtype=float)
                shown = np.where(m > 0, m, np.nan)  # the c path is exactly 0 at lag 0
                axes[2].semilogy(np.arange(m.size), shown, style, color=color, markersize=3,
                                 label=label + suffix)  # fmt: skip
    axes[0].set_title("term norm: mean over t of ||term_W[t, t - L]||_F", fontsize=10)
    axes[1].set_title("Jacobian: mean over t of ||dz_t / dz_{t-L}||_2", fontsize=10)
    axes[2].set_title("reach: mean over t of ||dE_t / dz_{t-L}||", fontsize=10)
    for ax in axes:
        ax.set_xlabel("lag L = t - k")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(
        "The reference's sample models, not the target: vanishing and exploding gradients, per cell, the "
        "terms against their lag",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(result: CheckResult, regimes: list[dict[str, Any]], directory: Path) -> list[str]:
    """Draw every plot into ``directory``; the file names written. PlotsUnavailable without matplotlib."""
    pyplot()
    plot_errors(result, directory / "errors.png")
    plot_state_grads(regimes, directory / "state_grads.png")
    plot_lag_profile(regimes, directory / "lag_profile.png")
    return list(PLOT_FILES)
