"""Scaling in T (bptt linear, decompose quadratic, rtrl linear) and peak memory of bptt."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Sequence

import numpy as np

import manual_bptt as mb

from .config import Config
from .harness import Contender, median, round_robin


def fit_exponent(Ts: Sequence[int], ys: Sequence[float]) -> float:
    """Slope of log y against log T (least squares)."""
    return float(np.polyfit(np.log(Ts), np.log(ys), 1)[0])


def scaling_methods(cfg: Config) -> dict[str, tuple[tuple[int, ...], Callable]]:
    """{method: (the T it is timed at, fn(xs, ys))}."""
    _, D, H, K = cfg.scaling_dims
    p = mb.RNNParams.init(D, H, K, seed=0)
    p_rtrl = mb.RNNParams.init(D, cfg.rtrl_H, K, seed=0)
    return {
        "bptt": (cfg.scaling_T, lambda xs, ys: mb.bptt(p, xs, ys)),
        "decompose": (cfg.decompose_T, lambda xs, ys: mb.decompose(p, xs, ys).norms()),
        "rtrl": (cfg.rtrl_T, lambda xs, ys: mb.rtrl(p_rtrl, xs, ys)),
    }


def scaling(cfg: Config) -> dict:
    """Median time against T for bptt, decompose + norms() and rtrl; all interleaved.

    Token inputs: with dense inputs rtrl also carries ds_t/dx_k for every k <= t, which is
    quadratic in T by design.
    """
    B, D, H, K = cfg.scaling_dims
    rng = np.random.default_rng(0)
    methods = scaling_methods(cfg)
    contenders = []
    for method, (Ts, fn) in methods.items():
        for T in Ts:
            xs, ys = rng.integers(0, D, size=(B, T)), rng.integers(0, K, size=(B, T))
            contenders.append(Contender(f"{method} T={T}", lambda fn=fn, xs=xs, ys=ys: fn(xs, ys), 0.0))
    samples, _ = round_robin(contenders, cfg.scaling_rounds, slot_s=0.0)
    out: dict = {"dims": {"B": B, "D": D, "H": H, "K": K, "rtrl_H": cfg.rtrl_H}, "methods": {}}
    for method, (Ts, _) in methods.items():
        med = [median(samples[f"{method} T={T}"]) for T in Ts]
        n_fit = min(4, len(Ts))  # the largest T: at small T a call is mostly fixed overhead
        out["methods"][method] = {
            "T": list(Ts),
            "median_s": med,
            "exponent": fit_exponent(Ts[-n_fit:], med[-n_fit:]),
            "fit_T": list(Ts[-n_fit:]),
        }
    return out


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes that tracemalloc sees during fn() above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def memory_row(T: int, peak: int, B: int, D: int, H: int) -> dict:
    """One row of the memory table: the peak against what is cached and what is predicted."""
    cached = (T + 1) * H * B * 8
    predicted = cached + T * B * D * 8
    return {
        "T": T,
        "peak_bytes": peak,
        "cached_bytes": cached,
        "predicted_bytes": predicted,
        "peak_over_cached": peak / cached,
        "peak_over_predicted": peak / predicted,
    }


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
        rows.append(memory_row(T, traced_peak(lambda xs=xs, ys=ys: mb.bptt(p, xs, ys)), B, D, H))
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
