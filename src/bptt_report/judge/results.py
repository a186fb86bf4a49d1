"""The result objects of a gradient check, and their JSON-ready form. numpy only.

CheckResult            the whole run: .ok, .failures, .summary(), .assert_ok(), .to_dict()
  ConfigCheck          one configuration against one reference (oracle, nn.RNN, finite differences)
    ArrayCheck         one array (loss, U, W, V, b, c, ds0, dxs): worst element, error, tolerance
  Localization         where a disagreement sits: fields, smallest failing T and configuration, lag
    LagStep            the comparison at one truncation window tau
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from manual_bptt.problems import RNNConfig

from ..plan.sweep import SweepSize, config_dict, describe_config, split_examples
from ..targets.contract import ACTIVATIONS, FORMS, FULL_SUPPORT, OPTIONS, Capabilities
from .compare import FIELDS, ArrayCheck
from .coverage import MIN_CHECKED, cell_prefix, features_of, required_coverage

#: Version of the report.json layout (see report.schema.json).
SCHEMA_VERSION = "3.1"
#: The kinds of check, in report order, with their human names.
KINDS: dict[str, str] = {
    "probe": "capability probes (tiny configurations, before the sweep)",
    "oracle": "PyTorch autograd oracle (reference.bptt_cell)",
    "torch_rnn": "the native torch module (nn.RNN / nn.GRU / nn.LSTM) + nn.Linear + F.cross_entropy",
    "finite_differences": "central finite differences of the target's own loss",
    "rtrl": "manual_bptt.rtrl (forward mode) against the oracle (thorough profile)",
    "decompose": "manual_bptt.decompose's explicit sum over (t, k) against the oracle (thorough profile)",
}
#: Statuses of a ConfigCheck.
STATUSES = ("pass", "fail", "unsupported", "error")
@dataclass(frozen=True)
class ConfigCheck:
    """One configuration checked against one reference.

    Attributes:
        id: index of the configuration in the sweep (finite-difference configurations follow
            the oracle ones).
        kind: "oracle", "torch_rnn" or "finite_differences".
        config: the RNNConfig (arrays: manual_bptt.problems.make_problem(config)).
        status: "pass"; "fail" (the target disagrees, raised, or returned something unreadable);
            "unsupported" (the target does not accept an option of this configuration);
            "error" (the reference itself could not run: a problem of this tool).
        arrays: the compared arrays (empty unless the target returned a result).
        message: why it failed or is unsupported; "" when it passed.
        unsupported: the keywords the target does not accept.
        seconds: wall time of the check.
        traceback: the target's traceback when it raised, else "".
        scale: when every failing array is one constant multiple of the expected one, that
            factor's name ("1/B", "3/2"; judge.checks.constant_scale), else "".
        output: a failing check's: the last of what the target printed during its call
            (targets.replies.printed), else "".
    """

    id: int
    kind: str
    config: RNNConfig
    status: str
    arrays: tuple[ArrayCheck, ...] = ()
    message: str = ""
    unsupported: tuple[str, ...] = ()
    seconds: float = 0.0
    traceback: str = ""
    scale: str = ""
    output: str = ""

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the arrays that disagree, worst relative error first."""
        bad = sorted((a for a in self.arrays if not a.passed), key=lambda a: -a.rel_error)
        return tuple(a.name for a in bad)

    @property
    def worst(self) -> ArrayCheck | None:
        """The failing array with the largest relative error (None when none fails)."""
        bad = [a for a in self.arrays if not a.passed]
        return max(bad, key=lambda a: a.rel_error) if bad else None

    def size_key(self) -> tuple[int, ...]:
        """Orders configurations from small to large (for choosing what to localize)."""
        c = self.config
        return (c.T, c.B or 1, c.H, c.D, c.K)


@dataclass(frozen=True)
class WorstArray:
    """The worst array of a field over many checks (CheckResult.worst_arrays).

    Attributes:
        array: its ArrayCheck (the largest relative error).  check_id: its check.
        checks: the checks of the field.  failed: how many of them it failed in.
    """

    array: ArrayCheck
    check_id: int
    checks: int
    failed: int


