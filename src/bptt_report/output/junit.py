"""report.xml: the check as JUnit XML, the test-result format CI systems read (GitHub Actions
test reporters, GitLab, Jenkins, Azure Pipelines, ...). numpy-free, stdlib only.

Layout (checked in the tests against tests/data/junit.xsd, the commonly accepted schema):

    <testsuites name="manual-bptt report" tests failures errors skipped time>
      <testsuite name="KIND" ...>                  one per kind of check that ran (oracle, torch_rnn,
                                                   finite_differences, probe, ...)
        <properties> target, seed, verdict </properties>     (first suite only)
        <testcase classname="bptt_report.KIND" name="GROUP" time>
          <failure message="..." type="disagreement">  the localization sentence when the group's
                                                   failure was localized, else the first failing
                                                   check's message; the text lists every failing
                                                   check of the group (by number)
          <error ...>                              a reference that could not run (this tool's problem)
          <skipped message="..."/>                 every configuration of the group unsupported

A GROUP is the configurations of one input form and one activation, e.g. "dense (B, T, D), tanh".
An INSUFFICIENT verdict adds a failing test case "coverage" (too little was checked for PASS).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any

from ..judge.results import KINDS, CheckResult, ConfigCheck
from ..plan.sweep import describe_config, form_name

#: Failing checks listed in one failure's text at most.
MAX_LISTED = 25
#: The test case of the coverage requirement (an INSUFFICIENT verdict fails it).
COVERAGE_CASE = "coverage"
#: Characters XML 1.0 cannot carry (a target's exception text may hold them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    """``text`` with the characters XML cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def group_name(c: ConfigCheck) -> str:
    """The configuration group of a check: its cell, input form and (Elman cell) activation."""
    cfg = c.config
    if cfg.cell == "rnn":
        return f"rnn, {form_name(cfg)}, {cfg.activation}"
    return f"{cfg.cell}, {form_name(cfg)}"


def _seconds(checks: list[ConfigCheck]) -> str:
    return f"{sum(c.seconds for c in checks):.3f}"


def _line(c: ConfigCheck) -> str:
    why = c.message or "; ".join(a.describe() for a in c.arrays if not a.passed)
    return f"#{c.id} ({describe_config(c.config)}): {why}"


def _case(result: CheckResult, kind: str, group: str, checks: list[ConfigCheck]) -> ET.Element:
    case = ET.Element("testcase", classname=f"bptt_report.{kind}", name=group, time=_seconds(checks))
    failing = [c for c in checks if c.status == "fail"]
    errors = [c for c in checks if c.status == "error"]
    if failing:
        ids = {c.id for c in failing}
        loc = next((x for x in result.localizations if x.check.kind == kind and x.check.id in ids), None)
        first = failing[0]
        message = (
            loc.verdict if loc is not None else f"configuration #{first.id}: {_line(first).split(': ', 1)[1]}"
        )
        el = ET.SubElement(case, "failure", message=_clean(message), type="disagreement")
        lines = [
            f"{len(failing)} of {len(checks)} configurations of {group} fail against {KINDS.get(kind, kind)}:"
        ]
        lines += [_line(c) for c in failing[:MAX_LISTED]]
        if len(failing) > MAX_LISTED:
            lines.append(f"... and {len(failing) - MAX_LISTED} more (report.json, checks with status fail)")
        el.text = _clean("\n".join(lines))
    elif errors:
        el = ET.SubElement(case, "error", message=_clean(errors[0].message), type="reference error")
        el.text = _clean("\n".join(_line(c) for c in errors[:MAX_LISTED]))
    elif all(c.status == "unsupported" for c in checks):
        ET.SubElement(case, "skipped", message=_clean(f"unsupported by the target: {checks[0].message}"))
    return case


def _counts(cases: list[ET.Element]) -> dict[str, str]:
    def n(tag: str) -> int:
        return sum(1 for c in cases if c.find(tag) is not None)

    return {
        "tests": str(len(cases)),
        "failures": str(n("failure")),
        "errors": str(n("error")),
        "skipped": str(n("skipped")),
        "time": f"{sum(float(c.get('time', '0')) for c in cases):.3f}",
    }


def junit_tree(result: CheckResult) -> ET.Element:
    """The <testsuites> element of ``result``."""
    by_kind: dict[str, dict[str, list[ConfigCheck]]] = defaultdict(lambda: defaultdict(list))
    for c in result.checks:
        by_kind[c.kind][group_name(c)].append(c)
    kinds = [k for k in KINDS if k in by_kind] + sorted(k for k in by_kind if k not in KINDS)
    root = ET.Element("testsuites", name="manual-bptt report")
    all_cases: list[ET.Element] = []
    suites: list[tuple[ET.Element, list[ET.Element]]] = []
    for kind in kinds or ["oracle"]:
        suite = ET.SubElement(root, "testsuite", name=kind)
        if not suites:
            props = ET.SubElement(suite, "properties")
            info = {"target": result.target, "seed": str(result.seed), "verdict": result.verdict,
                    "examples": str(result.size.examples)}  # fmt: skip
            for name, value in info.items():
                ET.SubElement(props, "property", name=name, value=_clean(value))
        groups = by_kind.get(kind, {})
        cases = [_case(result, kind, g, groups[g]) for g in sorted(groups)]
        if not suites:
            cov = ET.Element("testcase", classname="bptt_report.oracle", name=COVERAGE_CASE, time="0.000")
            if result.verdict == "INSUFFICIENT":
                el = ET.SubElement(cov, "failure", message="INSUFFICIENT: too little was checked for PASS",
                                   type="insufficient")  # fmt: skip
                el.text = "\n".join(result.shortfalls())
            cases.append(cov)
        suite.extend(cases)
        suites.append((suite, cases))
        all_cases.extend(cases)
    for suite, cases in suites:
        for k, v in _counts(cases).items():
            suite.set(k, v)
    for k, v in _counts(all_cases).items():
        root.set(k, v)
    return root


def junit_xml(result: CheckResult) -> str:
    """report.xml: ``result`` as JUnit XML (UTF-8, with the XML declaration)."""
    root = junit_tree(result)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def junit_counts(text: str) -> dict[str, Any]:
    """The totals of a report.xml: tests, failures, errors, skipped (ints)."""
    root = ET.fromstring(text)
    return {k: int(root.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
