"""Smoke run of the benchmark runner (benchmarks/run.py --quick): tiny sizes, a few seconds.

The benchmarks themselves run on demand (see the README); this only keeps the runner from
rotting: it must run end to end, time every contender and write a table, the JSON and the plot.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def load_runner():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_every_contender_with_finite_ratios(tmp_path: Path) -> None:
    run = load_runner()
    run.main(["--quick", "--out", str(tmp_path)])

    md = (tmp_path / "results.md").read_text()
    result = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 0

    names = (run.OURS, run.ORACLE, run.NN_RNN, run.NN_RNN_WEIGHTS, run.GEMM_NP, run.GEMM_TORCH)
    groups = {(g["size"]["name"], g["dtype"]): g for g in result["groups"]}
    assert set(groups) == {(s, d) for s in ("small", "medium", "large") for d in ("float64", "float32")}
    for (size, dtype), g in groups.items():
        assert set(g["contenders"]) == set(names), (size, dtype)
        for name, row in g["contenders"].items():
            assert row["n"] >= 1 and math.isfinite(row["median"]) and row["median"] > 0, (size, dtype, name)
            assert math.isfinite(row["fraction_of_gemm"]), (size, dtype, name)
            assert f"| {size} | {dtype} | {name} |" in md
        for other, r in g["ratios"].items():
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0, (size, dtype, other)
            assert f"| {size} | {dtype} | {other} | " in md

    assert len(result["targets"]) == 8 and "## Targets" in md
    for method in ("bptt", "decompose", "rtrl"):
        assert math.isfinite(result["scaling"]["methods"][method]["exponent"]), method
    assert math.isfinite(result["memory"]["exponent"])
