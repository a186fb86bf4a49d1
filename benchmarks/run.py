"""Benchmark runner: manual_bptt.bptt against PyTorch and JAX, the same threads for everyone, interleaved.

    python benchmarks/run.py [--quick] [--out DIR] [--sizes small,medium,large] [--dtypes float64,float32]
                             [--cells rnn,gru,lstm] [--threads 1,2]

Writes DIR/results.md (tables), DIR/results.json (every sample and the environment) and
DIR/scaling.png (time and peak memory against T); DIR defaults to benchmarks/results/. Both
results files name the machine (rnnbench/machine.py): the CPU model and its vector extensions,
numpy's BLAS and the kernel it selected (or that OPENBLAS_CORETYPE forced), torch's BLAS, and
the floor measured there, and say which numbers depend on the machine.
``--quick`` runs tiny sizes in a few seconds (the smoke test runs it); its numbers mean nothing.
Needs numpy, torch, threadpoolctl and matplotlib; JAX (jax, jaxlib) is a contender when it is
installed (the `bench` extra), and the results say so when it is not. A full run of the Elman
cell at one thread takes about 6 minutes; the gated cells and every further thread count add to it.

Threads: every thread count of --threads (default 1) is one section of the results, with
numpy's BLAS (threadpoolctl), torch (set_num_threads) and XLA on that many threads. XLA fixes
its threads when jax first runs in a process (rnnbench/jaxpeer.py), so the first count runs in
this process and every further one in a fresh process of this runner (--no-scaling), whose
groups are merged into these results. XLA at one thread: Eigen's multi-threading off and one
intra-op thread; at more, XLA's default, which is every logical CPU, so JAX takes part at 1
thread and at os.cpu_count() threads only (the results note any other count).

Cells (--cells, default all): rnn, the Elman cell, at every size; gru and lstm at the dense
sizes (medium, large), against nn.GRU / nn.LSTM and JAX, with our own gated bptt once
manual_bptt has GRUParams / LSTMParams (rnnbench/gated.py).

What is measured, in one run, with numpy's BLAS, torch and XLA each limited to N threads:

* per size (small / medium / large) and dtype (float64 / float32), in round-robin: every
  round gives each contender one timed slot, in an order rotated by one each round, so slow
  phases of a noisy machine hit every contender alike. A slot makes enough back-to-back calls
  to last about 20 ms (one call for anything slower) and records the mean per call, and
  separately its first call ("cold": right after another contender). Contenders:
    - ``manual_bptt.bptt``: forward, softmax cross-entropy summed over t, backward, from
      numpy arrays through the public API (input validation and layout included);
    - ``reference.bptt``: the autograd oracle, an unrolled Python loop over t;
    - ``torch.nn.RNN``: nn.RNN + nn.Linear + F.cross_entropy(sum), forward and
      torch.autograd.grad, on tensors built beforehand, for the same outputs as bptt
      (weights, biases, initial state and, for dense inputs, the inputs);
    - ``torch.nn.RNN (weights only)``: the same without the input and initial-state gradients;
    - JAX: ``jax.jit(jax.value_and_grad(loss))`` over ``jax.lax.scan``, float64 enabled, for
      the same outputs, compiled before timing (compile time reported apart);
    - ``bptt's matrix products alone``: the matrix products of one bptt call at the same
      shapes and in the same blocks, without any other work (products_alone): a floor for
      bptt's time with this BLAS, and so for its ratio to nn.RNN;
    - ``GEMM numpy`` / ``GEMM torch``: an N x N by N x N matrix product, the FLOP rate that
      every result is expressed as a fraction of (the faster of the two).
  Before timing, the model contenders must agree on the loss. The fastest peer of a group is
  the fastest of nn.RNN / nn.GRU / nn.LSTM and JAX.
* scaling: time against T for bptt (linear), decompose + norms() of every term (quadratic)
  and rtrl (linear in T, O(H^4) per step, so a small H), on token inputs; fitted log-log
  exponents over the largest T.
* peak memory of one bptt call against T (tracemalloc sees numpy's allocations), compared
  with the size of what the forward pass caches and with a prediction of the peak.

FLOPs are those of the matrix products of the model, forward and backward (elementwise work
is not counted), the same count for every contender that returns the same gradients (see
rnnbench/contenders.py). The pieces of the runner are in rnnbench/ (its docstring says which
does what, and where a new contender goes); this file is the command line over them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# rnnbench sits beside this file (also when it is loaded by file path, as the smoke test does);
# in a clone that is not installed, manual_bptt and reference come from its src/ (appended:
# an installed copy comes first).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))

import torch
from threadpoolctl import threadpool_limits

from rnnbench import jaxpeer, machine
from rnnbench.config import FULL, QUICK, Config, Size
from rnnbench.contenders import (
    CELL_SIZES,
    GEMM_NP,
    GEMM_TORCH,
    JAX,
    LINEUP,
    NN_RNN,
    NN_RNN_WEIGHTS,
    ORACLE,
    OURS,
    PRODUCTS,
    TORCH_DTYPES,
    make_inputs,
    model_flops,
    time_major,
)
from rnnbench.environment import environment, load_average
from rnnbench.floor import products_alone
from rnnbench.groups import bench_size
from rnnbench.layerbench import cell_memory, layer_backward
from rnnbench.plots import plot
from rnnbench.scaling import peak_memory, scaling
from rnnbench.tables import fmt_ms, markdown
from rnnbench.targets import check_targets

DEFAULT_OUT = Path(__file__).resolve().parent / "results"

__all__ = [
    "FULL",
    "GEMM_NP",
    "GEMM_TORCH",
    "JAX",
    "NN_RNN",
    "NN_RNN_WEIGHTS",
    "ORACLE",
    "OURS",
    "PRODUCTS",
    "QUICK",
    "fmt_ms",
    "main",
    "make_inputs",
    "model_flops",
    "products_alone",
    "time_major",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config, list[Size], list[str]]:
    """The flags, the configuration they select, and the sizes and dtypes to run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (smoke test)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--sizes", default=None, help="comma-separated subset of small,medium,large")
    ap.add_argument("--dtypes", default="float64,float32", help="comma-separated: float64,float32")
    ap.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated subset of rnn,gru,lstm")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    ap.add_argument("--rounds", type=float, default=1.0, help="multiply every round count by this")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling and memory part")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    sizes = [s for s in cfg.sizes if args.sizes is None or s.name in args.sizes.split(",")]
    dtypes = args.dtypes.split(",")
    if not sizes or any(d not in TORCH_DTYPES for d in dtypes):
        ap.error("unknown --sizes or --dtypes")
    args.cells = args.cells.split(",")
    if not args.cells or any(c not in LINEUP for c in args.cells):
        ap.error(f"--cells: expected a comma-separated subset of {','.join(LINEUP)}, got {args.cells}")
    try:
        args.threads = [int(n) for n in args.threads.split(",")]
    except ValueError:
        args.threads = []
    if not args.threads or min(args.threads) < 1 or len(set(args.threads)) != len(args.threads):
        ap.error("--threads: expected distinct positive integers, e.g. 1,2")
    return args, cfg, sizes, dtypes


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """numpy's BLAS (threadpoolctl) and torch on `threads` threads, restored afterwards."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(torch_threads)


def measure_groups(
    args: argparse.Namespace, cfg: Config, sizes: list[Size], dtypes: list[str], threads: int
) -> list[dict]:
    """Every (cell, dtype, size) group at `threads` threads (XLA's: as jax was loaded)."""
    groups = []
    with limited(threads):
        for cell in args.cells:
            for dtype in dtypes:
                for s in (s for s in sizes if s.name in CELL_SIZES[cell]):
                    rounds = max(3, round(s.rounds * args.rounds))
                    log(f"{cell} {s.name} {dtype}, {threads} thread(s): {rounds} rounds")
                    groups.append(bench_size(s, dtype, cfg.gemm_n, rounds, cfg.slot_s, cell, threads))
    return groups


def measure_in_subprocess(args: argparse.Namespace, threads: int) -> dict:
    """This runner's results at `threads` threads, from a fresh process (its XLA not yet set up)."""
    passed = ["--sizes", args.sizes] if args.sizes else []
    passed += ["--dtypes", args.dtypes, "--cells", ",".join(args.cells), "--rounds", str(args.rounds)]
    passed += ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, *passed, "--threads", str(threads), "--no-scaling", "--out", tmp]
        log(f"{threads} thread(s): in a subprocess")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=jaxpeer.child_environment())
        return json.loads((Path(tmp) / "results.json").read_text())


