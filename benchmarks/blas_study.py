"""The BLAS study: does another product backend beat numpy's BLAS at the RNN's shapes, and would a
bptt built on it beat torch's layers on this machine?

    python benchmarks/blas_study.py [--rounds 15] [--floor-rounds 1.0] [--no-floors] [--out DIR]

Backends (rnnbench/backends.py), each found or noted as missing: numpy (np.matmul: numpy's BLAS,
as bptt calls it), torch (torch.matmul on zero-copy views: torch's BLAS, MKL in the CPU wheel; a
reference, never a dependency), mkl (the `mkl` package's cblas through ctypes, sequential),
openblas-new (the `scipy-openblas64` package: a newer OpenBLAS than numpy's), blis (the `blis`
package). Install the optional ones into a venv of your own; the study needs numpy, torch and
threadpoolctl.

Part 1, products: C = A B at the RNN's shapes (m x k by k x n): 64x512 by 512x2048 (LSTM large,
W h_{t-1}), 64x512 by 512x512 (Elman large, per step), 32x256 by 256x768 (GRU medium, per step),
2048x256 by 256x256 (a medium block of steps), and 256x2048 by 2048x256 (the weight gradient of
that block, delta^T S); float64 and float32; layouts NN (both C-contiguous, bptt's forward and
backward products), TN (A a transposed view: bptt's weight gradients) and NT (B a transposed view:
torch's x W^T). Per (shape, dtype, layout) every backend is timed in one interleaved round-robin
(rnnbench.harness: slots of about 20 ms, the order rotated every round), one thread each; the
ratios backend / numpy are medians over rounds with the per-round spread. Every backend's float64
product must be within the project's tolerance of numpy's (max|a-b| <= 1e-10 max|ref| + 1e-12).

Part 2, floors: for the Elman, GRU and LSTM cells at the benchmark's medium and large sizes,
float64 and float32, one round-robin of torch's layer (nn.RNN / nn.GRU / nn.LSTM, forward and
backward as in benchmarks/run.py), our bptt, and bptt's products alone (rnnbench.floor) on numpy
and on mkl, openblas-new (--floor-backends) and every backend that beat numpy at some product of
part 1. A bptt on backend X is estimated
per round as bptt - floor(numpy) + floor(X): our own elementwise work is the same whatever BLAS
multiplies; the estimate over torch's layer is the ratio that decides.

Every backend runs in a process of its own (a worker), and this process only orders the slots:
libmkl_rt puts its libraries in the global symbol scope, and torch's static MKL, loaded in the
same process after it, then calls the other MKL's functions (torch.__config__.show() reports
the other version): the torch worker never loads another BLAS. Each slot is timed inside its
worker, one worker running at a time, in the rotated order of rnnbench.harness.round_robin.

Writes DIR/blas_study.json and DIR/blas_study.md (DIR: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

from rnnbench import backends
from rnnbench.harness import Contender, calibrate, median, paired_ratio, stats
from rnnbench.tables import fmt_ms, machine, table

#: (m, k, n, what it is in bptt)
SHAPES = (
    (64, 512, 2048, "LSTM large: W h_{t-1} (B, 4H)"),
    (64, 512, 512, "Elman large: W s_{t-1} per step"),
    (32, 256, 768, "GRU medium: W h_{t-1} (B, 3H)"),
    (2048, 256, 256, "a medium block of steps (rows, H) by (H, H)"),
    (256, 2048, 256, "that block's weight gradient delta^T S"),
)
LAYOUTS = {
    "NN": "both C-contiguous",
    "TN": "A a transposed view (bptt's weight gradients)",
    "NT": "B a transposed view (torch's x W^T)",
}
DTYPES = ("float64", "float32")
TOL64 = (1e-10, 1e-12)
#: The backends and how each worker makes it (the ctypes ones before anything imports torch).
MAKERS = {
    "numpy": backends.numpy_backend,
    "torch": backends.torch_backend,
    "mkl": backends.mkl,
    "openblas-new": backends.openblas_new,
    "blis": backends.blis,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def operands(m: int, k: int, n: int, dtype: str, layout: str, seed: int = 0):
    """A (m, k) and B (k, n) in the layout's memory order, and a C-contiguous out (m, n)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    a = np.ascontiguousarray(A.T).T if layout[0] == "T" else A
    b = np.ascontiguousarray(B.T).T if layout[1] == "T" else B
    return a, b, np.empty((m, n), dtype)


