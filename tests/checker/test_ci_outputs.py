"""report.xml (JUnit XML, validated against tests/data/junit.xsd) and --annotations (GitHub
Actions workflow commands)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import bptt_report
from bptt_report.judge.results import CheckResult
from bptt_report.output.annotations import annotation_lines, command, target_location
from bptt_report.output.junit import junit_counts, junit_xml
from bptt_report.plan.sweep import form_name
from locations import DATA
from xsd_check import validate

XSD = DATA / "junit.xsd"


@pytest.fixture(scope="module")
def failing() -> CheckResult:
    return bptt_report.check("broken_impls:sign_error", quick=True, examples=12, max_localized=1)


@pytest.fixture(scope="module")
def passing() -> CheckResult:
    return bptt_report.check(quick=True, examples=12, max_localized=0)


def test_the_xsd_check_refuses_documents_that_break_the_schema():
    bad = {
        "no classname": '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
        '<testcase name="x"/></testsuite></testsuites>',
        "two outcomes": '<testsuites><testsuite name="a" tests="1" failures="1" errors="0">'
        '<testcase name="x" classname="c"><failure/><failure/></testcase></testsuite></testsuites>',
        "negative count": '<testsuites tests="-1"/>',
        "unknown attribute": '<testsuites colour="red"/>',
        "testcase at the root level": '<testsuites><testcase name="x" classname="c"/></testsuites>',
        "properties after a testcase": '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
        '<testcase name="x" classname="c"/><properties/></testsuite></testsuites>',
    }
    for why, text in bad.items():
        assert validate(text, XSD), why
    good = '<testsuites><testsuite name="a" tests="1" failures="1" errors="0" time="0.5"><properties>'
    good += '<property name="k" value="v"/></properties><testcase name="x" classname="c" time="0">'
    good += '<failure message="m" type="t">text</failure></testcase></testsuite></testsuites>'
    assert validate(good, XSD) == []


def test_report_xml_of_a_failing_check_is_valid_junit_with_the_localization_sentence(failing):
    text = junit_xml(failing)
    assert validate(text, XSD) == []
    root = ET.fromstring(text)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert "oracle" in suites
    counts = junit_counts(text)
    assert counts["failures"] > 0 and counts["tests"] == len(root.findall("testsuite/testcase"))
    assert sum(int(s.get("failures")) for s in suites.values()) == counts["failures"]
    (loc,) = failing.localizations
    messages = [f.get("message") for f in root.iter("failure")]
    assert loc.verdict in messages
    # one test case per configuration group and kind; a failing group is named by cell, form and activation
    names = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert len(names) == len(set(names))
    failing_groups = {
        (f"bptt_report.{c.kind}", f"{c.config.cell}, {form_name(c.config)}, {c.config.activation}")
        for c in failing.failures
    }
    with_failure = {
        (c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None
    }
    assert with_failure == failing_groups


def test_report_xml_of_a_passing_check_has_no_failures(passing):
    text = junit_xml(passing)
    assert validate(text, XSD) == []
    counts = junit_counts(text)
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0
    props = {p.get("name"): p.get("value") for p in ET.fromstring(text).iter("property")}
    assert props["verdict"] == "PASS" and props["target"] == "manual_bptt:bptt"


def test_report_xml_carries_no_characters_xml_cannot_hold(failing):
    import dataclasses

    c = failing.failures[0]
    odd = dataclasses.replace(failing, checks=(dataclasses.replace(c, message="bad \x00\x1b byte"),),
                              localizations=())  # fmt: skip
    text = junit_xml(odd)
    assert validate(text, XSD) == [] and "\x00" not in text and "\x1b" not in text


def _unescape(text: str) -> str:
    return (
        text.replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


ANNOTATION = re.compile(
    r"^::error file=(?P<file>[^,:]+)(,line=(?P<line>\d+))?,title=(?P<title>[^,:]+)::(?P<msg>.+)$"
)


def test_annotations_give_one_line_per_failing_array_on_the_target_source(failing):
    lines = annotation_lines(failing)
    arrays = {name for c in failing.failures for name in c.failing}
    assert len(lines) == len(arrays) + any(not c.failing for c in failing.failures)
    seen = set()
    for line in lines:
        m = ANNOTATION.match(line)
        assert m, line
        assert m["file"].endswith("broken_impls.py") and int(m["line"]) > 0
        title = _unescape(m["title"])
        name = re.match(r"bptt_report: d(\S+) disagrees with PyTorch autograd oracle", title)
        assert name, title
        seen.add(name[1])
        first = min((c for c in failing.failures if name[1] in c.failing), key=lambda c: (c.id, c.kind))
        assert f"[configuration #{first.id}:" in _unescape(m["msg"])
    assert seen == arrays
    (loc,) = failing.localizations
    assert any(loc.verdict in _unescape(line) for line in lines)


def test_annotations_are_empty_for_a_pass_and_escaped_as_github_specifies(passing):
    assert annotation_lines(passing) == []
    line = command("a,b:c.py", 3, "t: x, y", "50% off\nnext line")
    assert line == "::error file=a%2Cb%3Ac.py,line=3,title=t%3A x%2C y::50%25 off%0Anext line"
    assert "\n" not in line


def test_target_location_finds_the_function_without_importing_it():
    import sys

    file, line = target_location("broken_impls:sign_error")
    assert file is not None and file.endswith("broken_impls.py") and line is not None
    assert target_location("no_such_module_xyz:f") == (None, None)
    file, line = target_location("manual_bptt.elman:bptt")
    assert file.endswith("elman.py") and "def bptt(" in Path(file).read_text().splitlines()[line - 1]
    assert "no_such_module_xyz" not in sys.modules


def test_the_annotations_option_prints_the_lines_after_the_summary(tmp_path, capsys):
    from bptt_report.cli import EXIT_DISAGREE, main

    argv = ["report", "--quick", "--examples", "8", "--no-plots", "--no-progress", "--annotations",
            "--target", "broken_impls:sign_error", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == EXIT_DISAGREE
    out = capsys.readouterr().out.splitlines()
    lines = [x for x in out if x.startswith("::error ")]
    assert lines and all(ANNOTATION.match(x) for x in lines)
    assert out[0].startswith("FAIL: broken_impls:sign_error")
    assert validate((tmp_path / "r" / "report.xml").read_text(), XSD) == []
