"""The issue's targets (float64; float32 is shown against the same bounds), checked on the groups."""

from __future__ import annotations

from .contenders import NN_RNN, ORACLE, OURS

# "ratio" is ours / theirs, median time.
TARGETS = (
    ("small", ORACLE, "speedup", 10.0, "at least 10x faster than the autograd oracle"),
    ("medium", NN_RNN, "ratio", 0.75, "at most 0.75x the time of torch.nn.RNN"),
    ("large", NN_RNN, "ratio", 0.75, "at most 0.75x the time of torch.nn.RNN"),
    ("large", "GEMM", "fraction", 0.8, "at least 0.8 of the GEMM FLOP rate"),
)


def measured(g: dict, other: str, kind: str, bound: float) -> tuple[float, bool]:
    """(value, met) of one target in one group."""
    if kind == "fraction":
        value = g["contenders"][OURS]["fraction_of_gemm"]
        return value, value >= bound
    if kind == "speedup":
        value = 1.0 / g["ratios"][other]["ratio"]
        return value, value >= bound
    value = g["ratios"][other]["ratio"]
    return value, value <= bound


def check_targets(groups: list[dict]) -> list[dict]:
    """Each target of the issue, for every dtype measured (float64 is the one the issue sets)."""
    out = []
    for g in groups:
        for size, other, kind, bound, text in TARGETS:
            if g["size"]["name"] == size:
                value, met = measured(g, other, kind, bound)
                row = {"size": size, "dtype": g["dtype"], "target": text, "value": value}
                out.append(row | {"met": bool(met)})
    return out
