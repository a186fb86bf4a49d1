"""Smoke run of the benchmark runner (benchmarks/run.py --quick): tiny sizes, a few seconds.

The benchmarks themselves run on demand (see the README); this only keeps the runner from
rotting: it must run end to end, time every contender and write a table, the JSON and the plot.
JAX is a contender only where jax is installed (the bench extra); its tests are skipped elsewhere,
and the runner then notes it in the results.
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

import manual_bptt as mb
from locations import ROOT
from manual_bptt.checking import assert_close
from manual_bptt.fast import blocks

RUNNER = ROOT / "benchmarks" / "run.py"


@functools.cache
def load_runner():
    """benchmarks/run.py as a module (once); it puts its rnnbench package on sys.path."""
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def jax_installed() -> bool:
    load_runner()
    from rnnbench import jaxpeer

    return jaxpeer.available()


needs_jax = pytest.mark.skipif(not jax_installed(), reason="jax is not installed (the bench extra)")


def test_quick_run_writes_every_contender_with_finite_ratios(tmp_path: Path) -> None:
    run = load_runner()
    run.main(["--quick", "--out", str(tmp_path)])

    md = (tmp_path / "results.md").read_text()
    result = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 0

    jax = jax_installed()
    gemms = [run.GEMM_NP, run.GEMM_TORCH]
    names = {
        "rnn": [run.OURS, run.ORACLE, run.NN_RNN, run.NN_RNN_WEIGHTS, run.PRODUCTS, *gemms],
        "gru": [run.OURS, "torch.nn.GRU", run.PRODUCTS, *gemms],  # ours and the floor of its products
        "lstm": [run.OURS, "torch.nn.LSTM", run.PRODUCTS, *gemms],
    }
    if jax:
        for cell in names:
            names[cell].append(run.JAX[cell])
    groups = {(g["cell"], g["size"]["name"], g["dtype"]): g for g in result["groups"]}
    sizes = {"rnn": ("small", "medium", "large"), "gru": ("medium", "large"), "lstm": ("medium", "large")}
    assert set(groups) == {(c, s, d) for c in sizes for s in sizes[c] for d in ("float64", "float32")}
    for (cell, size, dtype), g in groups.items():
        assert set(g["contenders"]) == set(names[cell]), (cell, size, dtype)
        for name, row in g["contenders"].items():
            assert row["n"] >= 1 and math.isfinite(row["median"]) and row["median"] > 0, (size, dtype, name)
            assert math.isfinite(row["fraction_of_gemm"]), (size, dtype, name)
            assert f"| {cell} | {size} | {dtype} | {name} |" in md
        peer = g["fastest_peer"]
        peers = [n for n in names[cell] if g["contenders"][n]["peer"]]
        assert peer["name"] == min(peers, key=lambda n: g["contenders"][n]["median"])
        if cell != "rnn":  # the gated cells: ours against each peer and the floor, no oracle
            native = "torch.nn.GRU" if cell == "gru" else "torch.nn.LSTM"
            assert set(g["ratios"]) == {native, run.PRODUCTS} | ({run.JAX[cell]} if jax else set())
            assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in g["ratios"].values())
            assert 0 < g["floor_vs_nn_rnn"]["ratio"] < math.inf and 0 < peer["ratio"] < math.inf
            continue
        assert set(g["ratios"]) == {run.ORACLE, run.NN_RNN, run.NN_RNN_WEIGHTS, run.PRODUCTS} | (
            {run.JAX["rnn"]} if jax else set()
        )
        for other, r in g["ratios"].items():
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0, (size, dtype, other)
            assert f"| {cell} | {size} | {dtype} | {other} | " in md
        assert 0 < peer["ratio"] < math.inf
        assert f"| {cell} | {size} | {dtype} | {peer['name']} | {run.fmt_ms(peer['median'])} |" in md

        floor = g["floor_vs_nn_rnn"]["ratio"]
        assert math.isfinite(floor) and floor > 0, (size, dtype)
        assert f"| {size} | {dtype} | {run.fmt_ms(g['contenders'][run.PRODUCTS]['median'])} |" in md

    # per dtype: small (oracle, JAX), medium (fastest peer), large (peer, GEMM fraction, floor)
    # rnn: small (oracle, JAX), medium, large (peer, GEMM, floor); gru, lstm: medium, large (the same)
    assert len(result["targets"]) == 2 * ((6 if jax else 5) + 4 + 4)
    assert "## Targets" in md and "### The floor" in md and "## 1 thread" in md
    assert ("jax is not installed" in md) == (not jax)
    for method in ("bptt", "decompose", "rtrl"):
        assert math.isfinite(result["scaling"]["methods"][method]["exponent"]), method
    assert math.isfinite(result["memory"]["exponent"])
    assert result["environment"]["torch_threads"] == 1

    from manual_bptt.environment import describe

    assert set(describe()) <= set(result["environment"])  # the benchmark adds to the one description
    _assert_names_the_machine(result, md)


def _assert_names_the_machine(result: dict, md: str) -> None:
    """results.json's "machine" and results.md's "This machine": the CPU and its vector extensions,
    numpy's BLAS with the kernel it selected, torch's BLAS, and the floor measured in every group."""
    import torch
    from threadpoolctl import threadpool_info

    m = result["machine"]
    assert m["cpu"] == result["environment"]["cpu"] and m["cpu"] != "unknown"
    assert m["vector_extensions"]["source"] in ("/proc/cpuinfo", "numpy")
    assert m["vector_extensions"]["extensions"], "no vector extension found"
    assert m["widest_vector"] != "none found"
    loaded = {(d.get("internal_api"), d.get("version"), d.get("architecture")) for d in threadpool_info()}
    assert m["numpy_blas"]["pools"], "numpy's BLAS not found"
    for pool in m["numpy_blas"]["pools"]:
        assert pool["user_api"] == "blas" and pool["num_threads"] == 1
        assert (pool["internal_api"], pool["version"], pool["architecture"]) in loaded
        assert (
            f"{pool['internal_api']} {pool['version']} ({pool['library']}, kernel {pool['architecture']}"
            in md
        )
    tb = m["torch_blas"]
    assert tb["mkl_available"] == torch.backends.mkl.is_available()
    assert tb["blas_info"] and f"torch's BLAS: {tb['blas_info']}" in md
    assert (tb["mkl_version"] is not None) == ("Math Kernel Library" in torch.__config__.show())
    assert "## This machine" in md and f"- CPU: {m['cpu']}" in md and "Machine-dependent:" in md
    assert " ".join(m["vector_extensions"]["extensions"]) in md
    floors = {(r["cell"], r["size"], r["dtype"]): r for r in m["floor"]}
    assert set(floors) == {(g["cell"], g["size"]["name"], g["dtype"]) for g in result["groups"]}
    for g in result["groups"]:
        r = floors[g["cell"], g["size"]["name"], g["dtype"]]
        assert r["floor_ms"] == g["contenders"][run_names().PRODUCTS]["median"] * 1e3
        assert r["bptt_over_floor"] == g["ratios"][run_names().PRODUCTS]["ratio"]
        assert r["floor_over_torch"] == g["floor_vs_nn_rnn"]["ratio"]
        assert 0 < r["gemm_numpy_over_torch"] < math.inf
        row = f"| {r['cell']} | {r['size']} | {r['dtype']} | 1 | {run_names().fmt_ms(r['floor_ms'] / 1e3)} |"
        assert row in md


def run_names():
    return load_runner()


def test_the_vector_extensions_come_from_numpy_where_there_is_no_cpuinfo(monkeypatch) -> None:
    """Off Linux (no /proc/cpuinfo) numpy's run-time CPU detection names them; on Linux the flags do,
    and a flag that is no vector extension (smep, a security feature) is not one."""
    load_runner()
    from rnnbench import environment as env

    monkeypatch.setattr(env, "_cpuinfo", lambda: [{"flags": "fpu sse2 smep avx2 avx512f amx_tile erms"}])
    assert env.vector_extensions() == {
        "source": "/proc/cpuinfo",
        "extensions": ["sse2", "avx2", "avx512f", "amx_tile"],
    }
    assert env.widest_vector(env.vector_extensions()["extensions"]) == "AMX + AVX-512"
    monkeypatch.setattr(env, "_cpuinfo", lambda: [{"Features": "fp asimd sve sve2"}])
    assert env.vector_extensions()["extensions"] == ["asimd", "sve", "sve2"]
    monkeypatch.setattr(env, "_cpuinfo", lambda: [])
    monkeypatch.setattr(
        env, "_numpy_cpu_features", lambda: {"SSE2": True, "AVX2": True, "AVX512F": False, "POPCNT": True}
    )
    assert env.vector_extensions() == {"source": "numpy", "extensions": ["SSE2", "AVX2"]}
    assert env.widest_vector(["SSE2", "AVX2"]) == "AVX2" and env.widest_vector([]) == "none found"
    assert env._numpy_cpu_features(), "numpy's run-time CPU detection not found"


def test_a_kernel_forced_by_openblas_coretype_is_named_as_forced(monkeypatch) -> None:
    load_runner()
    from rnnbench import environment as env
    from rnnbench import machine, tables

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    m = machine.summary(env.environment(), [])
    assert m["numpy_blas"]["kernel_forced_by"] == "Haswell"
    assert "kernel forced by OPENBLAS_CORETYPE=Haswell" in "\n".join(tables.machine(m))
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    m = machine.summary(env.environment(), [])
    assert m["numpy_blas"]["kernel_forced_by"] is None and "forced" not in "\n".join(tables.machine(m))


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
    lineup = contenders.LINEUP | {"rnn": [*contenders.LINEUP["rnn"], _twin_of_ours(name)]}
    monkeypatch.setattr(contenders, "LINEUP", lineup)
    argv = ["--quick", "--cells", "rnn", "--sizes", "small", "--dtypes", "float64", "--no-scaling"]
    run.main([*argv, "--out", str(tmp_path)])

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

    lineup = contenders.LINEUP | {"rnn": [*contenders.LINEUP["rnn"], _twin_of_ours("off by 1e-6", 1e-6)]}
    monkeypatch.setattr(contenders, "LINEUP", lineup)
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
    monkeypatch.setattr(blocks, "_ROWS", rows)
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
    assert len(shapes) == 2 * s.T + len(blocks.step_blocks(s.T, s.B)) * (4 if s.tokens else 7)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("size", ["medium", "large"])
@pytest.mark.parametrize("rows", [1024, 7])
def test_gated_products_alone_makes_every_product_of_the_gated_bptt_once(cell, size, rows, monkeypatch):
    """The gated floor's FLOPs are the model's with G gate blocks; two (B, *) products per step."""
    run = load_runner()
    from rnnbench import gated as rg
    from rnnbench.floor import gated_products_alone

    monkeypatch.setattr(blocks, "_ROWS", rows)
    s = _quick_size(size)
    G = rg.GATED[cell][0]
    w, xs, _ = rg.gated_inputs(cell, s, "float64")
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def mm(a, b, out=None):
        shapes.append((a.shape, b.shape))
        assert np.isfinite(a).all() and np.isfinite(b).all()
        return np.matmul(a, b, out=out)

    gated_products_alone(rg.ours_params(cell, w), s.T, s.B, np.ascontiguousarray(xs.swapaxes(0, 1)), mm)
    assert sum(2 * a[0] * a[1] * b[1] for a, b in shapes) == run.model_flops(s, gates=G)
    per_step = [((s.B, s.H), (s.H, G * s.H)), ((s.B, G * s.H), (G * s.H, s.H))]
    assert [shapes.count(x) for x in per_step] == [s.T, s.T]


def _quick_size(name: str):
    return next(x for x in load_runner().QUICK.sizes if x.name == name)


@needs_jax
@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_jax_elman_computes_the_loss_and_every_gradient_of_our_bptt(size: str) -> None:
    """Loss, dU, dW, db, dV, dc, ds0 and (dense) dxs of the JAX contender against bptt's."""
    load_runner()
    from rnnbench import contenders, jaxpeer

    assert jaxpeer.load(1) is not None
    s = _quick_size(size)
    p, xs, ys = contenders.make_inputs(s, "float64")
    call, compile_s = contenders.jax_elman(s, p, xs, ys)
    loss, grads = call()
    got = jaxpeer.to_numpy(grads)
    want = mb.bptt(p, xs, ys)
    assert compile_s > 0
    assert_close(float(loss), want.loss, name="loss")
    expected = [want.grads.U, want.grads.W, want.grads.b, want.grads.V, want.grads.c, want.ds0]
    expected += [] if s.tokens else [want.dxs]
    assert len(got) == len(expected)
    for name, a, e in zip(["U", "W", "b", "V", "c", "ds0", "dxs"], got, expected, strict=False):
        assert_close(a.reshape(e.shape), e, name=name)


