"""The thorough profile's cross-checks: when the target is manual_bptt's own bptt, its other two
derivations (RTRL and the explicit decomposition, bptt_report.targets.methods) are checked against the
same oracle results on a subset of the sweep's configurations.

The subset: full-BPTT configurations with T <= MAX_T, H <= MAX_H and at most MAX_B rows (RTRL
costs O(T B S^2 G H^2), the decomposition O(T^2 B G H^2)), at most MAX_CHECKS of them, evenly
spaced over the sweep (so every cell has its share). In the thorough sweep of seed 0 (12000
configurations) that is 500, which took 8 to 10 s per method in all, at most 0.5 s for one (an
LSTM of T = 121 or 127), the process that ran them all peaking at 620 MB. Not beyond T = 128:
an LSTM of T = 256, B = 4, H = 32 took 2.2 s in RTRL, and its decomposition's terms
(T, T, G*H, H) would be 2 GiB, over manual_bptt's max_bytes (it raises TooLargeError).

Each method runs in its own worker process (bptt_report.run.pool), like a target; the checks have
kind "rtrl" or "decompose", with the configuration's number.
"""

from __future__ import annotations

from manual_bptt.problems import RNNConfig

from ..run.pool import WorkerPool
from ..run.protocol import Request
from ..targets.worker import program
from .checks import oracle_checks
from .references import References
from .results import ConfigCheck

#: The names under which manual_bptt's bptt is checked (the cross-checks apply to these only).
OWN_TARGETS = frozenset({"manual_bptt:bptt", "manual_bptt.layer:bptt", "manual_bptt.elman:bptt"})
#: kind -> the method's target name.
METHODS = {"rtrl": "bptt_report.targets.methods:rtrl", "decompose": "bptt_report.targets.methods:decomposed"}
#: Bounds of the subset.
MAX_T, MAX_H, MAX_B, MAX_CHECKS = 128, 32, 4, 500


def subset(configs: list[RNNConfig]) -> list[int]:
    """The sweep positions of the configurations cross-checked."""
    pick = [
        i
        for i, c in enumerate(configs)
        if c.truncate is None and c.T <= MAX_T and c.H <= MAX_H and (c.B or 1) <= MAX_B
    ]
    n = min(MAX_CHECKS, len(pick))
    return [pick[k * len(pick) // n] for k in range(n)]


def cross_checks(
    spec: str, configs: list[RNNConfig], refs: list[References | None], timeout: float
) -> tuple[list[ConfigCheck], list[str]]:
    """The rtrl and decompose checks of ``configs`` against their oracle ``refs`` (empty unless
    ``spec`` is manual_bptt's bptt), and notes on what happened."""
    if spec not in OWN_TARGETS:
        return [], []
    chosen = [i for i in subset(configs) if refs[i] is not None]
    out: list[ConfigCheck] = []
    notes: list[str] = []
    for kind, method in METHODS.items():
        with WorkerPool(program(method), workers=1, timeout=timeout) as pool:
            replies = pool.run([Request("call", configs[i]) for i in chosen])
        notes.extend(f"{kind} cross-check: {n}" for n in pool.notes)
        for i, reply in zip(chosen, replies, strict=True):
            if reply.status == "not_run":
                continue
            ref = refs[i]
            assert ref is not None
            out.extend(oracle_checks(i, configs[i], reply, {"oracle": ref["oracle"]}, kind=kind))
    return out, notes
