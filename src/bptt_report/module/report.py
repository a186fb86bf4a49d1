"""The files of ``check-module``: report.json, report.md and lag_profile.png (the lag profile of
the module against the reference, when there is one and matplotlib is installed).

Each file is written beside its final name and renamed into place; a lag_profile.png left by an
earlier run is removed when this run draws none.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..judge.compare import FACTOR
from ..output.plots import PlotsUnavailable, pyplot
from .cases import notation
from .check import ModuleCheckResult
from .layers import part_words

FILES = ("report.json", "report.md", "lag_profile.png")


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def markdown(r: ModuleCheckResult, plot: str | None) -> str:
    """report.md."""
    loc = r.localization
    lines = [
        f"# check-module: {r.verdict}",
        "",
        f"`{r.factory}` as a `--cell {r.cell}` layer"
        + (f" ({r.shape.words()})" if r.shape.words() else "")
        + f" at {r.dtype} on {r.device}"
        + (f" (nonlinearity {r.activation})" if r.cell == "rnn" else "")
        + f", against manual_bptt.backward in float64 on the same rounded values: "
        f"{r.checked} of {r.examples} random configurations checked (seed {r.seed}), in {r.seconds:.1f} s.",
        "",
    ]
    if r.dtype == "float64":
        lines.append("Verdict per array: max|module - ref| <= 1e-10 max|ref| + 1e-12 (NaN fails).")
    else:
        lines.append(
            f"Verdict per array: the module's error max|module - ref| at most {FACTOR:g} times that of "
            f"{r.baseline_name} at {r.dtype} on {r.device} on the same values (the baseline, floored at "
            f"the dtype's unit roundoff times max|ref|); the ratio is module error / baseline error."
        )
    lines += ["", "## Findings", ""]
    lines += [f"- {f}" for f in r.findings] or ["- none: every array agrees"]
    lines += [f"- {line}" for line in r.layer_lines()]
    lines += [f"- note: {f}" for f in r.notes]
    if r.nondeterminism:
        lines.append(
            "- nondeterminism (two identical calls differ; reported, not judged): "
            + ", ".join(f"{k} max|diff| {v:.1e}" for k, v in r.nondeterminism.items())
        )
    lines += ["", "## Arrays (the worst configuration of each; relative error = max|a - ref| / max|ref|)", ""]
    lines.append(r.table())
    if r.layers:
        lines += [
            "",
            "## By layer and direction",
            "",
            "Each layer and direction's parameters, rows of h_n (c_n) and of h0.grad (c0.grad) (row "
            "l*dirs + d), and, for the top layer's two directions, its half of out; the relative error "
            "is over the part, against max|ref| of its whole array.",
            "",
            "| layer, direction | part | rel. error | verdict |",
            "| --- | --- | --- | --- |",
        ]
        for s in r.layers:
            lines += [
                f"| {s.where} | {part_words(name)} | {rel:.2e} | {'ok' if ok else 'WRONG'} |"
                for name, rel, ok in s.parts
            ]
    if loc is not None:
        lines += ["", "## Where", ""]
        if loc.sentence:
            lines += [loc.sentence, ""]
        lines.append(
            f"On configuration #{loc.config} ({', '.join(f'{k} = {v}' for k, v in loc.sizes.items())})."
        )
        if loc.lags:
            lines += [
                "",
                "Lag profile: the upstream gradient at one step t only; max|dE_t/dx_k| by the lag t - k"
                + (" (a negative lag: k > t, reached through the reverse direction)." if loc.lags[0].lag < 0
                   else "."),
                "",
                "| lag | reference | module | error | agrees |",
                "| --- | --- | --- | --- | --- |",
            ]
            lines += [
                f"| {p.lag} | {p.ref:.3e} | {p.module:.3e} | {p.err:.1e} | {'yes' if p.ok else 'NO'} |"
                for p in loc.lags
            ]
        if plot:
            lines += ["", f"![lag profile]({plot})"]
    lines += [
        "",
        "## Configurations",
        "",
        "How each was called: the module's mode; h0 given, or m(x) (against a zero initial state); "
        "whether x requires grad (else dx is not compared); a fresh instance, or one first called with "
        "other parameters, which were then changed in place.",
        "",
        "| # | D | H | T | B | bias | mode | h0 | x requires grad | instance | lengths | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, c in enumerate(r.configs):
        how = c["call"]
        h0 = "given" if how["h0"] else "m(x)"
        instance = "reused" if how["reused"] else "fresh"
        status = "declined by the factory" if c.get("declined") else ("large" if c.get("large") else "")
        lengths = "all T" if c.get("lengths") is None else ", ".join(map(str, c["lengths"]))
        lines.append(
            f"| {i} | {c['D']} | {c['H']} | {c['T']} | {c['B']} | {c['bias']} | {how['mode']} | {h0} | "
            f"{'yes' if how['x_grad'] else 'no'} | {instance} | {lengths} | {status} |"
        )
    return "\n".join(lines) + "\n"


def draw_lag_profile(r: ModuleCheckResult, path: Path) -> None:
    """The lag profile of the module against the reference (log scale), wrong lags marked."""
    plt = pyplot()
    loc = r.localization
    lags = [p.lag for p in loc.lags]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    series = [[p.ref for p in loc.lags], [p.module for p in loc.lags], [p.err for p in loc.lags]]
    positive = [v for ser in series for v in ser if math.isfinite(v) and v > 0]
    floor = 1e-3 * min(positive) if positive else 1e-300  # zeros are drawn here (a log scale has no 0)

    def shown(values: list[float]) -> list[float]:
        return [max(v, floor) if math.isfinite(v) else float("nan") for v in values]

    ax.semilogy(lags, shown(series[0]), "o-", label="reference (float64)")
    ax.semilogy(lags, shown(series[1]), "s--", label=f"module ({r.dtype})")
    ax.semilogy(lags, shown(series[2]), ":", color="gray", label="max|module - reference|")
    bad = [p for p in loc.lags if not p.ok]
    if bad:
        ax.semilogy([p.lag for p in bad], shown([p.ref for p in bad]), "rx", ms=10, label="disagrees")
    ax.axhline(floor, color="lightgray", lw=0.8)
    ax.text(lags[-1], floor, "0", va="bottom", ha="right", fontsize=8, color="gray")
    ax.set_xlabel("lag t - k" + (" (negative: k > t, the reverse direction)" if lags and lags[0] < 0 else ""))
    ax.set_ylabel("max |dE_t / dx_k|")
    ax.set_title(f"{r.factory}: {notation('x')} by lag ({r.verdict})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def write_module_report(r: ModuleCheckResult, directory: str | Path, *, plots: bool = True) -> list[str]:
    """Write the files into directory (created); the names written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plot = None
    if plots and r.localization is not None and r.localization.lags:
        try:
            tmp = out / f".lag_profile.png.tmp-{os.getpid()}"
            draw_lag_profile(r, tmp)
            os.replace(tmp, out / "lag_profile.png")
            plot = "lag_profile.png"
        except PlotsUnavailable:
            plot = None
    if plot is None and (out / "lag_profile.png").is_file():
        (out / "lag_profile.png").unlink()
    _replace(out / "report.json", (json.dumps(r.to_json(), indent=2) + "\n").encode())
    written.append("report.json")
    _replace(out / "report.md", markdown(r, plot).encode())
    written.append("report.md")
    if plot:
        written.append(plot)
    return written