@needs_jax
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("size", ["medium", "large"])
def test_jax_gated_cells_compute_the_loss_and_every_gradient_of_torch(cell: str, size: str) -> None:
    """JAX's GRU / LSTM against nn.GRU / nn.LSTM autograd on the same weights, float64: loss,
    U, W, b_ih, b_hh, V, c, h0 (and c0) and xs."""
    load_runner()
    from rnnbench import gated, jaxpeer

    assert jaxpeer.load(1) is not None
    w, xs, ys = gated.gated_inputs(cell, _quick_size(size), "float64", seed=3)
    loss, grads = gated.jax_gated(cell, w, xs, ys)[0]()
    t_loss, t_grads = gated.torch_gated(cell, w, xs, ys)()
    assert_close(float(loss), t_loss.item(), name="loss")
    got = jaxpeer.to_numpy(grads)
    assert len(got) == len(t_grads) == (9 if cell == "lstm" else 8)
    for i, (a, e) in enumerate(zip(got, t_grads, strict=True)):
        e = e.detach().numpy()
        assert_close(a.reshape(e.shape), e, name=f"{cell} gradient {i}")


def test_without_jax_the_run_has_no_jax_rows_and_says_why(tmp_path: Path, monkeypatch) -> None:
    run = load_runner()
    from rnnbench import jaxpeer

    monkeypatch.setattr(jaxpeer, "available", lambda: False)
    monkeypatch.setattr(jaxpeer, "current", lambda: None)
    argv = ["--quick", "--cells", "rnn,gru", "--sizes", "small,medium", "--dtypes", "float64", "--no-scaling"]
    result = run.main([*argv, "--out", str(tmp_path)])
    md = (tmp_path / "results.md").read_text()
    assert [g["cell"] for g in result["groups"]] == ["rnn", "rnn", "gru"]
    for g in result["groups"]:
        assert not any(name.startswith("JAX") for name in g["contenders"])
        assert any("jax is not installed" in note for note in g["missing"])
    assert "- jax is not installed" in md and "JAX jit" not in md.split("## 1 thread")[1]
    assert result["groups"][0]["fastest_peer"]["name"] == run.NN_RNN


