"""What PASS needs besides agreement: enough configurations checked against the oracle, and each
supported feature (input form, activation, option; per cell) exercised often enough. numpy only.
The verdict itself: CheckResult.verdict (bptt_report.judge.results): FAIL when anything
disagrees or fails, else INSUFFICIENT when a minimum here is not met, else PASS.
"""

from __future__ import annotations

from manual_bptt.problems import RNNConfig

from ..plan.sweep import OPTION_OFF, OPTION_VALUES, form_name
from ..targets.contract import BIAS, Capabilities

#: PASS needs at least this many configurations checked against the oracle (all of them
#: when fewer are asked for).
MIN_CHECKED = 20
#: ... and each supported input form, option and activation checked at least this many times
#: (fewer when the sweep is too small to deal that many: see required_coverage).
MIN_PER_FEATURE = 3
#: The sweep deals each option's values in shuffled rounds of this many configurations (a
#: smaller share may miss it) ...
OPTION_ROUND = {name: len(values) for name, values in OPTION_VALUES.items()}
#: ... so that this share of a cell's configurations has it on.
OPTION_SHARE = {
    name: sum(v != OPTION_OFF[name] for v in values) / len(values) for name, values in OPTION_VALUES.items()
}


def cell_prefix(cell: str) -> str:
    """How a gated cell's features are named: "gru: s0"; the Elman cell's have no prefix."""
    return "" if cell == "rnn" else f"{cell}: "


def features_of(cfg: RNNConfig) -> list[str]:
    """The features a configuration exercises: its input form, its activation (the Elman
    cell), its options, biases; a gated cell's prefixed with the cell ("gru: s0")."""
    out = [form_name(cfg)] + ([str(cfg.activation)] if cfg.cell == "rnn" else [])
    if cfg.s0_kind is not None:
        out.append("s0")
    if cfg.truncate is not None:
        out.append("truncate")
    if cfg.use_mask:
        out.append("mask")
    if cfg.reduction == "mean":
        out.append("reduction=mean")
    if cfg.bias:
        out.append(BIAS)
    return [cell_prefix(cfg.cell) + f for f in out]


def required_coverage(caps: Capabilities, examples: int) -> dict[str, int]:
    """feature -> how many checked oracle configurations must exercise it for PASS:
    min(MIN_PER_FEATURE, the count a sweep of ``examples`` deals it), at least 1 (for the
    cell of ``caps``, ``examples`` being that cell's share of the sweep). A share too small
    to deal every value of a dimension once (e.g. 2 configurations over 4 input forms) does
    not require that dimension's values; the minimum number of configurations still applies."""
    need: dict[str, int] = {}
    pre = cell_prefix(caps.cell)
    groups = (caps.forms, caps.activations) if caps.cell == "rnn" else (caps.forms,)
    for group in groups:
        if examples < len(group):
            continue
        for name in group:
            need[pre + name] = min(MIN_PER_FEATURE, max(1, int(examples / len(group))))
    for name in caps.options:
        if examples < OPTION_ROUND[name]:
            continue
        need[pre + name] = min(MIN_PER_FEATURE, max(1, int(examples * OPTION_SHARE[name])))
    if caps.bias and examples >= 2:  # dealt on and off in rounds of two
        need[pre + BIAS] = min(MIN_PER_FEATURE, max(1, examples // 2))
    return need
