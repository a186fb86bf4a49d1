"""The issue's targets (float64; float32 is shown against the same bounds), checked on the groups.

Only groups with our own contender have targets; a target against a contender that is not in the
group (JAX when jax is missing, the floor of a cell that has none) is left out of that group.
"""

from __future__ import annotations

from .names import JAX, ORACLE, OURS, PRODUCTS

#: "fastest peer" = the fastest of torch.nn.RNN / nn.GRU / nn.LSTM and JAX in the same run.
PEER = "fastest peer"
#: (cells, size, other, kind, bound, text); "ratio" is ours / theirs, median time.
TARGETS = (
    (("rnn",), "small", ORACLE, "speedup", 10.0, "at least 10x faster than the autograd oracle"),
    (("rnn",), "small", JAX["rnn"], "ratio", 0.8, "at most 0.8x the time of JAX"),
    (("rnn", "gru", "lstm"), "medium", PEER, "ratio", 0.75, "at most 0.75x the time of the fastest peer"),
    (("rnn", "gru", "lstm"), "large", PEER, "ratio", 0.75, "at most 0.75x the time of the fastest peer"),
    (("rnn", "gru", "lstm"), "large", "GEMM", "fraction", 0.85, "at least 0.85 of the GEMM FLOP rate"),
    (("rnn", "gru", "lstm"), "large", PRODUCTS, "ratio", 1.05, "within 5% of our matrix-products floor"),
)


def measured(g: dict, other: str, kind: str, bound: float) -> tuple[float, bool] | None:
    """(value, met) of one target in one group; None when the group lacks `other`."""
    if kind == "fraction":
        value = g["contenders"][OURS]["fraction_of_gemm"]
        return value, value >= bound
    r = g["fastest_peer"] if other == PEER else g["ratios"].get(other)
    if r is None:
        return None
    if kind == "speedup":
        value = 1.0 / r["ratio"]
        return value, value >= bound
    return r["ratio"], r["ratio"] <= bound


def check_targets(groups: list[dict]) -> list[dict]:
    """Each target of the issue, for every group with ours (float64 is the one the issue sets)."""
    out = []
    for g in groups:
        if OURS not in g["contenders"]:
            continue
        cell = g.get("cell", "rnn")
        for cells, size, other, kind, bound, text in TARGETS:
            if cell in cells and g["size"]["name"] == size:
                got = measured(g, other, kind, bound)
                if got is not None:
                    row = {"cell": cell, "threads": g.get("threads", 1), "size": size, "dtype": g["dtype"]}
                    if other == PEER:
                        text = f"{text} ({g['fastest_peer']['name']})"
                    out.append(row | {"target": text, "value": got[0], "met": bool(got[1])})
    return out