def test_our_gated_bptt_gets_rows_once_manual_bptt_has_gru_params(tmp_path: Path, monkeypatch) -> None:
    """A stand-in GRUParams and a bptt that computes nn.GRU's loss from the fields it is given:
    our contender is then timed, checked against nn.GRU's loss (so p holds the same weights)
    and gets ratios, a fastest-peer ratio and targets."""
    run = load_runner()
    from rnnbench import gated

    class GRUParams:
        def __init__(self, *, U, W, b_ih, b_hh, V, c):
            self.weights = gated.GatedWeights(U=U, W=W, b_ih=b_ih, b_hh=b_hh, V=V, c=c)

    def bptt(p, xs, ys):
        if not isinstance(p, GRUParams):
            raise TypeError("not a GRUParams")
        loss, _ = gated.torch_gated("gru", p.weights, xs, ys)()
        return type("Result", (), {"loss": loss.item()})

    monkeypatch.setattr(mb, "GRUParams", GRUParams, raising=False)
    monkeypatch.setattr(mb, "bptt", bptt)
    assert gated.ours_missing("gru") is None and gated.ours_missing("lstm") is not None
    argv = ["--quick", "--cells", "gru", "--sizes", "medium,large", "--dtypes", "float64", "--no-scaling"]
    result = run.main([*argv, "--out", str(tmp_path)])
    for g in result["groups"]:
        assert run.OURS in g["contenders"] and "torch.nn.GRU" in g["ratios"]
        assert 0 < g["fastest_peer"]["ratio"] < math.inf
    assert {t["size"] for t in result["targets"]} == {"medium", "large"}
    assert all(t["cell"] == "gru" for t in result["targets"])