@dataclass(frozen=True)
class LagStep:
    """The target with truncate=tau against the oracle's truncated gradient, tau = lag window.

    Attributes:
        tau: the window: each E_t keeps the terms t - tau <= k <= t.
        rel_errors: field -> relative error at this tau (recurrent fields: U, W, b, ds0, dxs).
        failing: the fields that disagree at this tau.
        lag_term_norm: norm of the oracle's lag-tau terms of the localized field, i.e.
            ||G(tau) - G(tau - 1)|| with G(tau) the oracle's gradient truncated at tau
            (G(-1) = 0): how much the terms at lag exactly tau weigh.
    """

    tau: int
    rel_errors: dict[str, float]
    failing: tuple[str, ...]
    lag_term_norm: float


@dataclass(frozen=True)
class Localization:
    """Where one disagreement sits.

    Attributes:
        check: the failing ConfigCheck that was localized.
        fields: the disagreeing arrays, worst first.  worst: the worst of them.
        float32: the errors look like (or the arrays are) single precision.
        where: "immediate" (lag 0 terms), "recurrence" (terms at lag >= 1), "output layer"
            (only V, c), "forward pass" (the loss itself), "precision" (float32 rounding
            everywhere), or "undetermined".
        first_lag: the smallest tau at which the target's truncated gradient disagrees with
            the oracle's, when the target supports truncate; else None.
        lag_method: "truncate", "sequence length", or "none".
        field: the recurrent field the lag analysis follows (None when not applicable).
        lag_steps: the scan over tau = 0, 1, ... (empty when the target lacks truncate).
        smallest_T: the shortest prefix of the failing sequence on which it already disagrees.
        shrunk: the smallest failing configuration found by greedy shrinking, and its check.
        shrink_evaluations: how many candidate configurations the shrinker ran.
        verdict: one paragraph, for people.
        explanation: what the "where" class means here, in words.
    """

    check: ConfigCheck
    fields: tuple[str, ...]
    worst: ArrayCheck
    float32: bool
    where: str
    first_lag: int | None
    lag_method: str
    field: str | None
    lag_steps: tuple[LagStep, ...]
    smallest_T: int | None
    shrunk: ConfigCheck | None
    shrink_evaluations: int
    verdict: str
    explanation: str = ""

    @property
    def replay_config(self) -> RNNConfig:
        """The configuration to reproduce it on: the shrunk one when shrinking found one."""
        return self.shrunk.config if self.shrunk is not None else self.check.config


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`bptt_report.check`.

    Attributes:
        target: "module:function" (or a description of the callable).
        seed: the sweep's seed.  size: the sweep's ranges and counts.  jobs: worker processes.
        checks: every ConfigCheck, by id then kind.
        localizations: the localized disagreements (at most ``max_localized``).
        environment: versions of python, numpy, torch, ... and the platform.
        seconds: wall time of the sweep and the localization.
        capabilities: what the target supports (declared or probed) for the Elman cell (the
            first requested cell when it is not requested); the sweep is drawn inside it.
        notes: what else happened (e.g. the sweep stopped after the target ended its workers).
        timeout: the per-configuration timeout, seconds.
        cell_capabilities: the capabilities of every requested cell, in the order rnn, gru,
            lstm (empty: just ``capabilities``). A cell the target does not support has no
            input form, and its ``unsupported`` says why.
    """

    target: str
    seed: int
    size: SweepSize
    jobs: int
    checks: tuple[ConfigCheck, ...]
    localizations: tuple[Localization, ...]
    environment: dict[str, str]
    seconds: float
    capabilities: Capabilities = FULL_SUPPORT
    notes: tuple[str, ...] = ()
    timeout: float = 60.0
    cell_capabilities: tuple[Capabilities, ...] = ()

    @property
    def all_capabilities(self) -> tuple[Capabilities, ...]:
        """The capabilities of each requested cell."""
        return self.cell_capabilities or (self.capabilities,)

    @property
    def cells(self) -> tuple[str, ...]:
        """The requested cells."""
        return tuple(c.cell for c in self.all_capabilities)

    @property
    def supported_cells(self) -> tuple[str, ...]:
        """The requested cells that the target supports (so that the sweep checks them)."""
        return tuple(c.cell for c in self.all_capabilities if c.checkable)

    def examples_by_cell(self) -> dict[str, int]:
        """cell -> its share of the sweep's oracle configurations (sweep.split_examples)."""
        return split_examples(self.size.examples, self.supported_cells)

    @property
    def checked(self) -> tuple[ConfigCheck, ...]:
        """The oracle checks in which the target's result was really compared (pass or fail
        with arrays), or in which it raised or misbehaved: everything but unsupported and errors."""
        return tuple(c for c in self.checks if c.kind == "oracle" and c.status in ("pass", "fail"))

    def checked_by_cell(self) -> dict[str, int]:
        """cell -> the number of checked oracle configurations (every requested cell)."""
        n = Counter(c.config.cell for c in self.checked)
        return {cell: n[cell] for cell in self.cells}

    def coverage(self) -> dict[str, tuple[int, int]]:
        """feature -> (checked oracle configurations exercising it, required for PASS), for
        every supported cell."""
        share = self.examples_by_cell()
        need: dict[str, int] = {}
        for caps in self.all_capabilities:
            if caps.checkable:
                need.update(required_coverage(caps, share[caps.cell]))
        got: Counter[str] = Counter()
        for c in self.checked:
            got.update(features_of(c.config))
        return {f: (got[f], n) for f, n in need.items()}

    def shortfalls(self) -> list[str]:
        """Why what was checked is not enough for PASS (empty when it is): the minimum applies
        to each supported cell; a cell the target does not support is listed apart (see
        unsupported_features), unless it supports none."""
        out: list[str] = []
        every = self.all_capabilities
        if not self.supported_cells:
            if len(every) > 1:
                out.append(
                    "nothing could be checked: the target supports none of the cells "
                    + ", ".join(c.cell for c in every)
                )
            else:
                caps = every[0]
                if not caps.forms or caps.cell in caps.unsupported:
                    missing = "no input form"
                elif not caps.activations and caps.cell == "rnn":
                    missing = "no activation"
                else:
                    missing = "no float64"
                out.append(f"nothing could be checked: the target supports {missing}")
            least = min(self.size.examples, MIN_CHECKED)
            n = len(self.checked)
            if n < least:
                out.append(f"{n} configurations checked against the oracle, at least {least} needed")
            return out
        checked = self.checked_by_cell()
        for cell, share in self.examples_by_cell().items():
            least = min(share, MIN_CHECKED)
            if checked[cell] < least:
                out.append(
                    f"{cell_prefix(cell)}{checked[cell]} configurations checked against the oracle, "
                    f"at least {least} needed"
                )
        for feature, (got, need) in self.coverage().items():
            if got < need:
                out.append(f"{feature}: checked {got} time(s), at least {need} needed")
        return out

    def required_configurations(self) -> int:
        """The checked oracle configurations PASS needs in all (the sum over supported cells)."""
        share = self.examples_by_cell()
        return sum(min(n, MIN_CHECKED) for n in share.values()) or min(self.size.examples, MIN_CHECKED)

    @property
    def verdict(self) -> str:
        """ "FAIL" (anything disagrees, raised or misbehaved), else "INSUFFICIENT" (too little
        was checked: see shortfalls), else "PASS"."""
        if self.failures:
            return "FAIL"
        return "INSUFFICIENT" if self.shortfalls() else "PASS"

    @property
    def ok(self) -> bool:
        """True when the verdict is PASS."""
        return self.verdict == "PASS"

    def unsupported_features(self) -> dict[str, list[str]]:
        """why -> the features the target does not support for that reason (a gated cell's
        prefixed, "gru: mask"; a cell it does not support at all by its name, "gru"); reasons
        that differ only in shapes are one (finding_key), said as the first of them."""
        out: dict[str, list[str]] = {}
        said: dict[str, str] = {}
        for caps in self.all_capabilities:
            for feature, why in caps.unsupported.items():
                name = feature if feature in self.cells else cell_prefix(caps.cell) + feature
                first = said.setdefault(finding_key(why), why)
                out.setdefault(first, []).append(name)
        return out

    def checked_text(self) -> str:
        """What was checked, and what not, in a few words: "checked rnn (tokens (T,); tanh; s0;
        no bias); not checked: tokens (B, T), ..., gru, lstm" (the verdict line's middle)."""
        groups: dict[str, list[str]] = {}
        for caps in self.all_capabilities:
            if caps.checkable:
                groups.setdefault(_supported_words(caps), []).append(caps.cell)
        parts = [f"{' and '.join(cells)} ({words})" for words, cells in groups.items()]
        text = "checked " + ", ".join(parts) if parts else "checked nothing"
        missing = [name for names in self.unsupported_features().values() for name in names]
        return text + (f"; not checked: {', '.join(missing)}" if missing else "")

    def constant_scale(self) -> str:
        """The words for failures in which every failing array is one constant multiple of the
        expected one (ConfigCheck.scale), when every failing comparison with the oracle is such
        a failure; else ""."""
        failing = [c for c in self.failures if c.kind == "oracle" and c.arrays]
        if not failing or any(not c.scale for c in failing):
            return ""
        names = sorted({c.scale for c in failing}, key=[c.scale for c in failing].index)
        n = len(failing)
        each = f"in each of the {n} failing oracle checks" if n > 1 else "in the failing oracle check"
        every = f"{each} every failing array is the expected "
        if names == ["1/B"]:
            return (f"{every}one times exactly 1/B, B the batch size of the check: the target divides by the "
                    "batch size (a mean over the batch) where the checker's loss sums over it")  # fmt: skip
        if names == ["1/T"]:
            return (f"{every}one times exactly 1/T, T the length of the sequence: the target divides by it "
                    "(a mean over time)")  # fmt: skip
        every += "one times"
        if len(names) == 1:
            return f"{every} the same constant factor, {names[0]}"
        return f"{every} a constant factor: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"

    def findings(self, checks: tuple[ConfigCheck, ...] | None = None) -> list[tuple[ConfigCheck, int]]:
        """The failing checks (or ``checks``) as distinct findings: (the first check of each,
        how many checks say the same), findings that differ only in shapes or configuration
        numbers being one (finding_key), in the order of their first check."""
        groups: dict[str, list[ConfigCheck]] = {}
        for c in self.failures if checks is None else checks:
            groups.setdefault(finding_key(c.message), []).append(c)
        return [(cs[0], len(cs)) for cs in groups.values()]

    def tracebacks(self) -> list[tuple[str, ConfigCheck]]:
        """The first check of each kind of exception the target raised: (its type, the check)."""
        seen: dict[str, ConfigCheck] = {}
        for c in self.checks:
            if c.traceback:
                key = c.message.split(" during ")[0].split(":")[0]  # e.g. "the target raised ValueError"
                seen.setdefault(key, c)
        return list(seen.items())

    @property
    def failures(self) -> tuple[ConfigCheck, ...]:
        """The checks with status "fail" or "error"."""
        return tuple(c for c in self.checks if c.status in ("fail", "error"))

    @property
    def unsupported(self) -> tuple[ConfigCheck, ...]:
        """The checks skipped because the target lacks an option."""
        return tuple(c for c in self.checks if c.status == "unsupported")

    @property
    def float32_suspected(self) -> bool:
        """Whether the failures look like single-precision arithmetic (see compare.looks_like_float32)."""
        flagged = sum(c.message.startswith("float32") for c in self.failures)
        return any(loc.float32 for loc in self.localizations) or (
            flagged > 0 and 2 * flagged >= len(self.failures)
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """kind -> status -> number of checks (every kind and status present, zeros included)."""
        out = {k: dict.fromkeys(STATUSES, 0) for k in KINDS}
        for c in self.checks:
            out[c.kind][c.status] += 1
        return out

    def worst_arrays(self, kind: str = "oracle", cell: str | None = None) -> dict[str, WorstArray]:
        """field -> its worst array over the checks of ``kind`` (and of ``cell``, when given):
        the ArrayCheck with the largest relative error, the id of its check, the number of
        checks of the field and how many of them failed it."""
        worst: dict[str, tuple[ArrayCheck, int]] = {}
        seen: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for c in self.checks:
            if c.kind != kind or (cell is not None and c.config.cell != cell):
                continue
            for a in c.arrays:
                seen[a.name] += 1
                failed[a.name] += not a.passed
                if a.name not in worst or a.rel_error > worst[a.name][0].rel_error:
                    worst[a.name] = (a, c.id)
        return {f: WorstArray(*worst[f], seen[f], failed[f]) for f in FIELDS if f in worst}

    def worst_errors(
        self, kind: str = "oracle", cell: str | None = None
    ) -> dict[str, tuple[float, int, int]]:
        """field -> (worst relative error, id of that check, number of checks of the field), over
        the checks of ``kind`` (and of ``cell``, when given)."""
        worst = self.worst_arrays(kind, cell)
        return {f: (w.array.rel_error, w.check_id, w.checks) for f, w in worst.items()}

    def unsupported_options(self) -> dict[str, int]:
        """keyword -> number of checks skipped because the target does not accept it."""
        n: Counter[str] = Counter()
        for c in self.unsupported:
            n.update(c.unsupported)
        return dict(sorted(n.items()))

    def summary(self) -> str:
        """A few lines: the verdict and what was checked, counts per kind, then each localized
        disagreement and the other findings (merged)."""
        n, n_bad, n_uns = len(self.checks), len(self.failures), len(self.unsupported)
        checked = len(self.checked)
        skipped = f", {n_uns} skipped as unsupported" if n_uns else ""
        lines = [
            f"{self.verdict}: {self.target}: {self.checked_text()}. {checked} of {self.size.examples} "
            f"configurations checked against the oracle; {n - n_bad - n_uns} of {n} checks agree, {n_bad} "
            f"disagree or fail{skipped} (seed {self.seed})"
        ]
        for kind, by_status in self.counts().items():
            total = sum(by_status.values())
            if kind == "probe" and total:
                lines.append(f"  {KINDS[kind]}: the target misbehaved in {by_status['fail']}")
            elif total:
                lines.append(
                    f"  {KINDS[kind]}: {by_status['pass']} agree, {by_status['fail'] + by_status['error']} "
                    f"disagree, {by_status['unsupported']} unsupported"
                )
        if len(self.cells) > 1 or self.cells != ("rnn",):
            per = self.checked_by_cell()
            said = [f"{c} {per[c]} checked" if c in self.supported_cells else f"{c} unsupported"
                    for c in self.cells]  # fmt: skip
            lines.append("  cells: " + ", ".join(said))
        for why, feats in self.unsupported_features().items():
            lines.append(f"  not supported, so not checked: {', '.join(feats)} ({why})")
        if self.unsupported:
            opts = ", ".join(f"{k} ({v})" for k, v in self.unsupported_options().items())
            lines.append(f"  unsupported in the sweep (not failures, not counted as checked): {opts}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.verdict == "INSUFFICIENT":
            lines.append("  INSUFFICIENT: too little was checked for PASS: " + "; ".join(self.shortfalls()))
        scaled = self.constant_scale()
        if scaled:
            lines.append("  constant scale: " + scaled)
        if self.float32_suspected:
            lines.append(
                "  float32: the disagreements are float32 rounding, checked at float64 tolerance "
                "(rtol 1e-10); a float32 implementation cannot pass this check."
            )
        for loc in self.localizations:
            lines.append("  " + loc.verdict)
        localized = {loc.check.id for loc in self.localizations}
        rest = tuple(c for c in self.failures if c.id not in localized)
        if rest:
            found = self.findings(rest)
            lines.append(
                f"  ({len(rest)} {'more ' if self.localizations else ''}failing checks, "
                f"{len(found)} distinct finding{'s' if len(found) > 1 else ''}"
                + (f"; the first {SHOWN_FINDINGS}" if len(found) > SHOWN_FINDINGS else "") + ":)"
            )
            for first, count in found[:SHOWN_FINDINGS]:
                times = f" (and {count - 1} more like it)" if count > 1 else ""
                lines.append(f"    #{first.id} {first.kind}{times}: {first.message}")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise AssertionError with the summary (and the localization) unless the verdict is PASS
        (FAIL and INSUFFICIENT both raise)."""
        if not self.ok:
            raise AssertionError(self.summary())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content of report.json (see report.schema.json), without the plots."""
        by_status = self.counts()
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "ok": self.ok,
            "verdict": self.verdict,
            "capabilities": self.capabilities.to_dict(),
            "cells": {
                caps.cell: {
                    "supported": caps.checkable,
                    "capabilities": caps.to_dict(),
                    "planned_configurations": self.examples_by_cell().get(caps.cell, 0),
                    "checked_configurations": self.checked_by_cell()[caps.cell],
                    "worst_rel_error": {
                        kind: {
                            f: {"rel_error": json_number(e), "check_id": i, "checks": n}
                            for f, (e, i, n) in self.worst_errors(kind, caps.cell).items()
                        }
                        for kind in ("oracle", "torch_rnn", "finite_differences")
                    },
                }
                for caps in self.all_capabilities
            },
            "coverage": {
                "checked_configurations": len(self.checked),
                "required_configurations": self.required_configurations(),
                "features": {f: {"checked": g, "required": r} for f, (g, r) in self.coverage().items()},
                "shortfalls": self.shortfalls(),
            },
            "notes": list(self.notes),
            "tracebacks": [
                {"exception": k, "check_id": c.id, "kind": c.kind, "traceback": c.traceback}
                for k, c in self.tracebacks()
            ],
            "environment": dict(self.environment),
            "settings": {
                "seed": self.seed,
                "jobs": self.jobs,
                "timeout": self.timeout,
                **dataclasses.asdict(self.size),
                "tolerance": _tolerances(),
            },
            "summary": {
                "checks": len(self.checks),
                "passed": sum(v["pass"] for v in by_status.values()),
                "failed": sum(v["fail"] + v["error"] for v in by_status.values()),
                "unsupported": sum(v["unsupported"] for v in by_status.values()),
                "by_kind": by_status,
                "unsupported_options": self.unsupported_options(),
                "worst_rel_error": {
                    kind: {
                        f: {"rel_error": json_number(e), "check_id": i, "checks": n}
                        for f, (e, i, n) in self.worst_errors(kind).items()
                    }
                    for kind in KINDS
                },
                "float32_suspected": self.float32_suspected,
                "seconds": round(self.seconds, 3),
            },
            "failures": [localization_dict(loc) for loc in self.localizations],
            "checks": [check_dict(c) for c in self.checks],
        }


#: The distinct findings the summary lists (report.md lists more; report.json every check).
SHOWN_FINDINGS = 3
_CONFIG_NUMBER = re.compile(r"#\d+")
_SHAPE = re.compile(r"\((?:\d+(?:, ?\d+)*,?)?\)")


_DISAGREES = re.compile(r"^(.*?disagrees with .+? in )([^:]+):")


def finding_key(message: str) -> str:
    """What two findings have in common when they differ only in shapes or configuration
    numbers: ``message`` with every "#12" and every "(2, 3)" (an integer tuple) left out; a
    disagreement is the reference and the set of arrays ("disagrees with the oracle in U, W"),
    whatever its numbers."""
    m = _DISAGREES.match(message)
    if m:
        return m.group(1) + ", ".join(sorted(n.strip() for n in m.group(2).split(",")))
    return _SHAPE.sub("(...)", _CONFIG_NUMBER.sub("#", message))


def _supported_words(caps: Capabilities) -> str:
    """What a cell was checked on: its input forms, activations, options, biases."""
    every = len(caps.forms) == len(FORMS)
    parts = ["every input form" if every else ", ".join(caps.forms)]
    if caps.cell == "rnn":
        every_activation = len(caps.activations) == len(ACTIVATIONS)
        parts.append("every activation" if every_activation else ", ".join(caps.activations))
    if len(caps.options) == len(OPTIONS):
        parts.append("every option")
    else:
        parts.append(", ".join(caps.options) if caps.options else "no option")
    parts.append("with and without biases" if caps.bias else "no bias")
    return "; ".join(parts)


def _tolerances() -> dict[str, Any]:
    from .compare import ATOL, FD_ATOL, FD_RTOL, RTOL

    return {
        "oracle": {"rtol": RTOL, "atol": ATOL, "rule": "max|a - r| <= rtol * max|r| + atol"},
        "finite_differences": {
            "rtol": FD_RTOL,
            "atol": FD_ATOL,
            "rule": "|a - n| <= atol + rtol * max(|a|, |n|) elementwise",
        },
    }


def json_number(x: float | None) -> float | None:
    """A number of report.json: a finite float, or None (JSON has no inf or NaN: null)."""
    return None if x is None or not math.isfinite(x) else float(x)


def json_number_text(x: float | None) -> Any:
    """A number of check-module's report.json: finite as it is; inf, -inf and NaN as the strings
    "inf", "-inf", "nan" (where report.json writes null); None as null."""
    return None if x is None else (x if math.isfinite(x) else str(x))


def array_dict(a: ArrayCheck) -> dict[str, Any]:
    """One ArrayCheck as JSON (non-finite numbers become null)."""
    return {
        "name": a.name,
        "passed": a.passed,
        "rel_error": json_number(a.rel_error),
        "abs_error": json_number(a.abs_error),
        "tolerance": json_number(a.tolerance),
        "scale": json_number(a.scale),
        "index": None if a.index is None else list(a.index),
        "actual": json_number(a.actual),
        "expected": json_number(a.expected),
        "dtype": a.dtype,
        "note": a.note,
    }


def check_dict(c: ConfigCheck) -> dict[str, Any]:
    """One ConfigCheck as JSON: passing arrays as name -> relative error, failing ones in full."""
    return {
        "id": c.id,
        "kind": c.kind,
        "status": c.status,
        "config": config_dict(c.config),
        "rel_errors": {a.name: json_number(a.rel_error) for a in c.arrays},
        "failed_arrays": [array_dict(a) for a in c.arrays if not a.passed],
        "message": c.message,
        "unsupported": list(c.unsupported),
        "seconds": round(c.seconds, 6),
        "traceback": c.traceback,
        "output": c.output,
    }


def localization_dict(loc: Localization) -> dict[str, Any]:
    """One Localization as JSON."""
    return {
        "check_id": loc.check.id,
        "kind": loc.check.kind,
        "config": config_dict(loc.check.config),
        "config_text": describe_config(loc.check.config),
        "fields": list(loc.fields),
        "worst": array_dict(loc.worst),
        "float32": loc.float32,
        "where": loc.where,
        "first_lag": loc.first_lag,
        "lag_method": loc.lag_method,
        "field": loc.field,
        "lag_steps": [
            {
                "tau": s.tau,
                "rel_errors": {k: json_number(v) for k, v in s.rel_errors.items()},
                "failing": list(s.failing),
                "lag_term_norm": json_number(s.lag_term_norm),
            }
            for s in loc.lag_steps
        ],
        "smallest_T": loc.smallest_T,
        "shrunk_config": None if loc.shrunk is None else config_dict(loc.shrunk.config),
        "shrunk_config_text": None if loc.shrunk is None else describe_config(loc.shrunk.config),
        "shrunk_fields": [] if loc.shrunk is None else list(loc.shrunk.failing),
        "shrunk_worst": None
        if loc.shrunk is None or loc.shrunk.worst is None
        else array_dict(loc.shrunk.worst),
        "shrink_evaluations": loc.shrink_evaluations,
        "verdict": loc.verdict,
        "explanation": loc.explanation,
        "replay_config": config_dict(loc.replay_config),
    }
