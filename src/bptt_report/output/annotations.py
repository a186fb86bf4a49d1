"""``manual-bptt report --annotations``: one GitHub Actions workflow command per failing array,

    ::error file=mypkg/rnn.py,line=12,title=bptt_report: dW disagrees with the oracle::SENTENCE

for the first failure of each array (loss, U, W, V, b, c, ds0, dxs; by configuration number),
plus one for the first failure that has no array (the target raised, crashed, hung, changed its
inputs). SENTENCE is the localization sentence when that failure was localized, else the array's
worst element against the reference (followed by the localization sentence of another
configuration in which the array fails, when there is one). GitHub shows each line as an
annotation on the file and line of the target's function. stdlib only; the target's module
is located, never imported.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder

from ..judge.compare import FIELDS
from ..judge.results import KINDS, CheckResult, ConfigCheck
from ..plan.sweep import describe_config


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(file: str | None, line: int | None, title: str, message: str) -> str:
    """One ``::error`` workflow command, its properties and message escaped as GitHub specifies."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
        if line:
            props.append(f"line={line}")
    props.append(f"title={_escape_property(title)}")
    return f"::error {','.join(props)}::{_escape_data(message)}"


def target_location(spec: str) -> tuple[str | None, int | None]:
    """The source file of the target's module (relative to the working directory when inside
    it) and the line of ``def FUNCTION`` (or ``FUNCTION =``), found on sys.path (then in the
    current directory) without importing anything; (None, None) when it cannot be found."""
    module, _, attr = spec.partition(":")
    path: list[str] | None = [*sys.path, os.getcwd()]  # the current directory last, as load_target does
    origin = None
    for part in module.split("."):
        found = PathFinder.find_spec(part, path)
        if found is None:
            return None, None
        origin = found.origin
        path = list(found.submodule_search_locations or [])
    if not origin or not os.path.isfile(origin) or not origin.endswith(".py"):
        return None, None
    line = None
    try:
        with open(origin, encoding="utf-8") as f:
            name = re.escape(attr.split(".")[-1])
            pattern = re.compile(rf"^\s*(def\s+{name}\s*\(|{name}\s*=)")
            for n, text in enumerate(f, start=1):
                if pattern.match(text):
                    line = n
                    break
    except (OSError, UnicodeDecodeError):
        pass
    rel = os.path.relpath(origin)
    return (origin if rel.startswith("..") else rel), line


def _first_per_array(result: CheckResult) -> list[tuple[str, ConfigCheck]]:
    """(array, the first check in which it fails), in FIELDS order, then ("", the first failure
    without arrays) when there is one."""
    first: dict[str, ConfigCheck] = {}
    no_array: ConfigCheck | None = None
    for c in sorted(result.failures, key=lambda c: (c.id, c.kind)):
        names = c.failing
        if not names and no_array is None:
            no_array = c
        for name in names:
            first.setdefault(name, c)
    out = [(f, first[f]) for f in FIELDS if f in first]
    out += [(f, c) for f, c in first.items() if f not in FIELDS]
    if no_array is not None:
        out.append(("", no_array))
    return out


def annotation_lines(result: CheckResult) -> list[str]:
    """The ``::error`` lines of ``result`` (none when nothing fails)."""
    file, line = target_location(result.target)
    lines = []
    for name, c in _first_per_array(result):
        loc = next((x for x in result.localizations if x.check.id == c.id and x.check.kind == c.kind), None)
        against = KINDS.get(c.kind, c.kind).split(" (")[0]
        if name:
            title = (
                f"bptt_report: d{name} disagrees with {against}"
                if name != "loss"
                else (f"bptt_report: the loss disagrees with {against}")
            )
            arr = next(a for a in c.arrays if a.name == name)
            detail = loc.verdict if loc is not None else arr.describe()
            covering = next((x for x in result.localizations if name in x.check.failing), None)
            if loc is None and covering is not None:  # localized on another configuration
                detail += f". Localized on configuration #{covering.check.id}: {covering.verdict}"
        else:
            title = f"bptt_report: the target failed ({c.kind})"
            detail = loc.verdict if loc is not None else c.message
        message = f"{detail} [configuration #{c.id}: {describe_config(c.config)}]"
        lines.append(command(file, line, title, message))
    if not lines and result.verdict == "INSUFFICIENT":
        lines.append(
            command(file, line, "bptt_report: INSUFFICIENT", "too little was checked for PASS: "
                    + "; ".join(result.shortfalls()))
        )  # fmt: skip
    return lines
