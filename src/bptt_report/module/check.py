"""``check_module``: a PyTorch recurrent layer (anyone's) against the hand-written float64 reference.

    import bptt_report
    r = bptt_report.check_module("mypkg.layers:MyLSTM", cell="lstm", dtype="float32")
    r.assert_ok()                    # or: assert r.ok, r.summary()

The module is built by ``FACTORY(input_size=D, hidden_size=H, bias=..., batch_first=True)``
(``torch.nn:LSTM`` itself is a valid factory; the contract: bptt_report.module.contract), of any
shape torch's layers have (num_layers, bidirectional, proj_size, read from its attributes or its
parameter names), and runs in worker processes (bptt_report.module.worker, through
bptt_report.run.pool): an exit, crash,
timeout or a modified input is a finding about the module, never a crash of the checker; a
factory or module that cannot take the contract is a UsageError; sizes the factory declines
with NotImplementedError are redrawn once, then reported as not checked. For each random
configuration (bptt_report.module.cases: D, H, T, B all different, one or two of them large;
random, nonzero and different b_ih and b_hh; random h0 (and c0); random upstream gradients on
out, h_n (and c_n); called in train() or eval() mode, with h0 or as m(x), with x requiring grad
or not, on a fresh or a reused instance; with ``lengths``, batches of variable lengths, fed as
the module takes them) every value is rounded to the module's dtype first, and the reference,
``manual_bptt.backward`` on a ``manual_bptt.StackParams`` in float64, is computed from the
rounded values. Compared: out, h_n (c_n), then the gradients of every parameter by its torch name
(weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..., weight_hh_l1_reverse, weight_hr_l0),
x, h0 (c0) (dx only where x requires grad, dh0 and dc0 only where h0 is given). The forward is
judged first: a wrong forward is reported as such. PASS needs every way of calling the plan
holds checked at least once (else INSUFFICIENT). A stack's arrays are also reported by layer and
direction (bptt_report.module.layers).

The verdict (bptt_report.judge.compare.compare_module_array), per array and configuration, with
err = max|a - ref| and scale = max|ref|:
    float64      err <= RTOL * scale + ATOL (the library's tolerance; NaN fails);
    lower        err <= FACTOR * max(base, UNIT[dtype] * scale) + ATOL, where base is the error,
                 measured in the same run on the same rounded values, of torch's own
                 nn.RNN / nn.GRU / nn.LSTM at the same dtype and device (the baseline), and
                 UNIT the dtype's unit roundoff (a floor for a baseline that happens to be exact).
``ratio`` is err / max(base, UNIT * scale) (the number compared with FACTOR).

Localization of a failure (bptt_report.module.localize) and the files (bptt_report.module.report).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manual_bptt.checking import ATOL, RTOL
from manual_bptt.errors import integer_arg

from ..cells import CELLS, NATIVE
from ..errors import UsageError
from ..judge.compare import FACTOR, UNIT, ArrayCheck
from ..judge.results import json_number_text
from ..run.pool import DEFAULT_TIMEOUT
from ..targets.contract import spec_of
from .cases import CALL_WORDS, FORWARD, notation, plan, redrawn
from .contract import Shape, case_shape, parse_name, where_words
from .layers import grouped, part_words, parts
from .localize import localize as locate
from .localize import profile_only
from .session import Evaluation, Session
from .worker import call_of

__all__ = [
    "MAX_MODULE_EXAMPLES", "MODULE_DTYPES", "MODULE_EXAMPLES", "MODULE_QUICK_EXAMPLES", "ArraySummary",
    "LayerSummary", "ModuleCheckResult", "check_module",
]  # fmt: skip

#: The dtypes a module may be checked at (those with a unit roundoff).
MODULE_DTYPES: tuple[str, ...] = tuple(UNIT)
#: Configurations by default, with quick=True, and at most.
MODULE_EXAMPLES, MODULE_QUICK_EXAMPLES, MAX_MODULE_EXAMPLES = 12, 4, 1000


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------
@dataclass
class ArraySummary:
    """The worst configuration of one array: relative errors of the module and the baseline."""

    name: str
    rel: float
    base_rel: float | None
    ratio: float
    ok: bool
    worst_config: int


@dataclass
class LayerSummary:
    """One layer and direction of a stack: its parts (parameters, state rows, out's half), each
    with its worst relative error and whether it agrees in every configuration."""

    layer: int
    direction: int
    where: str
    parts: list[tuple[str, float, bool]]

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.parts)

    def wrong(self) -> list[str]:
        return [name for name, _, ok in self.parts if not ok]


@dataclass
class ModuleCheckResult:
    """What check_module found. ``verdict`` is PASS, FAIL or INSUFFICIENT; ``ok`` is PASS."""

    factory: str
    cell: str
    dtype: str
    device: str
    activation: str
    seed: int
    examples: int
    verdict: str
    findings: list[str]
    arrays: list[ArraySummary]
    configs: list[dict[str, Any]]
    nondeterminism: dict[str, float]
    localization: Any = None
    checked: int = 0
    seconds: float = 0.0
    factor: float = FACTOR
    baseline_name: str = ""
    notes: list[str] = field(default_factory=list)
    shape: Shape = field(default_factory=Shape)
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == "PASS"

    def assert_ok(self) -> None:
        """AssertionError with the summary unless the verdict is PASS."""
        if not self.ok:
            raise AssertionError(self.summary())

    def table(self, full: bool = True) -> str:
        """The per-array table (markdown); for a stack not ``full``: the arrays that are not one
        layer's, then one row per layer and direction, its worst parameter."""
        low = self.dtype != "float64"
        head = (
            "| array | module rel. error | "
            + ("baseline rel. error | ratio | " if low else "tolerance | ")
            + "verdict |"
        )
        rows = [head, "|" + " --- |" * (5 if low else 4)]
        shown = self.arrays if full or self.shape.one_layer else self._by_layer()
        for a in shown:
            words = notation(a.name)  # (a layer's row is named by its words already)
            name = a.name if words == a.name else f"{a.name} ({words})"
            verdict = "ok" if a.ok else "WRONG"
            if low:
                rows.append(f"| {name} | {a.rel:.2e} | {a.base_rel:.2e} | {a.ratio:.1f} | {verdict} |")
            else:
                rows.append(f"| {name} | {a.rel:.2e} | {RTOL:.0e} rel + {ATOL:.0e} | {verdict} |")
        return "\n".join(rows)

    def _by_layer(self) -> list[ArraySummary]:
        """The arrays that are not one layer's, with one row per layer and direction in place of
        its parameters (before dx): the parameter with the largest ratio, wrong ones first."""
        rows = [a for a in self.arrays if _layer_of(a.name) is None]
        groups: dict[tuple[int, int], list[ArraySummary]] = {}
        for a in self.arrays:
            if (key := _layer_of(a.name)) is not None:
                groups.setdefault(key, []).append(a)
        summaries = []
        for key, group in sorted(groups.items()):
            w = max(group, key=lambda a: (not a.ok, a.ratio if a.ratio == a.ratio else math.inf))
            name = f"{where_words(*key, self.shape)}: {len(group)} parameters, the worst {w.name}"
            summaries.append(ArraySummary(name, w.rel, w.base_rel, w.ratio, all(a.ok for a in group),
                                          w.worst_config))  # fmt: skip
        at = next((i for i, a in enumerate(rows) if a.name == "x"), len(rows))
        return rows[:at] + summaries + rows[at:]

    def summary(self) -> str:
        """A few lines: the verdict, the findings, the table, the localization sentence."""
        rule = (
            f"tolerance max|a-b| <= {RTOL:g} max|ref| + {ATOL:g}"
            if self.dtype == "float64"
            else f"error within {self.factor:g}x that of {self.baseline_name} at {self.dtype}, {self.device}"
        )
        stack = "" if not self.shape.words() else f", {self.shape.words()}"
        lines = [
            f"{self.verdict}: {self.factory} (--cell {self.cell}{stack}, {self.dtype}, {self.device}"
            + (f", nonlinearity {self.activation}" if self.cell == "rnn" else "")
            + f"): {self.checked} of {self.examples} configurations checked against the float64 "
            f"reference; {rule}",
        ]
        lines += [f"- {f}" for f in self.findings]
        lines += [f"- {line}" for line in self.layer_lines()]
        lines += [f"- note: {f}" for f in self.notes]
        if self.nondeterminism:
            sizes = ", ".join(f"{k} {v:.1e}" for k, v in self.nondeterminism.items())
            lines.append(
                f"- nondeterministic (two identical calls differ, not judged as wrong): max|diff| {sizes}"
            )
        if self.arrays:
            lines.append(self.table(full=False))
        if self.localization is not None and self.localization.sentence:
            lines.append(f"Where: {self.localization.sentence}")
        return "\n".join(lines)

    def layer_lines(self) -> list[str]:
        """One line per layer and direction of a stack with something wrong: what is wrong there."""
        return [
            f"{s.where}: wrong {', '.join(part_words(n) for n in s.wrong())}" for s in self.layers if not s.ok
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "factory": self.factory, "cell": self.cell, "dtype": self.dtype, "device": self.device,
            "activation": self.activation, "seed": self.seed, "examples": self.examples,
            "checked": self.checked, "verdict": self.verdict, "findings": self.findings, "notes": self.notes,
            "factor": self.factor, "baseline": self.baseline_name or None,
            "arrays": [
                {"name": a.name, "notation": notation(a.name), "rel_error": json_number_text(a.rel),
                 "baseline_rel_error": json_number_text(a.base_rel), "ratio": json_number_text(a.ratio),
                 "ok": a.ok, "worst_config": a.worst_config}
                for a in self.arrays
            ],
            "configs": self.configs,
            "nondeterminism": {k: json_number_text(v) for k, v in self.nondeterminism.items()},
            "localization": None if self.localization is None else self.localization.to_json(),
            "shape": self.shape.to_json(),
            "layers": [
                {"layer": s.layer, "direction": "reverse" if s.direction else "forward", "ok": s.ok,
                 "parts": [{"name": n, "rel_error": json_number_text(rel), "ok": ok}
                           for n, rel, ok in s.parts]}
                for s in self.layers
            ],
            "seconds": self.seconds,
        }  # fmt: skip


def _finding_of(ev: Evaluation) -> str | None:
    """What went wrong in one configuration, other than the array table (None: nothing)."""
    st, r = ev.status, ev.reply
    if st == "ok":
        return f"the module modified its input {', '.join(r.mutated)} in place" if r.mutated else None
    if st == "raised":
        return f"the module raised {r.exception}: {r.message}"
    if st == "exited":
        return f"the module called sys.exit({r.exit_argument})"
    if st == "died":
        return f"the module's process ended with status {r.exit_status}"
    if st == "timeout":
        return "the module took longer than the timeout (its process was killed)"
    if st == "garbled":
        return f"the module's process sent an unreadable reply ({r.detail})"
    if st in ("not_run", "unsupported"):  # the pool's note; sizes the factory declines (a note)
        return None
    return f"unexpected reply {st!r}"


#: A shape in a message: (3, 4, 5), (5,), [1, 4, 7], torch.Size([2, 3]) (not sys.exit(3), hidden[0]).
_SHAPE = re.compile(r"\((?:\d+, )+\d+,?\)|\(\d+,\)|\[(?:\d+, )+\d+\]")


def merged(texts: list[tuple[int, str]], total: int) -> list[str]:
    """One line per kind of text, with the configurations it happened in: texts that differ only
    in the shapes they name (``(3, 4, 5)``, ``[1, 4, 7]``) are one kind, shown by the first."""
    seen: dict[str, list[tuple[int, str]]] = {}
    for i, text in texts:
        seen.setdefault(_SHAPE.sub("(...)", text), []).append((i, text))
    out = []
    for group in seen.values():
        (first, text), where = group[0], sorted({i for i, _ in group})
        shapes = "; the shapes differ" if len({t for _, t in group}) > 1 else ""
        if len(where) == 1:
            out.append(f"{text} during configuration #{first}")
        else:
            out.append(f"{text} in {len(where)} of {total} configurations (first #{first}{shapes})")
    return out


def findings_of(evals: list[Evaluation]) -> list[str]:
    """One line per kind of finding, with the configurations it happened in (merged)."""
    found = [(i, f) for i, ev in enumerate(evals) if (f := _finding_of(ev)) is not None]
    return merged(found, len(evals))


def notes_of(evals: list[Evaluation]) -> list[str]:
    """What the module's calls noticed (a gradient that is None, counted as zeros; no output that
    requires a gradient; a forward that requires its state), one line per kind (merged)."""
    said = [
        (i, r) for i, ev in enumerate(evals) if ev.status == "ok" for r in dict.fromkeys(ev.reply.remarks)
    ]
    return merged(said, len(evals))


def _sizes_text(cases: list[dict[str, Any]]) -> str:
    return ", ".join(f"({c['D']}, {c['H']}, {c['T']}, {c['B']})" for c in cases)


def declined_note(declined: list[tuple[dict[str, Any], str]], again: list[dict[str, Any]], n: int) -> str:
    """The note on the sizes the factory declined: which, why, and what the one redraw gave."""
    why = declined[0][1] + ("" if len({m for _, m in declined}) == 1 else "; ...")
    k = len(declined)
    words = (
        f"not checked: sizes the factory declines ({why}): {k} of {n} configurations, (D, H, T, B) = "
        f"{_sizes_text([c for c, _ in declined])}; redrawn once, {k - len(again)} replaced by sizes it takes"
    )
    return words + (f", {len(again)} declined again ({_sizes_text(again)})" if again else "")


def uncovered(cases: list[dict[str, Any]], evals: list[Evaluation]) -> list[str]:
    """The ways of calling the plan holds that no checked configuration used (CALL_WORDS)."""
    planned = {kv for c in cases for kv in call_of(c).items()}
    ran = [c for c, ev in zip(cases, evals, strict=True) if ev.status == "ok"]
    checked = {kv for c in ran for kv in call_of(c).items()}
    return [words for kv, words in CALL_WORDS.items() if kv in planned and kv not in checked]


def _spec(factory: str | Callable[..., Any]) -> str:
    if isinstance(factory, str):
        return factory
    spec = spec_of(factory)
    if spec is None:
        raise UsageError(
            f"factory: {factory!r} cannot be found again by name in a fresh process; pass 'MODULE:FACTORY' "
            "or a function defined at the top level of an importable module"
        )
    return spec


def check_module(
    factory: str | Callable[..., Any],
    *,
    cell: str,
    device: str = "cpu",
    dtype: str = "float64",
    seed: int = 0,
    examples: int | None = None,
    quick: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    localize: bool = True,
    lengths: bool | None = None,
) -> ModuleCheckResult:
    """Check a PyTorch recurrent layer against the float64 reference (see the module docstring).

    Args:
        factory: "MODULE:FACTORY", or a factory defined at the top level of an importable module.
        cell: "rnn", "gru" or "lstm".  device: "cpu" or "cuda" (or "cuda:N").
        dtype: "float64", "float32", "bfloat16" or "float16" (the module's parameters and inputs).
        seed: of the configurations.  examples: how many (default 12; 4 with quick; at most 1000).
        quick: short sequences and few configurations.  timeout: seconds per configuration.
        localize: on a failure, localize it (smallest T, the upstream step, the lag profile).
        lengths: True: batches of variable lengths (fed as x plus lengths= to a forward with a
            lengths parameter, else as PackedSequences); None (the default): so when the module
            declares that it takes them (bptt_report.module.contract.declared_feed); False: never.

    Returns:
        ModuleCheckResult (.verdict, .ok, .summary(), .assert_ok(), .to_json()).

    Raises:
        UsageError (a ValueError) for bad options, a factory that cannot be loaded or does not
        take the contract's keywords, a module the check does not cover (dropout between
        layers: bptt_report.module.contract.NOT_CHECKED_YET), a module without the parameter
        names or of other shapes, a forward of the wrong structure or one that raised a contract
        mismatch (a PackedSequence it does not take), a missing CUDA device; each names what was
        tried and the likely cause.
    """
    t0 = time.perf_counter()
    n, seed = _arguments(cell, dtype, examples, quick, seed, device)
    if not (lengths is None or isinstance(lengths, bool)):
        raise UsageError(f"lengths: expected True, False or None, got {lengths!r}")
    spec = _spec(factory)
    rng, alt = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    with Session(spec, cell, dtype, device, timeout, lengths) as session:
        cases = plan(rng, alt, cell, dtype, quick, n, session.shape_of)
        evals = session.evaluate(cases)
        declined, again = _redraw_declined(session, alt, cases, evals, quick)
        judged = _judge(cases, evals, session.pool.notes)
        loc = None
        if judged.verdict == "FAIL" and localize:
            loc = locate(session, evals, judged.forward_bad, judged.grads_bad)
        elif localize:
            loc = profile_only(session, evals)
    notes = judged.notes + ([declined_note(declined, again, n)] if declined else [])
    configs = [
        {"D": c["D"], "H": c["H"], "T": c["T"], "B": c["B"], "bias": c["bias"],
         "large": c.get("large", False), "call": call_of(c), "declined": ev.status == "unsupported",
         **case_shape(c).to_json(),
         "lengths": None if "lengths" not in c else [int(v) for v in c["lengths"]]}
        for c, ev in zip(cases, evals, strict=True)
    ]  # fmt: skip
    checked = [ev for ev in evals if ev.status == "ok"]
    shape = case_shape(checked[0].case if checked else cases[0])
    return ModuleCheckResult(
        factory=spec, cell=cell, dtype=dtype, device=device, activation=session.activation, seed=seed,
        examples=n, verdict=judged.verdict, findings=judged.findings, arrays=judged.arrays, configs=configs,
        nondeterminism=judged.nondeterminism, localization=loc, checked=judged.checked,
        seconds=time.perf_counter() - t0,
        baseline_name="" if dtype == "float64" else f"torch.nn.{NATIVE[cell]}", notes=notes,
        shape=shape, layers=[] if shape.one_layer else layer_summaries(checked),
    )  # fmt: skip


def _redraw_declined(
    session: Session,
    alt: np.random.Generator,
    cases: list[dict[str, Any]],
    evals: list[Evaluation],
    quick: bool,
) -> tuple[list[tuple[dict[str, Any], str]], list[dict[str, Any]]]:
    """The configurations whose sizes the factory declined, redrawn once (in place in ``cases``
    and ``evals`` where the factory takes the new sizes): (each declined case with the reason,
    the redrawn cases it declined again)."""
    idx = [i for i, ev in enumerate(evals) if ev.status == "unsupported"]
    declined = [(cases[i], evals[i].reply.message) for i in idx]
    if not idx:
        return declined, []
    fresh = [redrawn(alt, cases[i], session.cell, session.dtype, quick, session.shape_of) for i in idx]
    again = []
    for i, case, ev in zip(idx, fresh, session.evaluate(fresh), strict=True):
        if ev.status == "unsupported":
            again.append(case)
        else:
            cases[i], evals[i] = case, ev
    return declined, again


def _arguments(
    cell: Any, dtype: Any, examples: Any, quick: bool, seed: Any, device: Any
) -> tuple[int, int]:
    """check_module's arguments checked: (the number of configurations, the seed).

    Raises:
        UsageError naming the argument and what is wrong with it.
    """
    if cell not in CELLS:
        raise UsageError(f"cell: expected one of {', '.join(CELLS)}, got {cell!r}")
    if dtype not in MODULE_DTYPES:
        raise UsageError(f"dtype: expected one of {', '.join(MODULE_DTYPES)}, got {dtype!r}")
    n = _usage(integer_arg, "examples", examples, 1) if examples is not None else None
    if n is not None and n > MAX_MODULE_EXAMPLES:
        raise UsageError(f"examples: at most {MAX_MODULE_EXAMPLES}, got {n}")
    n = n or (MODULE_QUICK_EXAMPLES if quick else MODULE_EXAMPLES)
    seed = _usage(integer_arg, "seed", seed, 0)
    _check_device(device)
    return n, seed


@dataclass(frozen=True)
class _Judged:
    """The verdict on a module's evaluations, and what it rests on."""

    verdict: str
    findings: list[str]
    arrays: list[ArraySummary]
    forward_bad: list[str]
    grads_bad: list[str]
    nondeterminism: dict[str, float]
    checked: int
    notes: list[str]


def _judge(cases: list[dict[str, Any]], evals: list[Evaluation], pool_notes: list[str]) -> _Judged:
    """FAIL on any finding (a wrong forward, wrong gradients, a module that misbehaved or did not
    run), else INSUFFICIENT when nothing was checked or a way of calling the plan holds was not
    checked (every configuration that used it was declined), else PASS; ``pool_notes`` are the
    pool's (why configurations were not run)."""
    n = len(evals)
    findings = findings_of(evals)
    not_run = sum(ev.status == "not_run" for ev in evals)
    if not_run:
        findings.append(f"{not_run} of {n} configurations were not run: " + "; ".join(pool_notes))
    checked = [(i, ev) for i, ev in enumerate(evals) if ev.status == "ok"]
    arrays = _summaries(checked)
    forward_bad = [a.name for a in arrays if not a.ok and a.name in FORWARD]
    grads_bad = [a.name for a in arrays if not a.ok and a.name not in FORWARD]
    if forward_bad:
        also = "" if not grads_bad else " (the gradients, computed through it, differ too)"
        findings.insert(0, f"the forward is wrong: {', '.join(forward_bad)} differ from the reference{also}")
    elif grads_bad:
        shape = case_shape(checked[0][1].case)
        if shape.one_layer:
            findings.insert(0, f"the gradients are wrong: {grouped(grads_bad, shape, '.grad')}")
        else:  # the parameters by layer and direction: the lines that follow the findings
            rest = [n for n in grads_bad if _layer_of(n) is None]
            layers = list(dict.fromkeys(where_words(*k, shape) for n in grads_bad if (k := _layer_of(n))))
            said = [grouped(rest, shape, ".grad")] if rest else []
            if layers:
                said.append(f"the parameters of {', '.join(layers)} (below, by layer and direction)")
            findings.insert(0, f"the gradients are wrong: {' and '.join(said)}")
    nondet: dict[str, float] = {}
    for _, ev in checked:
        for k, v in ev.reply.repeat.items():
            nondet[k] = max(nondet.get(k, 0.0), float(v))
    missing = uncovered(cases, evals)
    if findings:
        verdict = "FAIL"
    elif not checked:
        verdict = "INSUFFICIENT"
        findings.append(f"none of the {n} configurations could be checked")
    elif missing:
        verdict = "INSUFFICIENT"
        findings.append(
            f"not checked {', '.join(missing)}: every configuration that called it so was declined"
        )
    else:
        verdict = "PASS"
    return _Judged(verdict, findings, arrays, forward_bad, grads_bad, nondet, len(checked), notes_of(evals))


def _layer_of(name: str) -> tuple[int, int] | None:
    """(layer, direction) of a parameter's torch name, None for the other arrays."""
    parsed = parse_name(name)
    return None if parsed is None else (parsed[1], parsed[2])


def layer_summaries(checked: list[Evaluation]) -> list[LayerSummary]:
    """Per layer and direction of a stack, its parts over every configuration checked (the worst
    relative error, whether each agrees everywhere), for layers and directions in torch's order."""
    found: dict[tuple[int, int], dict[str, tuple[float, bool]]] = {}
    shape = case_shape(checked[0].case) if checked else Shape()
    for ev in checked:
        if ev.ref is None:
            continue
        for p in parts(ev.errors, ev.arrays, ev.ref, case_shape(ev.case)):
            mine = found.setdefault((p.layer, p.direction), {})
            rel, ok = mine.get(p.name, (0.0, True))
            mine[p.name] = (rel if rel >= p.rel_error else p.rel_error, ok and p.ok)
    return [
        LayerSummary(layer, d, where_words(layer, d, shape), [(n, rel, ok) for n, (rel, ok) in mine.items()])
        for (layer, d), mine in sorted(found.items())
    ]


def _summaries(checked: list[tuple[int, Evaluation]]) -> list[ArraySummary]:
    """Per array, the configuration with the largest ratio."""
    worst: dict[str, tuple[ArrayCheck, int]] = {}
    bad: dict[str, bool] = {}
    for i, ev in checked:
        for e in ev.errors:
            bad[e.name] = bad.get(e.name, False) or not e.passed
            if e.name not in worst or not (e.ratio <= worst[e.name][0].ratio):
                worst[e.name] = (e, i)
    return [
        ArraySummary(n, e.rel_error, e.baseline_rel_error, e.ratio, not bad[n], i)
        for n, (e, i) in worst.items()
    ]


def _usage(fn: Callable[..., int], *args: Any) -> int:
    try:
        return fn(*args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_device(device: str) -> None:
    import torch

    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"device: expected 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {device}: no CUDA device is available to torch {torch.__version__}"
                             + (" (a CPU-only build)" if torch.version.cuda is None else ""))  # fmt: skip
        try:
            torch.empty(1, device=device)
        except Exception as exc:
            raise UsageError(f"device {device}: {exc}") from None
