"""Named sizes of the report's sweep (``manual-bptt report --profile NAME``). numpy only.

    quick      32 configurations, T <= 7, B <= 3, H <= 5, and per cell three large ones (T = 64;
               B = 8; H = 32): a few seconds (also ``--quick``)
    default    3000 configurations, T <= 32, B <= 5, H <= 10, and per cell three large ones
               (T = 64; B = 8; H = 32): about 20 s on 2 cores (plots included)
    thorough   12000 configurations, T up to 256, H up to 64, B up to 6, and per cell three
               large ones (T = 256; B = 32; H = 128) (conditioned: the
               radius of W capped by length, truncation windows of more than one step on at
               most WINDOW_T steps), more finite differences, and (for manual_bptt's own bptt)
               RTRL and decomposition cross-checks on a subset of T <= 128
               (bptt_report.judge.crosschecks): the sweep worth a Dask cluster (``--scheduler``). Its
               count comes from a measured rate: a sample of 3000 of its configurations (all
               three cells, --jobs 1) took 203 s, 0.068 s per configuration (one of 2000:
               0.066 s), on the project's 2-core machine while it was shared (load average
               about 4), so that the whole sweep is a run of 10 to 20 minutes with --jobs 1

Every profile draws the same kinds of configuration (bptt_report.plan.sweep), only larger. The
three large configurations of each cell (bptt_report.plan.sweep.LARGE_FROM: when the cell's
share has at least 10) are the last of its share, each drawn like the others but for one size,
and with full BPTT (the oracle's one unrolled graph) and a radius of W of at most 1.0: a target
wrong only for long sequences, large batches or wide states (T >= 40, B >= 6, H > 10, say)
fails even the quick sweep. With --examples below 10 per cell there are none.
"""

from __future__ import annotations

import dataclasses

from manual_bptt.problems import RNNConfig

from ..errors import UsageError
from .sweep import FULL, QUICK, SweepSize

#: The thorough sweep.
THOROUGH = SweepSize(examples=12000, max_T=256, max_B=6, max_D=12, max_H=64, max_K=12, fd_examples=200,
                     large_T=256, large_B=32, large_H=128)  # fmt: skip
#: Profile name -> its sweep.
PROFILES: dict[str, SweepSize] = {"quick": QUICK, "default": FULL, "thorough": THOROUGH}


#: In the thorough sweep, the radius of W (a gated cell: its weight scale) is capped by length:
#: a sequence longer than T is drawn with a radius of at most r, for each (T, r) here. Beyond
#: T = 32, 1.5: with radius 3.0 and T in the hundreds the forward pass is chaotic (tanh) or
#: overflows towards 1e28 (relu), float64 rounding grows past the tolerance (relative 1e-10) in
#: any implementation, and the oracle and nn.RNN disagree with each other there too (measured in
#: the thorough sweep of seed 0 with T up to 128: 16 of 4047 checks, all radius 3.0 and T >= 62).
#: Beyond T = 128, 1.0: relu at radius 1.5 grows as 1.5^T, and the relative error of manual_bptt
#: against the oracle reached 3.0e-10 for T in 161..192 and 5.6e-6 for T in 225..256, nn.RNN
#: against the oracle 1.5e-6 (the 1390 relu configurations of radius 1.0 or 1.5 and T > 32 among
#: the first 15000 Elman configurations of the thorough ranges, seed 0); at radius 1.5 and
#: T <= 128 the worst was 4.8e-12, at radius 1.0 and any T up to 256, 5.9e-15.
RADIUS_CAPS = ((32, 1.5), (128, 1.0))
#: In the thorough sweep, a truncation window of more than one step (about T/2, or beyond T - 1)
#: is drawn on at most WINDOW_T steps: the oracle unrolls a graph per step over the window
#: (O(T x window) steps): with T up to 256 and no such bound, those configurations took 94 of
#: the 101 s of the references of a 300-configuration sample (a GRU with a window beyond T - 1:
#: 2.3 s each). Full BPTT and windows of 0 and 1 steps keep T up to 256.
WINDOW_T = 64


def _windowed(c: RNNConfig) -> RNNConfig:
    """``c`` with a truncation window of more than one step on at most WINDOW_T steps: T halved
    (rounded up) until it fits, the window (about T/2, or as far beyond T - 1) on the new T."""
    if c.truncate is None or c.truncate <= 1 or c.T <= WINDOW_T:
        return c
    T = c.T
    while T > WINDOW_T:
        T = -(-T // 2)
    window = T - 1 + (c.truncate - (c.T - 1)) if c.truncate >= c.T - 1 else T // 2
    return dataclasses.replace(c, T=T, truncate=window)


def _capped(c: RNNConfig) -> RNNConfig:
    """``c`` with its radius within RADIUS_CAPS for its length."""
    cap = min((r for t, r in RADIUS_CAPS if c.T > t), default=c.weight_scale)
    return dataclasses.replace(c, weight_scale=cap) if c.weight_scale > cap else c


def conditioned(configs: list[RNNConfig]) -> list[RNNConfig]:
    """The thorough sweep's configurations with a truncation window of more than one step on at
    most WINDOW_T steps, then the radius of W within RADIUS_CAPS (each one otherwise unchanged,
    its seed included)."""
    return [_capped(_windowed(c)) for c in configs]


def profile_size(profile: str | None, *, quick: bool = False, examples: int | None = None) -> SweepSize:
    """The sweep of ``profile`` (None: "quick" when ``quick`` else "default"), with ``examples``
    overriding its count (and the finite-difference count scaled to it).

    Raises:
        UsageError (a ValueError) for an unknown profile, or a profile other than "quick"
        together with quick=True.
    """
    if profile is None:
        profile = "quick" if quick else "default"
    if profile not in PROFILES:
        raise UsageError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    if quick and profile != "quick":
        raise UsageError(f"profile: {profile!r} and quick=True contradict each other")
    base = PROFILES[profile]
    if examples is None:
        return base
    fd = max(1, min(base.fd_examples, examples // 20)) if examples >= 2 else 1
    return dataclasses.replace(base, examples=examples, fd_examples=fd)