# ---- inside a worker -----------------------------------------------------------------------


def accuracy(be: backends.Backend) -> list[dict]:
    """be's float64 product at every shape and layout against numpy's (np.matmul in the same
    worker), and its float32 product's error relative to the float64 one (information only)."""
    rows = []
    for m, k, n, _ in SHAPES:
        for layout in LAYOUTS:
            a, b, _ = operands(m, k, n, "float64", layout, seed=1)
            ref = np.matmul(a, b)
            scale = float(np.abs(ref).max())
            err = float(np.abs(be.mm(a, b) - ref).max())
            err32 = float(np.abs(be.mm(a.astype(np.float32), b.astype(np.float32)) - ref).max()) / scale
            ok = bool(np.isfinite(err) and err <= TOL64[0] * scale + TOL64[1])
            rows.append({"shape": [m, k, n], "layout": layout, "max_abs_err": err, "rel_err": err / scale,
                         "ok": ok, "float32_rel_err": err32})  # fmt: skip
    return rows


def size_named(name: str, quick: bool):
    from rnnbench.config import FULL, QUICK

    return next(s for s in (QUICK if quick else FULL).sizes if s.name == name)


def make_call(be: backends.Backend, spec: tuple):
    """The callable of one contender: ("product", m, k, n, dtype, layout), ("floor" | "bptt" |
    "torch_layer", cell, size, quick, dtype)."""
    if spec[0] == "product":
        a, b, c = operands(*spec[1:])
        return lambda: be.mm(a, b, out=c)
    import manual_bptt as mb
    from rnnbench import contenders as rc
    from rnnbench import gated as rg
    from rnnbench.floor import gated_products_alone, products_alone

    kind, cell, size, quick, dtype = spec
    s = size_named(size, quick)
    if cell == "rnn":
        p, xs, ys = rc.make_inputs(s, dtype)
        X = rc.time_major(s, xs)
        floor = lambda: products_alone(p, s.T, s.B, X, be.mm)  # noqa: E731
        torch_layer = lambda: rc.nn_rnn_contenders(s, dtype, p, xs, ys)[0].fn  # noqa: E731
    else:
        w, xs, ys = rg.gated_inputs(cell, s, dtype)
        p = rg.ours_params(cell, w)
        X = np.ascontiguousarray(xs.swapaxes(0, 1))
        floor = lambda: gated_products_alone(w, s.T, s.B, X, be.mm)  # noqa: E731

        def torch_layer():
            call = rg.torch_gated(cell, w, xs, ys)
            return lambda: call()[0].item()

    if kind == "floor":
        return floor
    if kind == "bptt":
        return lambda: mb.bptt(p, xs, ys).loss
    return torch_layer()


def worker(name: str, conn) -> None:
    """One backend's process: make the backend first (before torch is imported), then serve
    ("make", key, spec) / ("calibrate", key, slot_s) / ("slot", key) / ("accuracy",) / ("info",)."""
    be = MAKERS[name]()
    if isinstance(be, str):
        conn.send(("missing", be))
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    limits = threadpool_limits(limits=1)
    calls: dict = {}
    conn.send(("ready", be.info))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            break
        if msg[0] == "make":
            calls[msg[1]] = Contender(str(msg[1]), make_call(be, msg[2]), 0.0)
            conn.send("ok")
        elif msg[0] == "calibrate":
            calibrate([calls[msg[1]]], msg[2])
            conn.send(calls[msg[1]].number)
        elif msg[0] == "slot":
            c = calls[msg[1]]
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(c.number):
                c.fn()
            gc.enable()
            conn.send((time.perf_counter() - t0) / c.number)
        elif msg[0] == "drop":
            calls.pop(msg[1], None)
            conn.send("ok")
        elif msg[0] == "accuracy":
            conn.send(accuracy(be))
        elif msg[0] == "info":
            from rnnbench.environment import environment

            conn.send(
                {"environment": environment(), "copies": be.copies[0], "torch": torch.__config__.show()}
            )
    limits.restore_original_limits()