def test_a_second_thread_count_runs_in_its_own_process(tmp_path: Path) -> None:
    """--threads 1,2: the groups of both counts, the second from a subprocess whose thread pools
    (numpy's BLAS and torch) were at 2 threads."""
    run = load_runner()
    argv = ["--quick", "--cells", "rnn", "--sizes", "small", "--dtypes", "float64", "--no-scaling"]
    result = run.main([*argv, "--threads", "1,2", "--out", str(tmp_path)])
    assert [g["threads"] for g in result["groups"]] == [1, 2]
    assert result["thread_runs"]["1"] == "this process"
    child = result["thread_runs"]["2"]
    assert child["process"] == "subprocess" and child["environment"]["torch_threads"] == 2
    assert {p["num_threads"] for p in child["environment"]["threadpools"]} == {2}
    md = (tmp_path / "results.md").read_text()
    assert "## 1 thread " in md and "## 2 threads " in md
    assert {t["threads"] for t in result["targets"]} == {1, 2}


def _numpy_openblas():
    """numpy's own OpenBLAS (its cblas symbols scipy_cblas_?gemm64_), or None."""
    import ctypes

    from threadpoolctl import threadpool_info

    for d in threadpool_info():
        if d.get("internal_api") == "openblas" and "numpy" in d["filepath"]:
            lib = ctypes.CDLL(d["filepath"])
            if hasattr(lib, "scipy_cblas_dgemm64_"):
                return lib
    return None


