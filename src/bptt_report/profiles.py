"""Named sizes of the report's sweep (``manual-bptt report --profile NAME``). numpy only.

    quick      32 configurations, T <= 7, H <= 5: a few seconds (also ``--quick``)
    default    3000 configurations, T <= 32, H <= 10: about a minute on 2 cores
    thorough   3000 configurations, T up to 128, H up to 64, B up to 6 (radius(W) <= 1.5
               beyond T = 32: see conditioned), more finite differences, and (for
               manual_bptt's own bptt) RTRL and decomposition cross-checks
               (bptt_report.crosschecks): the sweep worth a Dask cluster (``--scheduler``);
               its measured time is in the README ("Where the sweep runs")

Every profile draws the same kinds of configuration (bptt_report.sweep), only larger.
"""

from __future__ import annotations

import dataclasses

from manual_bptt.problems import RNNConfig

from .sweep import FULL, QUICK, SweepSize

#: The thorough sweep.
THOROUGH = SweepSize(examples=3000, max_T=128, max_B=6, max_D=12, max_H=64, max_K=12, fd_examples=80)
#: Profile name -> its sweep.
PROFILES: dict[str, SweepSize] = {"quick": QUICK, "default": FULL, "thorough": THOROUGH}


#: In the thorough sweep, a sequence longer than this is drawn with radius(W) at most
#: LONG_RADIUS: with radius 3.0 and T in the hundreds the forward pass is chaotic (tanh) or
#: overflows towards 1e28 (relu), float64 rounding grows past the tolerance (relative 1e-10)
#: in any implementation, and the oracle and nn.RNN disagree with each other there too (measured
#: in the thorough sweep of seed 0: 16 of 4047 checks, all radius 3.0 and T >= 62).
LONG_T, LONG_RADIUS = 32, 1.5


def conditioned(configs: list[RNNConfig]) -> list[RNNConfig]:
    """The thorough sweep's configurations with the radius of W capped at LONG_RADIUS where
    T > LONG_T (each one otherwise unchanged, its seed included)."""
    return [
        dataclasses.replace(c, weight_scale=LONG_RADIUS)
        if c.T > LONG_T and c.weight_scale > LONG_RADIUS
        else c
        for c in configs
    ]


def profile_size(profile: str | None, *, quick: bool = False, examples: int | None = None) -> SweepSize:
    """The sweep of ``profile`` (None: "quick" when ``quick`` else "default"), with ``examples``
    overriding its count (and the finite-difference count scaled to it, as sweep.sweep_size does).

    Raises:
        ValueError for an unknown profile, or a profile other than "quick" together with quick=True.
    """
    if profile is None:
        profile = "quick" if quick else "default"
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    if quick and profile != "quick":
        raise ValueError(f"profile: {profile!r} and quick=True contradict each other")
    base = PROFILES[profile]
    if examples is None:
        return base
    fd = max(1, min(base.fd_examples, examples // 20)) if examples >= 2 else 1
    return dataclasses.replace(base, examples=examples, fd_examples=fd)