# ---- in this process: the workers and the round-robin ----------------------------------------


class Workers:
    """One worker process per backend; ask(name, *msg) sends a message and waits for the answer."""

    def __init__(self, names: list[str]):
        ctx = mp.get_context("spawn")
        self.conns, self.procs, self.info, self.missing = {}, {}, {}, {}
        for name in names:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(name, child), daemon=True)
            proc.start()
            status, info = parent.recv()
            if status == "missing":
                self.missing[name] = info
                proc.join()
                continue
            self.conns[name], self.procs[name], self.info[name] = parent, proc, info
        self.count = 0

    def ask(self, name: str, *msg):
        self.conns[name].send(msg)
        return self.conns[name].recv()

    def contender(self, name: str, spec: tuple) -> tuple[str, int]:
        self.count += 1
        key = self.count
        self.ask(name, "make", key, spec)
        return name, key

    def round_robin(self, entries: dict[str, tuple[str, int]], rounds: int, slot_s: float) -> dict:
        """rnnbench.harness.round_robin over workers' contenders: {label: (worker, key)};
        returns {label: {round: seconds per call}}, each slot timed inside its worker."""
        labels = list(entries)
        for label in labels:
            self.ask(*entries[label][:1], "calibrate", entries[label][1], slot_s)
        samples: dict[str, dict[int, float]] = {label: {} for label in labels}
        for r in range(rounds):
            k = r % len(labels)
            for label in labels[k:] + labels[:k]:
                name, key = entries[label]
                samples[label][r] = self.ask(name, "slot", key)
        for name, key in entries.values():
            self.ask(name, "drop", key)
        return samples

    def close(self) -> None:
        for name, conn in self.conns.items():
            conn.send(("stop",))
            self.procs[name].join(timeout=30)


def products(ws: Workers, rounds: int, slot_s: float) -> list[dict]:
    """Part 1: one round-robin of every backend per (shape, dtype, layout)."""
    out = []
    for m, k, n, what in SHAPES:
        for dtype in DTYPES:
            for layout in LAYOUTS:
                entries = {name: ws.contender(name, ("product", m, k, n, dtype, layout)) for name in ws.conns}
                samples = ws.round_robin(entries, rounds, slot_s)
                rows = {}
                for name, sm in samples.items():
                    st = stats(list(sm.values()))
                    rows[name] = st | {"gflops": 2.0 * m * k * n / st["median"] / 1e9}
                    if name != "numpy":
                        rows[name]["over_numpy"] = paired_ratio(sm, samples["numpy"])
                out.append(
                    {"shape": [m, k, n], "what": what, "dtype": dtype, "layout": layout, "backends": rows}
                )
                best = min(rows, key=lambda x: rows[x]["median"])
                log(f"{m}x{k} by {k}x{n} {dtype} {layout}: fastest {best}")
    return out


def winners(part1: list[dict]) -> list[str]:
    """Backends other than numpy and torch that beat numpy (ratio < 1) at some product."""
    won = set()
    for g in part1:
        for name, r in g["backends"].items():
            if name not in ("numpy", "torch") and r["over_numpy"]["ratio"] < 1.0:
                won.add(name)
    return sorted(won)


TORCH_NAMES = {"rnn": "torch.nn.RNN", "gru": "torch.nn.GRU", "lstm": "torch.nn.LSTM"}


