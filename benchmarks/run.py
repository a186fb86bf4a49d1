"""Benchmark runner: manual_bptt.bptt against PyTorch, one thread for everyone, interleaved.

    python benchmarks/run.py [--quick] [--out DIR] [--sizes small,medium,large] [--dtypes float64,float32]

Writes DIR/results.md (tables), DIR/results.json (every sample and the environment) and
DIR/scaling.png (time and peak memory against T); DIR defaults to benchmarks/results/.
``--quick`` runs tiny sizes in a few seconds (the smoke test runs it); its numbers mean nothing.
Needs numpy, torch, threadpoolctl and matplotlib. A full run takes about 6 minutes.

What is measured, in one run, with numpy's BLAS and torch each limited to one thread:

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
    - ``bptt's matrix products alone``: the matrix products of one bptt call at the same
      shapes and in the same blocks, without any other work (products_alone): a floor for
      bptt's time with this BLAS, and so for its ratio to nn.RNN;
    - ``GEMM numpy`` / ``GEMM torch``: an N x N by N x N matrix product, the FLOP rate that
      every result is expressed as a fraction of (the faster of the two).
  Before timing, the four model contenders must agree on the loss.
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
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# rnnbench sits beside this file (also when it is loaded by file path, as the smoke test does);
# in a clone that is not installed, manual_bptt and reference come from its src/ (appended:
# an installed copy comes first).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))

import torch
from threadpoolctl import threadpool_limits

from rnnbench.config import FULL, QUICK, Config, Size
from rnnbench.contenders import (
    GEMM_NP,
    GEMM_TORCH,
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
from rnnbench.plots import plot
from rnnbench.scaling import peak_memory, scaling
from rnnbench.tables import fmt_ms, markdown
from rnnbench.targets import check_targets

DEFAULT_OUT = Path(__file__).resolve().parent / "results"

__all__ = [
    "FULL",
    "GEMM_NP",
    "GEMM_TORCH",
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
    ap.add_argument("--rounds", type=float, default=1.0, help="multiply every round count by this")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling and memory part")
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    sizes = [s for s in cfg.sizes if args.sizes is None or s.name in args.sizes.split(",")]
    dtypes = args.dtypes.split(",")
    if not sizes or any(d not in TORCH_DTYPES for d in dtypes):
        ap.error("unknown --sizes or --dtypes")
    return args, cfg, sizes, dtypes


def measure(args: argparse.Namespace, cfg: Config, sizes: list[Size], dtypes: list[str]) -> dict:
    """Every group, then scaling and memory, with numpy's BLAS and torch on one thread each."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            result: dict = {
                "quick": args.quick,
                "environment": environment(),
                "slot_ms": cfg.slot_s * 1e3,
                "groups": [],
            }
            for dtype in dtypes:
                for s in sizes:
                    rounds = max(3, round(s.rounds * args.rounds))
                    log(f"{s.name} {dtype}: {rounds} rounds")
                    result["groups"].append(bench_size(s, dtype, cfg.gemm_n, rounds, cfg.slot_s))
            if not args.no_scaling:
                log("scaling in T")
                result["scaling"] = scaling(cfg)
                log("peak memory")
                result["memory"] = peak_memory(cfg)
    finally:
        torch.set_num_threads(torch_threads)
    result["loadavg_end"] = load_average()
    result["targets"] = check_targets(result["groups"])
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
