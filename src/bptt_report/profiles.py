"""Named sizes of the report's sweep (``manual-bptt report --profile NAME``). numpy only.

    quick      32 configurations, T <= 7, H <= 5: a few seconds (also ``--quick``)
    default    3000 configurations, T <= 32, H <= 10: about a minute on 2 cores
    thorough   many more configurations, T up to 192, H up to 64, B up to 8, more finite
               differences; measured size and time in the README ("The thorough profile"),
               the sweep worth a Dask cluster (``--scheduler``)

Every profile draws the same kinds of configuration (bptt_report.sweep), only more and larger.
"""

from __future__ import annotations

import dataclasses

from .sweep import FULL, QUICK, SweepSize

#: The thorough sweep.
THOROUGH = SweepSize(examples=6000, max_T=192, max_B=8, max_D=16, max_H=64, max_K=12, fd_examples=120)
#: Profile name -> its sweep.
PROFILES: dict[str, SweepSize] = {"quick": QUICK, "default": FULL, "thorough": THOROUGH}


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