@pytest.mark.skipif(_numpy_openblas() is None, reason="numpy's BLAS is not scipy-openblas64")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_blas_studys_cblas_wrapper_multiplies_every_layout_like_numpy(dtype: str) -> None:
    """The ctypes cblas wrapper the BLAS study calls MKL and OpenBLAS through (rnnbench.backends),
    here over numpy's own OpenBLAS: C-contiguous operands, transposed views (bptt's delta^T S,
    torch's x W^T), a row-strided view, a one-row operand, with and without out=, none copied
    but the one with neither layout; a mismatch is refused."""
    import ctypes

    load_runner()
    from rnnbench import backends

    lib, copies = _numpy_openblas(), [0]
    gemm = {np.float64: lib.scipy_cblas_dgemm64_, np.float32: lib.scipy_cblas_sgemm64_}
    mm = backends._cblas_mm(gemm, ctypes.c_int64, copies)
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)
    wide = rng.standard_normal((7, 9)).astype(dtype)
    cases = [
        (A, B),
        (np.ascontiguousarray(A.T).T, B),
        (A, np.ascontiguousarray(B.T).T),
        (wide[:, 2:7], B),  # rows 9 apart
        (A[:1], B),
        (A[::2, ::2], B[::2]),  # a: neither layout, copied; b: rows 6 apart, passed as it is
    ]
    tol = 1e-12 if dtype == "float64" else 1e-5
    for a, b in cases:
        want = a.astype(np.float64) @ b.astype(np.float64)
        out = np.full((a.shape[0], b.shape[1]), np.nan, dtype)
        assert mm(a, b, out=out) is out
        for got in (out, mm(a, b)):
            assert got.dtype == dtype
            assert np.abs(got - want).max() <= tol * np.abs(want).max(), (a.strides, b.strides)
    assert copies == [2]  # the last case's a, in both calls
    with pytest.raises(ValueError, match="shapes"):
        mm(A, A)
