"""Writing the report: report.json (schema: report.schema.json; its content from
CheckResult.to_dict), report.md (bptt_report.output.markdown), report.xml (output.junit) and the
PNG plots (output.plots).

Writing is atomic: everything is written into a fresh temporary directory beside DIR, then
moved into place with os.rename (a new DIR) or os.replace, file by file, report.json last (an
existing DIR). An interrupted or failing run leaves DIR as it was, and no temporary files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import manual_bptt as mb

from ..judge.compare import FIELDS
from ..judge.results import CheckResult
from .markdown import render_markdown
from .regimes import sample_regimes


@dataclass(frozen=True)
class ReportFiles:
    """What write_report wrote.

    Attributes:
        directory: DIR.
        files: the file names written into DIR (report.json, report.md, the PNGs).
        plots_written: whether the plots were drawn.
        plots_note: why not (e.g. matplotlib is missing), else "".
    """

    directory: Path
    files: tuple[str, ...]
    plots_written: bool
    plots_note: str


def load_schema() -> dict[str, Any]:
    """The JSON Schema of report.json (package data ``bptt_report/report.schema.json``)."""
    text = resources.files("bptt_report").joinpath("report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def report_dict(
    result: CheckResult, regimes: list[dict[str, Any]], plots: list[str], plots_note: str
) -> dict[str, Any]:
    """The content of report.json."""
    data = result.to_dict()
    data["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    data["tool"] = {"name": "bptt_report", "version": mb.__version__}
    data["fields"] = list(FIELDS)
    data["plots"] = {"status": "written" if plots else "skipped", "files": plots, "note": plots_note}
    data["regimes"] = regimes
    return data


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_report(result: CheckResult, out_dir: str | os.PathLike[str], *, plots: bool = True) -> ReportFiles:
    """Write report.json, report.md, report.xml (JUnit, bptt_report.output.junit) and the plots into
    ``out_dir``, atomically.

    Args:
        result: from bptt_report.check.
        out_dir: DIR, created if missing (with its parents).
        plots: draw the PNGs. Without matplotlib they are skipped, with a note in both reports
            (the ReportFiles says so too), and the rest is written as usual.

    Raises:
        NotADirectoryError if ``out_dir`` exists and is not a directory.
    """
    from . import plots as plotting

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    regimes = sample_regimes(result.seed, result.cells)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()  # mode 0o777 less the umask: it becomes DIR when DIR is new
    try:
        written: list[str] = []
        note = "" if plots else "plots were not requested (--no-plots)"
        if plots:
            try:
                written = plotting.write_plots(result, regimes, tmp)
            except plotting.PlotsUnavailable as exc:
                note = str(exc)
        _write_text(tmp / "report.md", render_markdown(result, regimes, written, note))
        from .junit import junit_xml

        _write_text(tmp / "report.xml", junit_xml(result))  # JUnit XML, for CI systems
        data = report_dict(result, regimes, written, note)
        _write_text(tmp / "report.json", json.dumps(data, indent=1, allow_nan=False) + "\n")
        # report.json last: it marks a complete report
        files = [*written, "report.md", "report.xml", "report.json"]
        if not out.exists():
            os.rename(tmp, out)
        else:
            for name in files:
                os.replace(tmp / name, out / name)
            for stale in plotting.PLOT_FILES:  # plots of an earlier run that this one did not draw
                if stale not in written and (out / stale).exists():
                    (out / stale).unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ReportFiles(directory=out, files=tuple(files), plots_written=bool(written), plots_note=note)
