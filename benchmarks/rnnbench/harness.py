"""Timing that knows no model: contenders, calibration, the interleaved round-robin, statistics."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Roles of a contender in a group (see groups.summarise):
#: OURS, the one every ratio is of; MODEL, computes the same loss as OURS (checked before
#: timing) and gets a ratio row; FLOOR, a lower bound on OURS's time, gets a ratio row;
#: GEMM, a plain matrix product whose FLOP rate every rate is a fraction of.
OURS_ROLE, MODEL, FLOOR, GEMM = "ours", "model", "floor", "gemm"

#: Samples of one contender: {round: seconds}.
Samples = dict[int, float]


@dataclass
class Contender:
    """One timed callable. fn() makes one call (a MODEL or OURS contender returns its loss).

    flops: matrix-product FLOPs of one call; every: run in every `every`-th round;
    number: back-to-back calls per timed slot (set by calibrate); floor_reference: the
    contender the FLOOR is compared with ('floor_vs_nn_rnn' of a group); peer: another
    library's implementation of the same outputs (the group's fastest peer is the fastest of
    these); compile_s: seconds spent compiling it before timing (JAX), else None.
    """

    name: str
    fn: Callable[[], object]
    flops: float
    role: str = MODEL
    every: int = 1
    number: int = 1
    floor_reference: bool = False
    peer: bool = False
    compile_s: float | None = None


def stats(xs: Sequence[float]) -> dict[str, float]:
    """median, quartiles, min, max and count of a sample."""
    a = np.asarray(xs, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": med, "q1": q1, "q3": q3, "min": a.min(), "max": a.max(), "n": len(a)}


def median(samples: Samples) -> float:
    """Median of the samples of one contender, in seconds."""
    return float(np.median(list(samples.values())))


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


def _slot(c: Contender) -> tuple[float, float]:
    """One timed slot of c: (mean seconds per call, seconds of the first call)."""
    t0 = time.perf_counter()
    c.fn()
    t1 = time.perf_counter()
    for _ in range(c.number - 1):
        c.fn()
    return (time.perf_counter() - t0) / c.number, t1 - t0


def round_robin(
    contenders: list[Contender], rounds: int, slot_s: float
) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """Time each contender once per round, in an order rotated every round.

    Each timed slot makes `number` back-to-back calls (see calibrate). Returns
    ({name: {round: mean seconds per call}}, {name: {round: seconds of the slot's first call}}).
    The garbage collector is off during the slots and collects between rounds (objects that
    exist before the first round are frozen, so that collection is cheap).
    """
    calibrate(contenders, slot_s)
    gc.collect()
    gc.freeze()
    mean: dict[str, Samples] = {c.name: {} for c in contenders}
    cold: dict[str, Samples] = {c.name: {} for c in contenders}
    try:
        for r in range(rounds):
            k = r % len(contenders)
            gc.collect()
            gc.disable()
            for c in contenders[k:] + contenders[:k]:
                if r % c.every == 0:
                    mean[c.name][r], cold[c.name][r] = _slot(c)
            gc.enable()
    finally:
        gc.enable()
        gc.unfreeze()
    return mean, cold


def paired_ratio(a: Samples, b: Samples) -> dict[str, float]:
    """Ratio of medians a / b, and the spread of the per-round ratios a[r] / b[r]."""
    rounds = sorted(set(a) & set(b))
    per_round = stats([a[r] / b[r] for r in rounds])
    return {
        "ratio": median(a) / median(b),
        "round_q1": per_round["q1"],
        "round_q3": per_round["q3"],
        "round_min": per_round["min"],
        "round_max": per_round["max"],
    }
