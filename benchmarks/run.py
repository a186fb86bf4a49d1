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
is not counted), the same count for every contender that returns the same gradients:
    forward   U x (dense) 2TBHD, W s 2TBH^2, V s 2TBHK
    backward  V^T dE/do 2TBHK, dV 2TBHK, W^T delta 2TBH^2, dW 2TBH^2, dU 2TBHD, dxs 2TBHD
Token inputs (small) have no input products: U x_t is a column of U.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_info, threadpool_limits

try:
    import manual_bptt as mb
    import reference as ref
except ImportError:  # running from a clone without installing: use src/ next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import manual_bptt as mb
    import reference as ref
from manual_bptt.core import step_blocks

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
OURS = "manual_bptt.bptt"
ORACLE = "reference.bptt (autograd oracle)"
NN_RNN = "torch.nn.RNN"
NN_RNN_WEIGHTS = "torch.nn.RNN (weights only)"
PRODUCTS = "bptt's matrix products alone"
GEMM_NP = "GEMM numpy"
GEMM_TORCH = "GEMM torch"
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    """One benchmark size. tokens: integer token ids in [0, D) (D = vocabulary), else dense.

    rounds: round-robin rounds; gemm_every: the GEMMs run in every gemm_every-th round only.
    """

    name: str
    B: int
    T: int
    D: int
    H: int
    K: int
    tokens: bool
    rounds: int
    gemm_every: int


@dataclass(frozen=True)
class Config:
    sizes: tuple[Size, ...]
    gemm_n: int
    scaling_T: tuple[int, ...]  # bptt
    rtrl_T: tuple[int, ...]
    decompose_T: tuple[int, ...]
    scaling_dims: tuple[int, int, int, int]  # B, D (vocabulary), H, K
    rtrl_H: int
    scaling_rounds: int
    memory_T: tuple[int, ...]
    memory_dims: tuple[int, int, int, int]  # B, D, H, K
    slot_s: float  # target duration of one timed slot (back-to-back calls of one contender)


FULL = Config(
    sizes=(
        Size("small", B=1, T=25, D=65, H=100, K=65, tokens=True, rounds=150, gemm_every=15),
        Size("medium", B=32, T=64, D=128, H=256, K=128, tokens=False, rounds=25, gemm_every=3),
        Size("large", B=64, T=128, D=512, H=512, K=512, tokens=False, rounds=13, gemm_every=1),
    ),
    gemm_n=2048,
    scaling_T=(32, 64, 128, 256, 512, 1024, 2048, 4096),
    rtrl_T=(32, 64, 128, 256, 512, 1024),
    decompose_T=(32, 64, 128, 256, 512),
    scaling_dims=(4, 16, 32, 16),
    rtrl_H=8,
    scaling_rounds=5,
    memory_T=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
    memory_dims=(8, 32, 128, 32),
    slot_s=0.02,
)
QUICK = Config(
    sizes=(
        Size("small", B=1, T=6, D=7, H=5, K=7, tokens=True, rounds=3, gemm_every=1),
        Size("medium", B=2, T=5, D=4, H=6, K=3, tokens=False, rounds=3, gemm_every=1),
        Size("large", B=3, T=4, D=5, H=7, K=4, tokens=False, rounds=3, gemm_every=1),
    ),
    gemm_n=64,
    scaling_T=(4, 8, 16),
    rtrl_T=(4, 8, 16),
    decompose_T=(4, 8, 16),
    scaling_dims=(2, 3, 4, 3),
    rtrl_H=3,
    scaling_rounds=2,
    memory_T=(4, 8, 16),
    memory_dims=(2, 3, 4, 3),
    slot_s=0.001,
)

# Targets of the issue, for float64 ("ratio" is ours / theirs, median time).
TARGETS = (
    ("small", ORACLE, "speedup", 10.0, "at least 10x faster than the autograd oracle"),
    ("medium", NN_RNN, "ratio", 0.75, "at most 0.75x the time of torch.nn.RNN"),
    ("large", NN_RNN, "ratio", 0.75, "at most 0.75x the time of torch.nn.RNN"),
    ("large", "GEMM", "fraction", 0.8, "at least 0.8 of the GEMM FLOP rate"),
)