def floor_group(ws: Workers, cell: str, size: str, quick: bool, dtype: str, use: list[str], rounds: int,
                slot_s: float) -> dict:  # fmt: skip
    """Part 2 for one (cell, size, dtype): torch's layer, our bptt, the floor on each backend."""
    t_name = TORCH_NAMES[cell]
    entries = {
        t_name: ws.contender("torch", ("torch_layer", cell, size, quick, dtype)),
        "bptt": ws.contender("numpy", ("bptt", cell, size, quick, dtype)),
    }
    entries |= {f"floor {n}": ws.contender(n, ("floor", cell, size, quick, dtype)) for n in use}
    samples = ws.round_robin(entries, rounds, slot_s)
    rows = {label: stats(list(sm.values())) for label, sm in samples.items()}
    estimates = {}
    for name in use:
        est = {
            r: samples["bptt"][r] - samples["floor numpy"][r] + samples[f"floor {name}"][r]
            for r in range(rounds)
        }
        per_round = stats([est[r] / samples[t_name][r] for r in range(rounds)])
        value = median(samples["bptt"]) - median(samples["floor numpy"]) + median(samples[f"floor {name}"])
        estimates[name] = {
            "bptt_ms": value * 1e3,
            "over_torch": value / median(samples[t_name]),
            "round_q1": per_round["q1"],
            "round_q3": per_round["q3"],
            "floor_over_torch": paired_ratio(samples[f"floor {name}"], samples[t_name]),
            "floor_over_numpy_floor": paired_ratio(samples[f"floor {name}"], samples["floor numpy"]),
        }
    return {
        "cell": cell,
        "size": size,
        "dtype": dtype,
        "torch": t_name,
        "rows": rows,
        "bptt_over_torch": paired_ratio(samples["bptt"], samples[t_name]),
        "bptt_over_floor": paired_ratio(samples["bptt"], samples["floor numpy"]),
        "estimates": estimates,
    }