def measure(args: argparse.Namespace, cfg: Config, sizes: list[Size], dtypes: list[str]) -> dict:
    """Every group at every thread count, then (at the first count) scaling and memory."""
    first = args.threads[0]
    jaxpeer.load(first)
    with limited(first):
        env = environment()  # the thread pools as limited for the first count
    result: dict = {
        "quick": args.quick,
        "environment": env,
        "slot_ms": cfg.slot_s * 1e3,
        "threads": args.threads,
        "thread_runs": {str(first): "this process"},
        "groups": [],
    }
    result["groups"] += measure_groups(args, cfg, sizes, dtypes, first)
    if not args.no_scaling:
        with limited(first):
            log("scaling in T")
            result["scaling"] = scaling(cfg)
            log("peak memory")
            result["memory"] = peak_memory(cfg)
            result["cell_memory"] = cell_memory(cfg, args.cells)
            log("the layer alone: mb.backward against the torch layer's backward")
            dense = [s for s in sizes if not s.tokens]
            rounds = max(3, round(5 * args.rounds))
            result["layer_backward"] = layer_backward(dense, args.cells, dtypes[0], rounds, cfg.slot_s)
    result["loadavg_end"] = load_average()
    for n in args.threads[1:]:
        sub = measure_in_subprocess(args, n)
        result["groups"] += sub["groups"]
        result["thread_runs"][str(n)] = {"process": "subprocess", "environment": sub["environment"]}
    result["notes"] = sorted({note for g in result["groups"] for note in g["missing"]})
    result["targets"] = check_targets(result["groups"])
    result["machine"] = machine.summary(env, result["groups"])
    return result


def write(result: dict, out: Path) -> str:
    """results.json, results.md and (with a scaling part) scaling.png in out; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    md = markdown(result)
    (out / "results.md").write_text(md)
    if "scaling" in result:
        plot(result, out / "scaling.png")
    return md


def main(argv: Sequence[str] | None = None) -> dict:
    args, cfg, sizes, dtypes = parse_args(argv)
    result = measure(args, cfg, sizes, dtypes)
    print(write(result, args.out))
    return result


if __name__ == "__main__":
    main()