# ---------------------------------------------------------------------------------------------
# Statistics and timing
# ---------------------------------------------------------------------------------------------
def stats(xs: Sequence[float]) -> dict[str, float]:
    """median, quartiles, min, max and count of a sample."""
    a = np.asarray(xs, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": med, "q1": q1, "q3": q3, "min": a.min(), "max": a.max(), "n": len(a)}


@dataclass
class Contender:
    name: str
    fn: Callable[[], object]
    flops: float  # matrix-product FLOPs of one call
    every: int = 1  # run in every `every`-th round
    number: int = 1  # back-to-back calls per timed slot (set by calibrate)


def calibrate(contenders: list[Contender], slot_s: float) -> None:
    """Warm every contender up and set its calls per slot, so that one slot lasts about slot_s.

    Timing several back-to-back calls (as timeit does) measures the steady state of repeated
    calls; a single call right after another contender also pays for caches that the other
    one evicted, which for calls of well under a millisecond is most of the time. Both are
    recorded: the mean over the slot and its first call ("cold").
    """
    for c in contenders:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            c.fn()
            times.append(time.perf_counter() - t0)
        c.number = max(1, int(slot_s / min(times)))


def round_robin(
    contenders: list[Contender], rounds: int, slot_s: float
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """Time each contender once per round, in an order rotated every round.

    Each timed slot makes `number` back-to-back calls (see calibrate). Returns
    ({name: {round: mean seconds per call}}, {name: {round: seconds of the slot's first call}}).
    The garbage collector is off during the slots and collects between rounds (objects that
    exist before the first round are frozen, so that collection is cheap).
    """
    calibrate(contenders, slot_s)
    gc.collect()
    gc.freeze()
    mean: dict[str, dict[int, float]] = {c.name: {} for c in contenders}
    cold: dict[str, dict[int, float]] = {c.name: {} for c in contenders}
    try:
        for r in range(rounds):
            k = r % len(contenders)
            gc.collect()
            gc.disable()
            for c in contenders[k:] + contenders[:k]:
                if r % c.every:
                    continue
                t0 = time.perf_counter()
                c.fn()
                t1 = time.perf_counter()
                for _ in range(c.number - 1):
                    c.fn()
                mean[c.name][r] = (time.perf_counter() - t0) / c.number
                cold[c.name][r] = t1 - t0
            gc.enable()
    finally:
        gc.enable()
        gc.unfreeze()
    return mean, cold


def paired_ratio(a: dict[int, float], b: dict[int, float]) -> dict[str, float]:
    """Ratio of medians a / b, and the spread of the per-round ratios a[r] / b[r]."""
    rounds = sorted(set(a) & set(b))
    per_round = stats([a[r] / b[r] for r in rounds])
    return {
        "ratio": float(np.median(list(a.values())) / np.median(list(b.values()))),
        "round_q1": per_round["q1"],
        "round_q3": per_round["q3"],
        "round_min": per_round["min"],
        "round_max": per_round["max"],
    }


def model_flops(s: Size, input_grads: bool = True) -> float:
    """Matrix-product FLOPs of forward + backward (see the module docstring)."""
    TB = s.T * s.B
    hh = 3 * 2 * TB * s.H * s.H  # W s, W^T delta, dW
    hk = 3 * 2 * TB * s.H * s.K  # V s, V^T dE/do, dV
    hd = 0 if s.tokens else 2 * 2 * TB * s.H * s.D  # U x, dU
    dx = 2 * TB * s.H * s.D if (input_grads and not s.tokens) else 0  # dxs
    return float(hh + hk + hd + dx)


# ---------------------------------------------------------------------------------------------
# The contenders of one size and dtype
# ---------------------------------------------------------------------------------------------
def make_inputs(s: Size, dtype: str, seed: int = 0) -> tuple[mb.RNNParams, np.ndarray, np.ndarray]:
    """Parameters and one batch: tokens (T,) for B = 1, else (B, T); dense (B, T, D)."""
    rng = np.random.default_rng(seed)
    p = mb.RNNParams.init(s.D, s.H, s.K, seed=seed, dtype=dtype)
    shape = (s.T,) if s.B == 1 else (s.B, s.T)
    xs = rng.integers(0, s.D, size=shape) if s.tokens else rng.standard_normal((*shape, s.D)).astype(dtype)
    ys = rng.integers(0, s.K, size=shape)
    return p, xs, ys


def time_major(s: Size, xs: np.ndarray) -> np.ndarray | None:
    """Dense inputs from make_inputs as a C-contiguous time-major (T, B, D) array (what
    products_alone reads); None for token inputs."""
    return None if s.tokens else np.ascontiguousarray(xs.reshape(s.B, s.T, s.D).swapaxes(0, 1))


def torch_modules(p: mb.RNNParams, tdtype: torch.dtype) -> tuple[torch.nn.RNN, torch.nn.Linear]:
    """nn.RNN + nn.Linear holding the same parameters as p (bias_hh = 0, bias_ih = b)."""
    rnn, linear = ref.make_torch_rnn(
        p.input_size, p.hidden_size, p.output_size, nonlinearity="tanh", bias=True, seed=0, dtype=tdtype
    )
    with torch.no_grad():
        for dst, src in (
            (rnn.weight_ih_l0, p.U),
            (rnn.weight_hh_l0, p.W),
            (rnn.bias_ih_l0, p.b),
            (linear.weight, p.V),
            (linear.bias, p.c),
        ):
            dst.copy_(torch.tensor(np.asarray(src)))
        rnn.bias_hh_l0.zero_()
    return rnn, linear


def products_alone(
    p: mb.RNNParams, T: int, B: int, X: np.ndarray | None, mm: Callable[..., np.ndarray] = np.matmul
) -> None:
    """The matrix products of one bptt call, and nothing else: a floor for bptt's time.

    The same products as manual_bptt.bptt (full BPTT), at the same shapes, in the same blocks
    of steps (manual_bptt.core.step_blocks) and the same order: per block, U x_t (dense) over
    its rows, then W s_{t-1} step by step; backward, the blocks last first: V s_t, dV,
    V^T dE/do, W^T delta_t step by step, dW, dU, dE/dx. The
    states are allocated fresh, as bptt does. Left out: validation, the activation, softmax
    and loss, every other elementwise pass and the copies between layouts. The numbers
    multiplied are not the model's (each product reads what an earlier product wrote, or
    the inputs), so they stay finite and nothing else is needed to run them.

    Args:
        p: the parameters.  T, B: steps and sequences.
        X: dense inputs x_t, time-major and C-contiguous (T, B, D) (made before timing: bptt
            copies batch-first xs a block at a time), or None for token inputs.
        mm: the matrix product, called as mm(a, b) or mm(a, b, out=c) (a test counts FLOPs).
    """
    U, W, V = (np.asarray(m) for m in (p.U, p.W, p.V))
    (H, D), K = U.shape, V.shape[0]
    tokens = X is None
    blocks = step_blocks(T, B)
    steps = blocks[0][1]
    UT, WT, VT = (np.ascontiguousarray(m.T) for m in (U, W, V))
    states = np.empty((T + 1, B, H), dtype=U.dtype)
    states[0] = 0.0
    recur, carry = np.empty((B, H), dtype=U.dtype), np.empty((B, H), dtype=U.dtype)
    for start, end in blocks:  # forward; U x_t goes into the states (bptt: into a block of a_t)
        s_blk = states[start + 1 : end + 1]
        if tokens:
            s_blk[...] = 0.1  # U x_t is a column of U: no product
        else:
            mm(X[start:end].reshape(-1, D), UT, out=s_blk.reshape(-1, H))
        for t in range(start, end):
            mm(states[t], WT, out=recur)  # W s_{t-1}
    e = np.empty((steps, B, H), dtype=U.dtype)
    dO = np.empty((steps * B, K), dtype=U.dtype)
    dx = np.empty((steps * B, D), dtype=U.dtype)
    dW, dU, dV = np.zeros_like(W), np.zeros_like(U), np.zeros_like(V)
    for start, end in reversed(blocks):  # backward
        n = (end - start) * B
        S, S_in = states[start + 1 : end + 1].reshape(n, H), states[start:end].reshape(n, H)
        E = e[: end - start]
        mm(S, VT, out=dO[:n])  # o_t = V s_t
        dV += mm(dO[:n].T, S)  # dV = sum_t dE/do_t s_t^T
        mm(dO[:n], V, out=E.reshape(n, H))  # e_t = V^T dE/do_t
        for t in reversed(range(end - start)):
            mm(E[t], W, out=carry)  # W^T delta_t
        dW += mm(E.reshape(n, H).T, S_in)  # dW = sum_t delta_t s_{t-1}^T
        if not tokens:
            dU += mm(E.reshape(n, H).T, X[start:end].reshape(n, D))  # dU = sum_t delta_t x_t^T
            mm(E.reshape(n, H), U, out=dx[:n])  # dE/dx_t = U^T delta_t


def contenders_for(s: Size, dtype: str, gemm_n: int) -> tuple[list[Contender], dict[str, float]]:
    """The contenders of one (size, dtype), and their losses (a check that all compute the same)."""
    tdtype = TORCH_DTYPES[dtype]
    p, xs, ys = make_inputs(s, dtype)
    rnn, linear = torch_modules(p, tdtype)
    B = s.B
    if s.tokens:
        x = F.one_hot(torch.tensor(xs.reshape(B, s.T)), s.D).to(tdtype)  # (B, T, D), no gradient
    else:
        x = torch.tensor(xs, dtype=tdtype, requires_grad=True)  # (B, T, D)
    y = torch.tensor(ys.reshape(-1))
    h0 = torch.zeros((1, B, s.H), dtype=tdtype, requires_grad=True)
    weights = [*rnn.parameters(), *linear.parameters()]
    every_output = [*weights, h0] + ([] if s.tokens else [x])

    def nn_rnn(leaves: list[torch.Tensor]) -> float:
        out, _ = rnn(x, h0)  # s_t, (B, T, H)
        logits = linear(out)  # o_t, (B, T, K)
        E = F.cross_entropy(logits.reshape(-1, s.K), y, reduction="sum")
        torch.autograd.grad(E, leaves)
        return E.item()

    X_tm = time_major(s, xs)
    A_np = np.random.default_rng(1).standard_normal((gemm_n, gemm_n)).astype(dtype)
    B_np = np.random.default_rng(2).standard_normal((gemm_n, gemm_n)).astype(dtype)
    A_t, B_t = torch.tensor(A_np), torch.tensor(B_np)
    gemm_flops = 2.0 * gemm_n**3

    contenders = [
        Contender(OURS, lambda: mb.bptt(p, xs, ys).loss, model_flops(s)),
        Contender(ORACLE, lambda: ref.bptt(p, xs, ys, dtype=tdtype).loss, model_flops(s)),
        Contender(NN_RNN, lambda: nn_rnn(every_output), model_flops(s)),
        Contender(NN_RNN_WEIGHTS, lambda: nn_rnn(weights), model_flops(s, input_grads=False)),
        Contender(PRODUCTS, lambda: products_alone(p, s.T, B, X_tm), model_flops(s)),
        Contender(GEMM_NP, lambda: A_np @ B_np, gemm_flops, every=s.gemm_every),
        Contender(GEMM_TORCH, lambda: A_t @ B_t, gemm_flops, every=s.gemm_every),
    ]
    losses = {c.name: float(c.fn()) for c in contenders[:4]}
    tol = 1e-9 if dtype == "float64" else 1e-4
    for name, loss in losses.items():
        if not math.isclose(loss, losses[OURS], rel_tol=tol):
            raise RuntimeError(f"{s.name} {dtype}: {name} computes loss {loss}, bptt {losses[OURS]}")
    return contenders, losses


def bench_size(s: Size, dtype: str, gemm_n: int, rounds: int, slot_s: float) -> dict:
    contenders, losses = contenders_for(s, dtype, gemm_n)
    samples, cold = round_robin(contenders, rounds, slot_s)
    gemm_rate = max(
        c.flops / np.median(list(samples[c.name].values())) for c in contenders if c.name.startswith("GEMM")
    )
    rows = {}
    for c in contenders:
        st = stats(list(samples[c.name].values()))
        rate = c.flops / st["median"]
        rows[c.name] = {
            **st,
            "flops": c.flops,
            "gflops": rate / 1e9,
            "fraction_of_gemm": rate / gemm_rate,
            "calls_per_slot": c.number,
            "cold_median": float(np.median(list(cold[c.name].values()))),
        }
    ratios = {}
    for other in (ORACLE, NN_RNN, NN_RNN_WEIGHTS, PRODUCTS):
        ratios[other] = paired_ratio(samples[OURS], samples[other])
        ratios[other]["cold_ratio"] = rows[OURS]["cold_median"] / rows[other]["cold_median"]
    # the floor: bptt's products alone against nn.RNN, the best ratio any bptt built on these
    # products could reach
    floor = paired_ratio(samples[PRODUCTS], samples[NN_RNN])
    return {
        "size": s.__dict__,
        "dtype": dtype,
        "gemm_n": gemm_n,
        "machine_gflops": gemm_rate / 1e9,
        "loss": losses[OURS],
        "contenders": rows,
        "ratios": ratios,
        "floor_vs_nn_rnn": floor,
        "samples": {k: [v[r] for r in sorted(v)] for k, v in samples.items()},
        "cold_samples": {k: [v[r] for r in sorted(v)] for k, v in cold.items()},
    }


# ---------------------------------------------------------------------------------------------
# Scaling in T and peak memory
# ---------------------------------------------------------------------------------------------
def fit_exponent(Ts: Sequence[int], ys: Sequence[float]) -> float:
    """Slope of log y against log T (least squares)."""
    return float(np.polyfit(np.log(Ts), np.log(ys), 1)[0])


def scaling(cfg: Config) -> dict:
    """Median time against T for bptt, decompose + norms() and rtrl; all interleaved.

    Token inputs: with dense inputs rtrl also carries ds_t/dx_k for every k <= t, which is
    quadratic in T by design.
    """
    B, D, H, K = cfg.scaling_dims
    rng = np.random.default_rng(0)
    p = mb.RNNParams.init(D, H, K, seed=0)
    p_rtrl = mb.RNNParams.init(D, cfg.rtrl_H, K, seed=0)
    methods = {
        "bptt": (cfg.scaling_T, lambda xs, ys: mb.bptt(p, xs, ys)),
        "decompose": (cfg.decompose_T, lambda xs, ys: mb.decompose(p, xs, ys).norms()),
        "rtrl": (cfg.rtrl_T, lambda xs, ys: mb.rtrl(p_rtrl, xs, ys)),
    }
    contenders = []
    for method, (Ts, fn) in methods.items():
        for T in Ts:
            xs, ys = rng.integers(0, D, size=(B, T)), rng.integers(0, K, size=(B, T))
            contenders.append(Contender(f"{method} T={T}", lambda fn=fn, xs=xs, ys=ys: fn(xs, ys), 0.0))
    samples, _ = round_robin(contenders, cfg.scaling_rounds, slot_s=0.0)
    out: dict = {"dims": {"B": B, "D": D, "H": H, "K": K, "rtrl_H": cfg.rtrl_H}, "methods": {}}
    for method, (Ts, _) in methods.items():
        med = [float(np.median(list(samples[f"{method} T={T}"].values()))) for T in Ts]
        n_fit = min(4, len(Ts))  # the largest T: at small T a call is mostly fixed overhead
        out["methods"][method] = {
            "T": list(Ts),
            "median_s": med,
            "exponent": fit_exponent(Ts[-n_fit:], med[-n_fit:]),
            "fit_T": list(Ts[-n_fit:]),
        }
    return out


def peak_memory(cfg: Config) -> dict:
    """Peak traced memory of one bptt call against T, against what it must hold.

    cached: what the forward pass keeps for the backward pass: the states s (with s0),
        (T + 1) H B numbers. f'(a) is computed from s, and dense inputs are read in place.
    predicted: cached + the returned dE/dxs (T B D); everything else (a, e, delta, dE/do,
        the time-major input copies, f'(a)) exists one fixed-size block of steps at a time.
        A measured peak well above it would be a hidden temporary.
    """
    B, D, H, K = cfg.memory_dims
    p = mb.RNNParams.init(D, H, K, seed=0)
    rng = np.random.default_rng(0)
    rows = []
    for T in cfg.memory_T:
        xs, ys = rng.standard_normal((B, T, D)), rng.integers(0, K, size=(B, T))
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            mb.bptt(p, xs, ys)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        cached = (T + 1) * H * B * 8
        predicted = cached + T * B * D * 8
        rows.append(
            {
                "T": T,
                "peak_bytes": peak,
                "cached_bytes": cached,
                "predicted_bytes": predicted,
                "peak_over_cached": peak / cached,
                "peak_over_predicted": peak / predicted,
            }
        )
    Ts = [r["T"] for r in rows]
    peaks = [r["peak_bytes"] for r in rows]
    n_fit = min(4, len(Ts))  # the largest T: the parameters, gradients and blocks are a fixed offset
    # peak = offset + per_step * T, least squares over the same T: per_step is what one more
    # step costs, to be compared with what one step must hold (its state and its dE/dx)
    per_step, offset = np.polyfit(Ts[-n_fit:], peaks[-n_fit:], 1)
    return {
        "dims": {"B": B, "D": D, "H": H, "K": K},
        "rows": rows,
        "exponent": fit_exponent(Ts[-n_fit:], peaks[-n_fit:]),
        "fit_T": Ts[-n_fit:],
        "bytes_per_step": float(per_step),
        "offset_bytes": float(offset),
        "predicted_bytes_per_step": (H + D) * B * 8,
    }


# ---------------------------------------------------------------------------------------------
# Environment, targets, output
# ---------------------------------------------------------------------------------------------
def environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [
        {k: d.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
        | {"library": Path(d["filepath"]).name}
        for d in threadpool_info()
    ]
    env_vars = (
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_mkl": bool(torch.backends.mkl.is_available()),
        "threadpools": blas,
        "env": {k: os.environ.get(k, "unset") for k in env_vars},
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def check_targets(groups: list[dict]) -> list[dict]:
    """Each target of the issue, for every dtype measured (float64 is the one the issue sets)."""
    out = []
    for g in groups:
        for size, other, kind, bound, text in TARGETS:
            if g["size"]["name"] != size:
                continue
            if kind == "fraction":
                value = g["contenders"][OURS]["fraction_of_gemm"]
                met = value >= bound
            elif kind == "speedup":
                value = 1.0 / g["ratios"][other]["ratio"]
                met = value >= bound
            else:
                value = g["ratios"][other]["ratio"]
                met = value <= bound
            out.append({"size": size, "dtype": g["dtype"], "target": text, "value": value, "met": bool(met)})
    return out


def fmt_ms(x: float) -> str:
    return f"{x * 1e3:.3g}" if x < 1 else f"{x * 1e3:.0f}"


def markdown(result: dict) -> str:
    env, groups = result["environment"], result["groups"]
    blas = "; ".join(
        f"{t['internal_api']} {t['version']} ({t['library']}, kernel {t['architecture']}, "
        f"{t['threading_layer'] or '-'}), {t['num_threads']} thread(s)"
        for t in env["threadpools"]
    )
    lines = [
        "# Benchmark results",
        "",
        f"- date: {env['date']}; command: `{env['command']}`"
        + (" (QUICK: tiny sizes)" if result["quick"] else ""),
        f"- machine: {env['cpu']}, {env['logical_cpus']} logical CPUs; {env['platform']}",
        f"- python {env['python']}, numpy {env['numpy']}, torch {env['torch']} (MKL: {env['torch_mkl']}), "
        f"torch threads {env['torch_threads']}",
        f"- thread pools during the run (threadpoolctl): {blas}",
        "- environment: " + ", ".join(f"{k}={v}" for k, v in env["env"].items()),
        f"- load average (1, 5, 15 min) at start: {env['loadavg_start']}, at end: {result['loadavg_end']}",
        "",
        "Each round gives every contender one timed slot, in an order rotated every round; a slot",
        "makes `calls` back-to-back calls (calibrated to about "
        + f"{result['slot_ms']:g} ms, at least one) and records the",
        "mean time per call. Times are medians over the rounds; IQR = interquartile range. 'cold' =",
        "median time of the first call of a slot, made right after another contender ran.",
        "GFLOP/s counts the matrix products of forward and backward only; 'of peak' = that rate",
        "over the faster of the two GEMMs measured in the same round-robin. Ratios are ours / theirs",
        "(median over median); the spread is the IQR and range of the per-round ratios.",
        "",
        "## Times",
        "",
        "| size | dtype | contender | median ms | IQR ms | min-max ms | rounds | calls | cold ms "
        "| GFLOP/s | of peak |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in groups:
        for name, r in g["contenders"].items():
            lines.append(
                f"| {g['size']['name']} | {g['dtype']} | {name} | {fmt_ms(r['median'])} | "
                f"{fmt_ms(r['q1'])}-{fmt_ms(r['q3'])} | {fmt_ms(r['min'])}-{fmt_ms(r['max'])} | {r['n']} | "
                f"{r['calls_per_slot']} | {fmt_ms(r['cold_median'])} | {r['gflops']:.3g} | "
                f"{r['fraction_of_gemm']:.2f} |"
            )
    lines += [
        "",
        "## Ratios (ours / theirs)",
        "",
        "| size | dtype | theirs | ratio | per-round IQR | per-round min-max | speedup | cold ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in groups:
        for other, r in g["ratios"].items():
            lines.append(
                f"| {g['size']['name']} | {g['dtype']} | {other} | {r['ratio']:.3f} | "
                f"{r['round_q1']:.3f}-{r['round_q3']:.3f} | {r['round_min']:.3f}-{r['round_max']:.3f} | "
                f"{1 / r['ratio']:.2f}x | {r['cold_ratio']:.3f} |"
            )
    lines += [
        "",
        "## The floor: bptt's matrix products alone",
        "",
        f"`{PRODUCTS}` makes the matrix products of one bptt call, at the same shapes and in the",
        "same blocks, and nothing else (see products_alone in benchmarks/run.py). Its time is a",
        "floor for any bptt built on the same products with this BLAS; 'floor / nn.RNN' is the",
        "best ratio to torch.nn.RNN such a bptt could reach, and 'bptt / floor' is what the",
        "elementwise work, validation and copies of a real call add.",
        "",
        "| size | dtype | floor ms | floor GFLOP/s | floor / nn.RNN | per-round IQR | bptt / floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in groups:
        fl, r, over = g["contenders"][PRODUCTS], g["floor_vs_nn_rnn"], g["ratios"][PRODUCTS]
        lines.append(
            f"| {g['size']['name']} | {g['dtype']} | {fmt_ms(fl['median'])} | {fl['gflops']:.3g} | "
            f"{r['ratio']:.3f} | {r['round_q1']:.3f}-{r['round_q3']:.3f} | {over['ratio']:.3f} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "The issue sets them for float64; float32 is shown against the same bounds.",
        "",
        "| size | dtype | target | measured | met |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for t in result["targets"]:
        value = f"{t['value']:.2f}x" if "faster" in t["target"] else f"{t['value']:.3f}"
        lines.append(
            f"| {t['size']} | {t['dtype']} | {t['target']} | {value} | {'yes' if t['met'] else 'NO'} |"
        )
    sc = result.get("scaling")
    if sc:
        d = sc["dims"]
        lines += [
            "",
            "## Scaling in T",
            "",
            f"float64, token inputs, B={d['B']}, vocabulary D={d['D']}, H={d['H']}, K={d['K']} "
            f"(rtrl: H={d['rtrl_H']}, its cost is O(T B H^4)); decompose = `decompose(...)` then "
            "`.norms()` of every (t, k) term. Exponent = least-squares slope of log(median time) on "
            "log T over the largest T (at small T a call is mostly fixed overhead).",
            "",
            "| method | T | median ms | fitted exponent | fit over T |",
            "| --- | --- | --- | ---: | --- |",
        ]
        for m, r in sc["methods"].items():
            times = ", ".join(fmt_ms(x) for x in r["median_s"])
            lines.append(
                f"| {m} | {', '.join(map(str, r['T']))} | {times} | {r['exponent']:.2f} | "
                f"{r['fit_T'][0]}-{r['fit_T'][-1]} |"
            )
        mem = result["memory"]
        d = mem["dims"]
        lines += [
            "",
            "## Peak memory of bptt",
            "",
            f"float64, dense, B={d['B']}, D={d['D']}, H={d['H']}, K={d['K']}; peak of one call traced by "
            "tracemalloc. cached = what the forward pass keeps for the backward pass: the states s "
            "(with s0), (T + 1)·H·B·8 bytes (f'(a) is computed from s; xs is read in place). "
            "predicted = cached + the returned dE/dxs (TBD); a, e, delta, dE/do, the time-major "
            "copies of xs and f'(a) exist one fixed-size block of steps at a time, a constant "
            "that matters only at small T. Fitted exponent of the peak against T (over "
            f"T = {mem['fit_T'][0]}-{mem['fit_T'][-1]}): {mem['exponent']:.2f}; below 1 only "
            "because of the fixed offset: a straight line through the same points, "
            f"peak = {mem['offset_bytes'] / 2**20:.2f} MiB + {mem['bytes_per_step']:.0f} bytes · T, "
            "costs per step "
            f"{mem['bytes_per_step'] / mem['predicted_bytes_per_step']:.3f}x what a step must hold "
            f"(its state and its dE/dx, (H + D)·B·8 = {mem['predicted_bytes_per_step']} bytes).",
            "",
            "| T | peak MiB | cached MiB | predicted MiB | peak / cached | peak / predicted |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in mem["rows"]:
            lines.append(
                f"| {r['T']} | {r['peak_bytes'] / 2**20:.2f} | {r['cached_bytes'] / 2**20:.2f} | "
                f"{r['predicted_bytes'] / 2**20:.2f} | {r['peak_over_cached']:.2f} | "
                f"{r['peak_over_predicted']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(11, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.22)
    for m, r in result["scaling"]["methods"].items():
        Ts, ts = np.array(r["T"]), np.array(r["median_s"])
        (line,) = ax1.loglog(Ts, ts * 1e3, "o", label=f"{m}: exponent {r['exponent']:.2f}")
        fit_T = np.array(r["fit_T"])
        coef = np.polyfit(np.log(fit_T), np.log(ts[len(Ts) - len(fit_T) :]), 1)
        ax1.loglog(fit_T, np.exp(np.polyval(coef, np.log(fit_T))) * 1e3, "-", color=line.get_color())
    all_T = sorted({T for r in result["scaling"]["methods"].values() for T in r["T"]})
    ax1.set_xticks(all_T, [str(T) for T in all_T], minor=False)
    ax1.set_xticks([], minor=True)
    ax1.set_xlabel("T (sequence length)")
    ax1.set_ylabel("median time (ms)")
    ax1.set_title("time against T (log-log)")
    ax1.legend(loc="upper left")
    mem = result["memory"]
    Ts = [r["T"] for r in mem["rows"]]
    ax2.loglog(
        Ts,
        [r["peak_bytes"] / 2**20 for r in mem["rows"]],
        "o-",
        label=f"bptt peak (exp. {mem['exponent']:.2f})",
    )
    ax2.loglog(
        Ts, [r["predicted_bytes"] / 2**20 for r in mem["rows"]], "^:", label="predicted (see results.md)"
    )
    ax2.loglog(Ts, [r["cached_bytes"] / 2**20 for r in mem["rows"]], "s--", label="cached s")
    ax2.set_xticks(Ts, [str(T) for T in Ts], minor=False)
    ax2.set_xticks([], minor=True)
    ax2.set_xlabel("T (sequence length)")
    ax2.set_ylabel("MiB")
    ax2.set_title("peak memory of bptt (tracemalloc)")
    ax2.legend()
    fig.savefig(path, dpi=110)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
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
    result["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["targets"] = check_targets(result["groups"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    md = markdown(result)
    (args.out / "results.md").write_text(md)
    if "scaling" in result:
        plot(result, args.out / "scaling.png")
    print(md)
    return result


if __name__ == "__main__":
    main()
