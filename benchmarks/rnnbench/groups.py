"""One group: the lineup of one (size, dtype), its loss check, its round-robin and its summary."""

from __future__ import annotations

import math

from .config import Size
from .contenders import lineup
from .harness import (
    FLOOR,
    GEMM,
    MODEL,
    OURS_ROLE,
    Contender,
    Samples,
    median,
    paired_ratio,
    round_robin,
    stats,
)


def check_losses(contenders: list[Contender], label: str, dtype: str) -> dict[str, float]:
    """Call OURS and every MODEL contender once; all must compute OURS's loss. Returns the losses."""
    losses = {c.name: float(c.fn()) for c in contenders if c.role in (OURS_ROLE, MODEL)}
    ours = losses[the(contenders, OURS_ROLE).name]
    tol = 1e-9 if dtype == "float64" else 1e-4
    for name, loss in losses.items():
        if not math.isclose(loss, ours, rel_tol=tol):
            raise RuntimeError(f"{label}: {name} computes loss {loss}, bptt {ours}")
    return losses


def the(contenders: list[Contender], role: str) -> Contender:
    """The one contender of a role (OURS, FLOOR); a lineup without exactly one is an error."""
    found = [c for c in contenders if c.role == role]
    if len(found) != 1:
        raise RuntimeError(f"expected one {role} contender, got {[c.name for c in found]}")
    return found[0]


def row(c: Contender, samples: Samples, cold: Samples, gemm_rate: float) -> dict:
    """The times table's row of one contender."""
    st = stats(list(samples.values()))
    rate = c.flops / st["median"]
    return {
        **st,
        "flops": c.flops,
        "gflops": rate / 1e9,
        "fraction_of_gemm": rate / gemm_rate,
        "calls_per_slot": c.number,
        "cold_median": median(cold),
    }


def summarise(contenders: list[Contender], samples: dict[str, Samples], cold: dict[str, Samples]) -> dict:
    """rows (per contender), ratios (ours / every MODEL and FLOOR contender, with the cold
    ratio), the floor against its reference, and the machine's GEMM rate."""
    gemm_rate = max(c.flops / median(samples[c.name]) for c in contenders if c.role == GEMM)
    rows = {c.name: row(c, samples[c.name], cold[c.name], gemm_rate) for c in contenders}
    ours = the(contenders, OURS_ROLE).name
    ratios = {}
    for c in contenders:
        if c.role in (MODEL, FLOOR):
            ratios[c.name] = paired_ratio(samples[ours], samples[c.name])
            ratios[c.name]["cold_ratio"] = rows[ours]["cold_median"] / rows[c.name]["cold_median"]
    # the floor against nn.RNN: the best ratio any bptt built on these products could reach
    floor = the(contenders, FLOOR).name
    (reference,) = (c.name for c in contenders if c.floor_reference)
    return {
        "machine_gflops": gemm_rate / 1e9,
        "contenders": rows,
        "ratios": ratios,
        "floor_vs_nn_rnn": paired_ratio(samples[floor], samples[reference]),
    }


def bench_size(s: Size, dtype: str, gemm_n: int, rounds: int, slot_s: float) -> dict:
    """Time the lineup of one size and dtype; the group's entry of results.json."""
    contenders = lineup(s, dtype, gemm_n)
    losses = check_losses(contenders, f"{s.name} {dtype}", dtype)
    samples, cold = round_robin(contenders, rounds, slot_s)
    summary = summarise(contenders, samples, cold)
    return {
        "size": s.__dict__,
        "dtype": dtype,
        "gemm_n": gemm_n,
        "machine_gflops": summary["machine_gflops"],
        "loss": losses[the(contenders, OURS_ROLE).name],
        "contenders": summary["contenders"],
        "ratios": summary["ratios"],
        "floor_vs_nn_rnn": summary["floor_vs_nn_rnn"],
        "samples": {k: [v[r] for r in sorted(v)] for k, v in samples.items()},
        "cold_samples": {k: [v[r] for r in sorted(v)] for k, v in cold.items()},
    }
