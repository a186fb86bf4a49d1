"""Smoke run of the benchmark runner (benchmarks/run.py --quick): tiny sizes, a few seconds.

The benchmarks themselves run on demand (see the README); this only keeps the runner from
rotting: it must run end to end, time every contender and write a table, the JSON and the plot.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from manual_bptt import core

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@functools.cache
def load_runner():
    """benchmarks/run.py as a module (once); it puts its rnnbench package on sys.path."""
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

    names = (run.OURS, run.ORACLE, run.NN_RNN, run.NN_RNN_WEIGHTS, run.PRODUCTS, run.GEMM_NP, run.GEMM_TORCH)
    groups = {(g["size"]["name"], g["dtype"]): g for g in result["groups"]}
    assert set(groups) == {(s, d) for s in ("small", "medium", "large") for d in ("float64", "float32")}
    for (size, dtype), g in groups.items():
        assert set(g["contenders"]) == set(names), (size, dtype)
        for name, row in g["contenders"].items():
            assert row["n"] >= 1 and math.isfinite(row["median"]) and row["median"] > 0, (size, dtype, name)
            assert math.isfinite(row["fraction_of_gemm"]), (size, dtype, name)
            assert f"| {size} | {dtype} | {name} |" in md
        assert set(g["ratios"]) == {run.ORACLE, run.NN_RNN, run.NN_RNN_WEIGHTS, run.PRODUCTS}
        for other, r in g["ratios"].items():
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0, (size, dtype, other)
            assert f"| {size} | {dtype} | {other} | " in md

        floor = g["floor_vs_nn_rnn"]["ratio"]
        assert math.isfinite(floor) and floor > 0, (size, dtype)
        assert f"| {size} | {dtype} | {run.fmt_ms(g['contenders'][run.PRODUCTS]['median'])} |" in md

    assert len(result["targets"]) == 8 and "## Targets" in md and "## The floor" in md
    for method in ("bptt", "decompose", "rtrl"):
        assert math.isfinite(result["scaling"]["methods"][method]["exponent"]), method
    assert math.isfinite(result["memory"]["exponent"])

    from manual_bptt.environment import describe

    assert set(describe()) <= set(result["environment"])  # the benchmark adds to the one description


def _twin_of_ours(name: str, loss_offset: float = 0.0):
    """A factory of one MODEL contender: bptt under another name, its loss shifted by loss_offset."""
    import manual_bptt as mb
    from rnnbench import contenders
    from rnnbench.harness import Contender

    def factory(s, dtype, gemm_n):
        p, xs, ys = contenders.make_inputs(s, dtype)
        return [Contender(name, lambda: mb.bptt(p, xs, ys).loss + loss_offset, contenders.model_flops(s))]

    return factory


def test_a_contender_added_to_the_lineup_is_timed_compared_and_tabled(tmp_path: Path, monkeypatch) -> None:
    """Adding a library or a cell is one more factory in LINEUP: no change to the harness,
    the group summary or the tables."""
    run = load_runner()
    from rnnbench import contenders

    name = "another bptt"
    monkeypatch.setattr(contenders, "LINEUP", [*contenders.LINEUP, _twin_of_ours(name)])
    run.main(["--quick", "--sizes", "small", "--dtypes", "float64", "--no-scaling", "--out", str(tmp_path)])

    (g,) = json.loads((tmp_path / "results.json").read_text())["groups"]
    md = (tmp_path / "results.md").read_text()
    assert name in g["contenders"] and g["contenders"][name]["n"] == 3
    assert 0 < g["ratios"][name]["ratio"] < math.inf
    assert f"| small | float64 | {name} | " in md.split("## Ratios")[0]  # the times table
    assert f"| small | float64 | {name} | " in md.split("## Ratios")[1]  # the ratios table
    assert not (tmp_path / "scaling.png").exists()


def test_a_contender_computing_another_loss_stops_the_run_before_timing(monkeypatch) -> None:
    run = load_runner()
    from rnnbench import contenders, groups

    monkeypatch.setattr(contenders, "LINEUP", [*contenders.LINEUP, _twin_of_ours("off by 1e-6", 1e-6)])
    small = next(x for x in run.QUICK.sizes if x.name == "small")
    with pytest.raises(RuntimeError, match="small float64: off by 1e-6 computes loss"):
        groups.bench_size(small, "float64", 8, rounds=3, slot_s=0.0)


def test_markdown_tables_have_one_rule_and_right_aligned_numbers() -> None:
    load_runner()
    from rnnbench.tables import table

    assert table(["name", "ms"], "lr", [["a", "1.5"], ["b", "2"]]) == [
        "| name | ms |",
        "| --- | ---: |",
        "| a | 1.5 |",
        "| b | 2 |",
    ]


@pytest.mark.parametrize("size", ["small", "medium", "large"])
@pytest.mark.parametrize("rows", [1024, 7])
def test_products_alone_makes_every_product_of_bptt_once(size: str, rows: int, monkeypatch) -> None:
    """The floor's FLOPs are exactly the model's (the count every contender's rate uses): each
    of the model's products once, none left out, on finite numbers; two products per step
    (W s_{t-1} and W^T delta_t) at bptt's shape, the rest once per block. Blocks of 7 rows
    split the quick sizes into several blocks, the last one shorter."""
    run = load_runner()
    monkeypatch.setattr(core, "_ROWS", rows)
    s = next(x for x in run.QUICK.sizes if x.name == size)
    p, xs, _ = run.make_inputs(s, "float64")
    X = run.time_major(s, xs)
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def mm(a, b, out=None):
        shapes.append((a.shape, b.shape))
        assert np.isfinite(a).all() and np.isfinite(b).all()
        return np.matmul(a, b, out=out)

    run.products_alone(p, s.T, s.B, X, mm)
    flops = sum(2 * a[0] * a[1] * b[1] for a, b in shapes)
    assert flops == run.model_flops(s)
    step = ((s.B, s.H), (s.H, s.H))  # W s_{t-1} and W^T delta_t: one per step each way
    assert shapes.count(step) == 2 * s.T
    assert len(shapes) == 2 * s.T + len(core.step_blocks(s.T, s.B)) * (4 if s.tokens else 7)
