"""A layer's arrays by layer and direction, for the findings, the localization and the report of a
stacked, bidirectional or projected layer (bptt_report.module.contract.Shape).

What belongs to layer l, direction d (row l*dirs + d of every state, as torch orders h_n):

    its parameters      weight_ih_l{l}[_reverse], weight_hh_..., bias_ih_..., bias_hh_..., weight_hr_...
    its state rows      h_n[row], c_n[row] (the forward), h0.grad[row], c0.grad[row]
    the top layer's     out[..., :H_out] (forward direction), out[..., H_out:] (reverse direction)
                        halves of out

x.grad is the whole stack's (layer 0's input). A part agrees when its error is within the
tolerance of its whole array (so a part is wrong only where its array is wrong).

    parts(ev.errors, arrays, ref, shape)    the PartChecks of one evaluation
    wrong_by_layer(parts)                   (layer, direction) -> the names of its wrong parts
    grouped(names, shape)                   "layer 1, reverse direction: dW (weight_hh_l1_reverse); ..."
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..judge.compare import ArrayCheck, max_abs_diff
from .cases import notation
from .contract import Shape, parse_name, where_words

#: The arrays of (L*dirs, B, .) rows: the final states (the forward) and the initial states' gradients.
STATES = ("h_n", "c_n", "h0", "c0")


@dataclass(frozen=True)
class PartCheck:
    """One layer and direction's part of an array: a parameter, a state's row, a half of out.

    Attributes:
        name: "weight_hh_l1_reverse", "h_n[3]", "h0[3]", "out[reverse]".
        layer, direction: whose part it is.
        rel_error: max|a - ref| over the part / max|ref| over its whole array (inf: not comparable).
        ok: max|a - ref| over the part is within the whole array's tolerance.
    """

    name: str
    layer: int
    direction: int
    rel_error: float
    ok: bool


def part_words(name: str) -> str:
    """How a sentence names a part: dW (weight_hh_l1_reverse), h_n[3], dh0[3], h_t (reverse half)."""
    if parse_name(name):
        return f"{notation(name)} ({name})"
    if name.startswith("out["):
        return f"h_t ({name[4:-1]} half of out)"
    base, row = name.split("[")
    return f"{notation(base)}[{row}"


def parts(
    errors: Iterable[ArrayCheck], arrays: dict[str, np.ndarray], ref: dict[str, np.ndarray], shape: Shape
) -> list[PartCheck]:
    """Every part of one evaluation's compared arrays that belongs to a layer and direction."""
    out: list[PartCheck] = []
    for e in errors:
        parsed = parse_name(e.name)
        if parsed is not None:
            out.append(PartCheck(e.name, parsed[1], parsed[2], e.rel_error, e.passed))
            continue
        a, r = arrays.get(e.name), ref.get(e.name)
        if r is None:
            continue
        if e.name in STATES:
            pieces = [(f"{e.name}[{row}]", row // shape.directions, row % shape.directions, np.s_[row])
                      for row in range(r.shape[0])]  # fmt: skip
        elif e.name == "out" and shape.directions == 2:
            H_out = r.shape[-1] // 2
            top = shape.num_layers - 1
            pieces = [
                ("out[forward]", top, 0, np.s_[..., :H_out]),
                ("out[reverse]", top, 1, np.s_[..., H_out:]),
            ]
        else:
            continue
        for name, layer, d, where in pieces:
            err = max_abs_diff(a[where], r[where]) if a is not None and a.shape == r.shape else math.inf
            rel = err / e.scale if e.scale > 0 else (0.0 if err == 0 else math.inf)
            out.append(PartCheck(name, layer, d, rel, err <= e.tolerance))
    return out


def wrong_by_layer(checks: Iterable[PartCheck]) -> dict[tuple[int, int], list[str]]:
    """(layer, direction) -> the names of its wrong parts, in the order met, sorted by layer and direction."""
    wrong: dict[tuple[int, int], list[str]] = {}
    for p in checks:
        if not p.ok:
            wrong.setdefault((p.layer, p.direction), []).append(p.name)
    return dict(sorted(wrong.items()))


def grouped(names: list[str], shape: Shape, suffix: str = "") -> str:
    """Names said by layer and direction: "layer 1, reverse direction: dW (weight_hh_l1_reverse);
    layer 0: dU, dW (weight_ih_l0, weight_hh_l0); dx (x)" (``suffix`` after each torch name, e.g.
    ".grad"). A layer of one layer, one direction and no projection: "dU, dW (weight_ih_l0,
    weight_hh_l0)", as before there were stacks."""
    if shape.one_layer:
        return f"{', '.join(notation(n) for n in names)} ({', '.join(n + suffix for n in names)})"
    by: dict[tuple[int, int], list[str]] = {}
    rest = []
    for n in names:
        parsed = parse_name(n)
        if parsed is None:
            rest.append(n)
        else:
            by.setdefault((parsed[1], parsed[2]), []).append(n)
    parts_ = [
        f"{where_words(layer, d, shape)}: {', '.join(notation(n) for n in group)} "
        f"({', '.join(n + suffix for n in group)})"
        for (layer, d), group in sorted(by.items())
    ]
    if rest:
        parts_.append(f"{', '.join(notation(n) for n in rest)} ({', '.join(n + suffix for n in rest)})")
    return "; ".join(parts_)