def floors(ws: Workers, use: list[str], factor: float, slot_s: float, quick: bool) -> list[dict]:
    """Part 2 for every cell, dtype and dense size (QUICK's tiny ones with quick)."""
    out = []
    for cell in ("rnn", "gru", "lstm"):
        for dtype in DTYPES:
            for size in ("medium", "large"):
                rounds = max(3, round((11 if size == "medium" else 7) * factor))
                log(f"floors: {cell} {size} {dtype}, {rounds} rounds, backends {', '.join(use)}")
                out.append(floor_group(ws, cell, size, quick, dtype, use, rounds, slot_s))
    return out


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# BLAS study: product backends at the RNN's shapes",
        "",
        f"- date: {env['date']}; command: `{env['command']}`; one thread for every library",
        f"- load average (1, 5, 15 min) at start {result['loadavg_start']}, at end {result['loadavg_end']}; "
        f"{result['wall_s']:.0f} s wall",
        "",
        *machine(result["machine"]),
        "",
        "## The backends",
        "",
        *(f"- {name}: {info}" for name, info in result["backends"].items()),
        *(f"- not measured: {name}: {why}" for name, why in result["missing"].items()),
        "",
        "## Part 1: products, backend / numpy (time ratio; below 1: the backend is faster)",
        "",
        "Median over the rounds of an interleaved round-robin; in brackets the per-round IQR.",
        "",
    ]
    names = [n for n in result["backends"] if n != "numpy"]
    head = ["A", "B", "dtype", "layout", "numpy GFLOP/s", *(f"{n} / numpy" for n in names)]

    def cell(r: dict) -> str:
        o = r["over_numpy"]
        return f"{o['ratio']:.3f} ({o['round_q1']:.2f}-{o['round_q3']:.2f})"

    rows = (
        [f"{g['shape'][0]}x{g['shape'][1]}", f"{g['shape'][1]}x{g['shape'][2]}", g["dtype"], g["layout"],
         f"{g['backends']['numpy']['gflops']:.1f}", *(cell(g["backends"][n]) for n in names)]
        for g in result["products"]
    )  # fmt: skip
    lines += table(head, "llll" + "r" * (1 + len(names)), rows)
    bad = [r for r in result["accuracy"] if not r["ok"]]
    worst = max(result["accuracy"], key=lambda r: r["rel_err"])
    lines += [
        "",
        f"float64 accuracy against numpy's product: {len(result['accuracy']) - len(bad)} of "
        f"{len(result['accuracy'])} within max|a-b| <= 1e-10 max|ref| + 1e-12; the largest relative "
        f"difference {worst['rel_err']:.2e} ({worst['backend']}, {worst['shape']}, {worst['layout']}).",
    ]
    if result.get("floors"):
        lines += [
            "",
            "## Part 2: the floor on each backend, and a bptt built on it, against torch's layer",
            "",
            "bptt on X (estimated) = bptt - floor(numpy) + floor(X), per round; / torch: over the",
            "torch layer of the same round-robin (in brackets: the per-round IQR).",
            "",
        ]
        be = list(result["floors"][0]["estimates"])
        head = ["cell", "size", "dtype", "torch ms", "bptt ms", "bptt / torch"]
        head += [f"floor {n} / floor numpy" for n in be if n != "numpy"]
        head += [f"bptt on {n} / torch" for n in be if n != "numpy"]
        rows = []
        for g in result["floors"]:
            e, b = g["estimates"], g["bptt_over_torch"]
            others = [n for n in be if n != "numpy"]
            row = [g["cell"], g["size"], g["dtype"], fmt_ms(g["rows"][g["torch"]]["median"])]
            row += [
                fmt_ms(g["rows"]["bptt"]["median"]),
                f"{b['ratio']:.3f} ({b['round_q1']:.2f}-{b['round_q3']:.2f})",
            ]
            row += [f"{e[n]['floor_over_numpy_floor']['ratio']:.3f}" for n in others]
            row += [
                f"{e[n]['over_torch']:.3f} ({e[n]['round_q1']:.2f}-{e[n]['round_q3']:.2f})" for n in others
            ]
            rows.append(row)
        lines += table(head, "lll" + "r" * (len(head) - 3), rows)
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="round-robin rounds of part 1")
    ap.add_argument("--floor-rounds", type=float, default=1.0, help="multiply part 2's rounds by this")
    ap.add_argument("--no-floors", action="store_true", help="part 1 only")
    ap.add_argument("--slot-ms", type=float, default=20.0)
    ap.add_argument(
        "--quick", action="store_true", help="part 2 at tiny sizes (a smoke run; numbers mean nothing)"
    )
    ap.add_argument(
        "--backends", default=",".join(MAKERS), help="comma-separated subset of " + ",".join(MAKERS)
    )
    ap.add_argument(
        "--floor-backends",
        default="mkl,openblas-new",
        help="backends of part 2 besides numpy, torch and every backend that beat numpy in part 1",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--name", default="blas_study", help="file name of the results, without suffix")
    args = ap.parse_args(argv)
    names = ["numpy", "torch", *(n for n in args.backends.split(",") if n not in ("numpy", "torch"))]
    slot_s = args.slot_ms / 1e3
    from rnnbench.environment import load_average
    from rnnbench.machine import summary

    wall0 = time.perf_counter()
    ws = Workers(names)
    try:
        info = {name: ws.ask(name, "info") for name in ws.conns}
        env = info["numpy"]["environment"]
        result = {
            "environment": env,
            "loadavg_start": load_average(),
            "backends": ws.info,
            "missing": ws.missing,
        }
        result["torch_worker_blas"] = info["torch"]["environment"]["torch_blas"]
        log("accuracy")
        result["accuracy"] = [r | {"backend": n} for n in ws.conns for r in ws.ask(n, "accuracy")]
        log("part 1: products")
        result["products"] = products(ws, args.rounds, slot_s)
        extra = [n for n in args.floor_backends.split(",") if n in ws.conns]
        result["floor_backends"] = list(
            dict.fromkeys(["numpy", "torch", *extra, *winners(result["products"])])
        )
        if not args.no_floors:
            result["floors"] = floors(ws, result["floor_backends"], args.floor_rounds, slot_s, args.quick)
        result["copies"] = {name: ws.ask(name, "info")["copies"] for name in ws.conns}
    finally:
        ws.close()
    result["loadavg_end"] = load_average()
    result["wall_s"] = time.perf_counter() - wall0
    env["torch_blas"] = result["torch_worker_blas"]  # torch's BLAS as the torch worker has it
    result["machine"] = summary(env, [])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=float))
    md = markdown(result)
    (args.out / f"{args.name}.md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
