"""report.md: the verdict, the summary tables, what the target supports, the cells, the worst
error per array, the localized disagreements with a replay command and snippet, the exceptions,
the coverage, the plots and their sample models, the environment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from manual_bptt.problems import RNNConfig

from ..cells import CELLS, NATIVE
from ..judge.compare import ATOL, FD_ATOL, FD_RTOL, FIELDS, RECURRENT_FIELDS, RTOL, ArrayCheck
from ..judge.coverage import MIN_CHECKED
from ..judge.results import KINDS, CheckResult, Localization
from ..plan.sweep import config_dict, describe_config, form_name
from ..targets.contract import ACTIVATIONS
from .regimes import REGIME_T

#: What the captions of state_grads.png and lag_profile.png say first.
NOT_THE_TARGET = (
    "Not the target's gradients: the reference's sample models (manual_bptt.decompose on fixed models, "
    "the same pictures whatever the target, failing or not), which show how far back each E_t reaches "
    "in each cell."
)
#: The characters of the target's output report.md shows (report.json: the last 64 KiB).
OUTPUT_SHOWN = 4000
#: The distinct findings report.md lists (report.json has every check).
FINDINGS_SHOWN = 10


def _e(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "not comparable"
    return "0" if x == 0 else f"{x:.2e}"


def _error(a: ArrayCheck) -> str:
    """An array's error for a table: its relative error, or against an all-zero reference its
    max |x| (no relative error exists there)."""
    if a.zero_reference and a.abs_error > 0:
        return f"max \\|x\\| = {a.abs_error:.2e} (expected 0)"
    return _e(a.rel_error)


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(sep) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _capabilities_md(result: CheckResult) -> list[str]:
    """Supported features per cell (and how that is known), then the unsupported ones with the reason."""
    rows = []
    several = len(result.cells) > 1
    for caps in result.all_capabilities:
        for what, names in (
            ("input forms", caps.forms),
            ("options", caps.options),
            ("activations", caps.activations),
        ):
            if names:
                cell = [caps.cell] if several else []
                rows.append([*cell, what, ", ".join(f"{n} ({caps.sources.get(n, 'probed')})" for n in names)])
    header = [*(["cell"] if several else []), "supported", "how it is known"]
    out = _table(header, rows, "l" * len(header)) if rows else ["Nothing is supported."]
    unsupported = result.unsupported_features()
    if unsupported:
        out.append("")
    for why, feats in unsupported.items():
        out.append(f"- not supported, so not checked: {', '.join(feats)}: {why}")
    return out


def summary_table(result: CheckResult) -> list[str]:
    """The per-kind summary table (markdown lines)."""
    rows = []
    for kind, by in result.counts().items():
        total = sum(by.values())
        if total:
            rows.append(
                [
                    KINDS[kind],
                    str(total),
                    str(by["pass"]),
                    str(by["fail"] + by["error"]),
                    str(by["unsupported"]),
                ]
            )
    return _table(["check", "configurations", "agree", "disagree", "unsupported"], rows)


def _cells_table(result: CheckResult) -> list[str]:
    """One row per requested cell: supported, configurations checked, and the worst relative
    error over every array against the oracle, the native module and finite differences."""
    planned = result.examples_by_cell()
    checked = result.checked_by_cell()
    rows = []
    for cell in result.cells:
        if cell not in result.supported_cells:
            caps = next(c for c in result.all_capabilities if c.cell == cell)
            why = caps.unsupported.get(cell) or next(iter(caps.unsupported.values()), "")
            rows.append([cell, "no: " + why.replace("|", "\\|"), "0", "-", "-", "-"])
            continue

        def worst(kind: str, cell: str = cell) -> str:
            arrays = [w.array for w in result.worst_arrays(kind, cell).values()]
            return _error(max(arrays, key=lambda a: a.rel_error)) if arrays else "-"

        rows.append([cell, "yes", f"{checked[cell]} of {planned[cell]}", worst("oracle"),
                     f"{worst('torch_rnn')} (nn.{NATIVE[cell]})", worst("finite_differences")])  # fmt: skip
    header = ["cell", "supported", "checked (oracle)", "worst vs oracle", "worst vs native module",
              "worst vs finite diff."]  # fmt: skip
    return _table(header, rows, "llrrrr")


def _worst_table(result: CheckResult) -> list[str]:
    """One row per array: its worst error against each reference, and its verdict, from the
    checks themselves (an array within the tolerance by the absolute term is within it)."""
    rows = []
    fd = result.worst_arrays("finite_differences")
    nn = result.worst_arrays("torch_rnn")
    for f, w in result.worst_arrays("oracle").items():
        failed = w.failed + (nn[f].failed if f in nn else 0) + (fd[f].failed if f in fd else 0)
        status = "ok" if not failed else f"**fails in {failed} check{'s' if failed > 1 else ''}**"
        rows.append(
            [
                f"`{f}`",
                str(w.checks),
                _error(w.array),
                f"#{w.check_id}",
                _error(nn[f].array) if f in nn else "-",
                _error(fd[f].array) if f in fd else "-",
                status,
            ]
        )
    return _table(
        [
            "array",
            "oracle checks",
            "worst rel. error (oracle)",
            "at",
            "worst (nn.RNN / nn.GRU / nn.LSTM)",
            "worst (finite diff.)",
            "within the tolerance",
        ],
        rows,
        "lrrrrrl",
    )


def _truncation_kind(c: RNNConfig) -> str:
    if c.truncate is None:
        return "none"
    if c.truncate >= c.T - 1:
        return ">= T-1 (full)"
    return str(c.truncate) if c.truncate <= 1 else "2..T-2"


def _length_bin(c: RNNConfig) -> str:
    return "1" if c.T == 1 else "2-4" if c.T <= 4 else "5-16" if c.T <= 16 else "17+"


def _coverage(result: CheckResult) -> list[str]:
    """Configurations checked against the oracle, per value of each dimension (markdown lines);
    configurations that were not checked (unsupported, not run) are not counted."""
    configs = [c.config for c in result.checked]
    # (dimension, value of a configuration, the order of the values)
    dims: list[tuple[str, Callable[[RNNConfig], str], tuple[str, ...]]] = [
        ("cell", lambda c: c.cell, CELLS),
        ("input form", form_name, ()),
        ("activation (Elman cell)", lambda c: str(c.activation), ACTIVATIONS),
        ("truncation", _truncation_kind, ("none", "0", "1", "2..T-2", ">= T-1 (full)")),
        ("reduction", lambda c: c.reduction, ("sum", "mean")),
        ("mask", lambda c: "yes" if c.use_mask else "no", ("no", "yes")),
        ("s0", lambda c: str(c.s0_kind), ("None", "shared", "per_row")),
        ("bias", lambda c: "yes" if c.bias else "no", ("no", "yes")),
        ("weight scale (Elman cell: spectral radius of W)", lambda c: f"{c.weight_scale:g}", ()),
        ("T", _length_bin, ("1", "2-4", "5-16", "17+")),
    ]
    rows = []
    for name, key, order in dims:
        counts: dict[str, int] = {}
        for c in configs if not name.startswith("activation") else [c for c in configs if c.cell == "rnn"]:
            counts[key(c)] = counts.get(key(c), 0) + 1
        values = sorted(counts, key=lambda v: (order.index(v) if v in order else len(order), v))
        rows.append([name, ", ".join(f"{v}: {counts[v]}" for v in values)])
    return _table(["dimension", "configurations per value"], rows, "ll")


def _replay_md(target: str, loc: Localization) -> list[str]:
    """How to reproduce a localized failure: the command, and a self-contained Python snippet."""
    cfg = loc.replay_config
    # a field that disagrees on the configuration replayed (the shrunk one may keep fewer)
    fields = loc.shrunk.failing if loc.shrunk is not None and loc.shrunk.failing else loc.fields
    field = next((f for f in fields if f in FIELDS), None)
    if field == "loss":
        show = "print(float(mine.loss), ref.loss)"
    elif field in ("ds0", "dxs"):
        show = f"print(np.max(np.abs(np.asarray(mine.{field}) - ref.{field})))"
    elif field in ("ds0.h", "ds0.c"):
        i = 0 if field == "ds0.h" else 1
        show = f"print(np.max(np.abs(np.asarray(mine.ds0[{i}]) - ref.ds0[{i}])))"
    elif field is not None:
        show = f"print(np.max(np.abs(np.asarray(mine.grads.{field}) - ref.grads.{field})))"
    else:
        show = "print(mine)"
    args = ", ".join(f"{k}={v!r}" for k, v in config_dict(cfg).items())
    return [
        "Reproduce it ("
        + ("the smallest failing configuration" if loc.shrunk is not None else "this configuration")
        + "):",
        "",
        "```",
        f"manual-bptt report --target {target} --replay '{json.dumps(config_dict(cfg))}'",
        "```",
        "",
        "```python",
        "import numpy as np",
        "import reference",
        "from bptt_report.targets.contract import load_target, non_default",
        "from manual_bptt.problems import RNNConfig, make_problem",
        "",
        f'target = load_target("{target}")',
        f"prob = make_problem(RNNConfig({args}))",
        "mine = target(prob.params, prob.xs.copy(), prob.ys.copy(), **non_default(prob.kwargs()))",
        "ref = reference.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs())"
        if cfg.cell == "rnn"
        else f"ref = reference.bptt_cell({cfg.cell!r}, prob.params, prob.xs, prob.ys, **prob.kwargs())",
        show,
        "```",
    ]


def _localization_md(target: str, loc: Localization) -> list[str]:
    c = loc.check
    lines = [
        f"### #{c.id} ({c.kind}): {', '.join(f'`{f}`' for f in loc.fields)}",
        "",
        f"- configuration: {describe_config(c.config)}",
        f"- worst: {loc.worst.describe()}",
        f"- where: **{loc.where}**"
        + (f", first disagreeing lag **{loc.first_lag}**" if loc.first_lag is not None else "")
        + f" (method: {loc.lag_method})",
    ]
    if loc.smallest_T is not None:
        lines.append(f"- smallest failing prefix of this sequence: T = {loc.smallest_T}")
    if loc.shrunk is not None:
        lines.append(
            f"- smallest failing configuration ({loc.shrink_evaluations} shrink runs): "
            f"{describe_config(loc.shrunk.config)}; disagreeing: {', '.join(loc.shrunk.failing)}"
        )
    if loc.explanation:
        lines += ["", loc.explanation[0].upper() + loc.explanation[1:] + "."]
    lines += ["", *_replay_md(target, loc), ""]
    if loc.lag_steps and loc.field is not None:
        f = loc.field
        others = [
            n
            for n in RECURRENT_FIELDS
            if n != f and any(n in s.rel_errors for s in loc.lag_steps)
        ]
        header = [
            "truncate tau",
            f"norm of the oracle's lag-tau terms of {f}",
            f"rel. error {f}",
            *[f"rel. error {n}" for n in others],
            "disagree",
        ]
        rows = [
            [
                str(s.tau),
                _e(s.lag_term_norm),
                _e(s.rel_errors.get(f)),
                *[_e(s.rel_errors.get(n)) for n in others],
                ", ".join(s.failing) or "-",
            ]
            for s in loc.lag_steps
        ]
        lines += [*_table(header, rows, "r" * (len(header) - 1) + "l"), ""]
    return lines


def render_markdown(
    result: CheckResult, regimes: list[dict[str, Any]], plots: list[str], plots_note: str
) -> str:
    """report.md: verdict, summary tables, coverage, localized disagreements, plots, environment."""
    verdict = result.verdict
    n_fail, n_uns = len(result.failures), len(result.unsupported)
    counts = result.counts()
    n_fd = counts["finite_differences"]["pass"] + counts["finite_differences"]["fail"]
    if verdict == "PASS":
        head = f"All {len(result.checks) - n_uns} checks agree."
    elif verdict == "FAIL":
        head = f"**{n_fail} of {len(result.checks)} checks disagree or fail.**"
    else:
        head = "**Nothing disagrees, but too little was checked for PASS.**"
    lines = [
        f"# Gradient check of `{result.target}`: {verdict}",
        "",
        f"{verdict} for what was {result.checked_text()}.",
        "",
        head + f" Seed {result.seed}: {len(result.checked)} of {result.size.examples} planned random "
        f"configurations were checked against the oracle, {n_fd} against finite differences; "
        f"{result.seconds:.1f} s with {result.jobs} worker process(es) for the target "
        f"(timeout {result.timeout:g} s per configuration).",
        "",
        f"Tolerance: `max|a - r| <= {RTOL:g} * max|r| + {ATOL:g}` per array against the oracle and the "
        f"native torch module (float64); `|a - n| <= {FD_ATOL:g} + {FD_RTOL:g} * max(|a|, |n|)` "
        "elementwise against central finite differences, an all-zero reference by the absolute "
        "tolerance alone. NaN or an infinity in the target's output always fails.",
        "",
        "## Summary",
        "",
        *summary_table(result),
        "",
    ]
    if result.float32_suspected:
        lines += [
            "**float32:** the disagreements are float32 rounding, checked at float64 tolerance "
            f"(rtol {RTOL:g}); a float32 implementation cannot pass this check.",
            "",
        ]
    shortfalls = result.shortfalls()
    if shortfalls:
        lines += ["**Not enough for PASS:** " + "; ".join(shortfalls) + ".", ""]
    for note in result.notes:
        lines += [f"**Note:** {note}.", ""]
    lines += ["## What the target supports", "", *_capabilities_md(result), ""]
    if n_uns:
        opts = ", ".join(f"`{k}` ({v} checks)" for k, v in result.unsupported_options().items())
        lines += [f"Unsupported in the sweep, skipped, not failures and not counted as checked: {opts}.", ""]
    lines += ["## Cells", "", *_cells_table(result), ""]
    lines += ["## Worst relative error per array", "", *_worst_table(result), ""]
    if result.localizations:
        lines += ["## Disagreements, localized", ""]
        for loc in result.localizations:
            lines += _localization_md(result.target, loc)
        more = n_fail - len(result.localizations)
        if more > 0:
            lines += [
                f"{more} further failing checks are listed in report.json (`checks`, status `fail`).",
                "",
            ]
        found = result.findings()
        more = f"; the first {FINDINGS_SHOWN}" if len(found) > FINDINGS_SHOWN else ""
        lines += [f"The failing checks, {len(found)} distinct finding{'s' if len(found) > 1 else ''} (the "
                  "same failure at other shapes or configurations counted once, beside its first "
                  f"check){more}:", ""]  # fmt: skip
        rows = [
            [f"#{c.id}", str(count), c.kind, describe_config(c.config), c.message.replace("|", "\\|")]
            for c, count in found[:FINDINGS_SHOWN]
        ]
        lines += [*_table(["first check", "checks", "kind", "configuration", "message"], rows, "lrlll"), ""]
    talker = next((c for c in result.failures if c.output), None)
    if talker is not None:
        text = talker.output[-OUTPUT_SHOWN:]
        long = len(talker.output) > OUTPUT_SHOWN
        cut = f" (its last {OUTPUT_SHOWN} characters; report.json keeps more)" if long else ""
        head = f"During #{talker.id} ({talker.kind}), the first failing check in which it printed{cut}:"
        lines += ["## What the target printed", "", head, "", "```",
                  text.rstrip("\n").replace("```", "` ` `"), "```", ""]  # fmt: skip
    if result.tracebacks():
        lines += ["## Exceptions raised by the target (the first of each kind)", ""]
        for kind, c in result.tracebacks():
            lines += [f"{kind}, first in #{c.id} ({c.kind}): {describe_config(c.config)}", "", "```",
                      c.traceback.rstrip(), "```", ""]  # fmt: skip
    lines += ["## Coverage", "", *_coverage(result), ""]
    need = result.coverage()
    if need:
        rows = [[f, str(g), str(r), "ok" if g >= r else "**short**"] for f, (g, r) in need.items()]
        lines += [
            "Each supported feature, in configurations checked against the oracle, and the minimum "
            f"for PASS (besides at least {MIN_CHECKED} configurations per cell, or all of a cell's share "
            f"when it is smaller: {result.required_configurations()} in all):",
            "",
            *_table(["feature", "checked", "required", ""], rows, "lrrl"),
            "",
        ]
    lines += ["## Plots", ""]
    if plots:
        captions = {
            "errors.png": (
                "Relative error of every compared array against the oracle and the native torch module, "
                "nn.RNN / nn.GRU / nn.LSTM (red: disagreeing); "
                "against finite differences, the elementwise criterion they are judged by, "
                f"max |a - n| / ({FD_ATOL:g} + {FD_RTOL:g} max(|a|, |n|)), which passes below 1."
            ),
            "state_grads.png": (
                f"{NOT_THE_TARGET} ||dE_t/dz_k|| over (t, k), z_k the full state, for each cell's sample "
                "model: the Elman "
                "cell in a vanishing and an exploding regime, the GRU, and the LSTM twice, its h path "
                "||dE_t/dh_k|| and its c path ||dE_t/dc_k|| (the cell state, whose Jacobian in c_(k-1) is "
                "diag(f_k) with no squashing on the way: with forget gates near 1 it keeps long lags alive; "
                "at k = t it is 0, since E_t reads h_t only); "
                "below, divided by ||dE_t/dz_t||. A grey row is an E_t whose softmax is already certain "
                "of the right class, so that ||dE_t/ds_t|| is below 1e-8 of the largest (or exactly 0): "
                "every gradient of that E_t is about 0, and the row is left out so that it does not "
                "stretch the colour scale."
            ),
            "lag_profile.png": (
                f"{NOT_THE_TARGET} Term norm, state Jacobian norm and ||dE_t/dz_(t-L)|| against the lag "
                "L = t - k, one line "
                "per sample model (the LSTM's h and c paths dashed and dotted in the right panel: the c "
                "path is the one that keeps long lags alive in these samples). In the exploding sample "
                "(identity, radius 1.5) ||ds_t/ds_k|| grows like 1.5^L while the terms stay about flat: "
                "the term is dE_t/ds_t · ds_t/ds_k · ∂s_k/∂W, and ∂s_k/∂W is built from the state "
                "s_(k-1), which in this linear model itself grows like 1.5^k. At a fixed t a longer lag "
                "means an earlier, about 1.5^L times smaller state, which cancels the Jacobian's growth, "
                "so the mean term stays about flat instead of shrinking as in the vanishing sample."
            ),
        }
        for p in plots:
            lines += [f"![{p}]({p})", "", captions.get(p, ""), ""]
    else:
        lines += [f"Not drawn: {plots_note}", ""]
    lines += ["Sample models of the plots above (manual_bptt.decompose, not the target):", ""]
    rows = []
    half = REGIME_T // 2
    for reg in regimes:
        tw = reg["term_W_mean"]
        scale = (f"radius of W {reg['spectral_radius']:g}" if reg["cell"] == "rnn"
                 else f"init scale {reg['weight_scale']:g}")  # fmt: skip
        paths = [("z", reg["dE_ds_lag_mean"])]
        if reg["cell"] == "lstm":
            paths += [("h", reg["dE_dh_lag_mean"]), ("c", reg["dE_dc_lag_mean"])]
        reach = ", ".join(f"{n}: {_e(m[half])}" for n, m in paths)
        rows.append(
            [reg["name"], reg["cell"], reg["activation"] or "-", scale, _e(tw[0]), _e(tw[half]),
             _e(reg["jac_spec_mean"][half]), reach]
        )  # fmt: skip
    lines += [
        *_table(
            [
                "sample",
                "cell",
                "f",
                "scale",
                "term norm, lag 0",
                f"term norm, lag {half}",
                f"mean spectral norm of dz_t/dz_(t-{half})",
                f"mean ||dE_t/d·_(t-{half})||",
            ],
            rows,
            "llllrrrl",
        ),
        "",
    ]
    lines += ["## Environment", ""]
    lines += [*_table(["package", "version"], [[k, v] for k, v in result.environment.items()], "ll"), ""]
    return "\n".join(lines)
