"""One group: the lineup of one (cell, size, dtype), its loss check, its round-robin and its summary.

A group without OURS (a gated cell before our own gated bptt exists) checks its contenders'
losses against the first of them and has times but no ratios; one without a FLOOR has no
floor comparison.
"""

from __future__ import annotations

import math

from .config import Size
from .contenders import lineup, missing
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
    """Call OURS and every MODEL contender once; all must compute the anchor's loss (OURS, or
    without it the first MODEL contender). Returns the losses."""
    losses = {c.name: float(c.fn()) for c in contenders if c.role in (OURS_ROLE, MODEL)}
    anchor = anchor_name(contenders)
    tol = 1e-9 if dtype == "float64" else 1e-4
    for name, loss in losses.items():
        if not math.isclose(loss, losses[anchor], rel_tol=tol):
            raise RuntimeError(f"{label}: {name} computes loss {loss}, {anchor} {losses[anchor]}")
    return losses


def anchor_name(contenders: list[Contender]) -> str:
    """OURS's name, or without OURS the first MODEL contender's."""
    ours = [c.name for c in contenders if c.role == OURS_ROLE]
    return (ours or [c.name for c in contenders if c.role == MODEL])[0]


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
        "peer": c.peer,
        "compile_s": c.compile_s,
    }


def summarise(contenders: list[Contender], samples: dict[str, Samples], cold: dict[str, Samples]) -> dict:
    """rows (per contender), ratios (ours / every MODEL and FLOOR contender, with the cold
    ratio), the fastest peer (the peer with the smallest median; ours / it, when there is
    ours), the floor against its reference (None without a floor), and the machine's GEMM rate."""
    gemm_rate = max(c.flops / median(samples[c.name]) for c in contenders if c.role == GEMM)
    rows = {c.name: row(c, samples[c.name], cold[c.name], gemm_rate) for c in contenders}
    has_ours = any(c.role == OURS_ROLE for c in contenders)
    ratios = {}
    if has_ours:
        ours = the(contenders, OURS_ROLE).name
        for c in contenders:
            if c.role in (MODEL, FLOOR):
                ratios[c.name] = paired_ratio(samples[ours], samples[c.name])
                ratios[c.name]["cold_ratio"] = rows[ours]["cold_median"] / rows[c.name]["cold_median"]
    peers = [c.name for c in contenders if c.peer]
    fastest = min(peers, key=lambda name: rows[name]["median"]) if peers else None
    fastest_peer = None
    if fastest is not None:
        fastest_peer = {"name": fastest, "median": rows[fastest]["median"]}
        if has_ours:
            fastest_peer |= paired_ratio(samples[ours], samples[fastest])
    # the floor against nn.RNN: the best ratio any bptt built on these products could reach
    floor_vs = None
    if any(c.role == FLOOR for c in contenders):
        floor = the(contenders, FLOOR).name
        (reference,) = (c.name for c in contenders if c.floor_reference)
        floor_vs = paired_ratio(samples[floor], samples[reference])
    return {
        "machine_gflops": gemm_rate / 1e9,
        "contenders": rows,
        "ratios": ratios,
        "fastest_peer": fastest_peer,
        "floor_vs_nn_rnn": floor_vs,
    }


def bench_size(
    s: Size, dtype: str, gemm_n: int, rounds: int, slot_s: float, cell: str = "rnn", threads: int = 1
) -> dict:
    """Time the lineup of one cell, size and dtype (threads: as the caller set them, recorded);
    the group's entry of results.json."""
    contenders = lineup(cell, s, dtype, gemm_n)
    label = f"{s.name} {dtype}" if cell == "rnn" else f"{cell} {s.name} {dtype}"
    losses = check_losses(contenders, label, dtype)
    samples, cold = round_robin(contenders, rounds, slot_s)
    summary = summarise(contenders, samples, cold)
    return {
        "cell": cell,
        "threads": threads,
        "size": s.__dict__,
        "dtype": dtype,
        "gemm_n": gemm_n,
        "machine_gflops": summary["machine_gflops"],
        "loss": losses[anchor_name(contenders)],
        "missing": missing(cell, threads),
        "contenders": summary["contenders"],
        "ratios": summary["ratios"],
        "fastest_peer": summary["fastest_peer"],
        "floor_vs_nn_rnn": summary["floor_vs_nn_rnn"],
        "samples": {k: [v[r] for r in sorted(v)] for k, v in samples.items()},
        "cold_samples": {k: [v[r] for r in sorted(v)] for k, v in cold.items()},
    }
