"""Checking one configuration: the target's reply against the references (bptt_report.judge.references:
the oracle, the native torch module) and against central finite differences of its own loss
(computed in its worker, bptt_report.targets.worker), (E(θ + eps e_i) - E(θ - eps e_i)) / (2 eps),
eps = 1e-5, for every entry of the parameters, s0 (when given) and dense xs; full BPTT only.

The arrays compared: loss, the cell's parameters (U, W, V, b, c; or U, W, b_ih, b_hh, V, c),
ds0 (the LSTM's as ds0.h and ds0.c), dxs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from manual_bptt.problems import RNNConfig

from ..cells import NATIVE
from ..run.protocol import Reply
from ..targets.contract import TargetOutput
from ..targets.replies import misbehaviour, printed, target_output
from .compare import (
    ArrayCheck,
    compare_array,
    compare_fd,
    compare_optional,
    looks_like_float32,
    not_comparable,
)
from .references import Ref, References, flat_fields
from .results import ConfigCheck


def compare_output(out: TargetOutput, ref: Ref, notes: dict[str, str] | None = None) -> list[ArrayCheck]:
    """Every array of the target's output against a reference result.

    loss, U, W, V always; b, c (b_ih, b_hh, c for a gated cell) where the model has them (None
    or zeros accepted where it has not); ds0 (the LSTM: ds0.h and ds0.c) and dxs when the
    target returns them (dxs: dense inputs only).
    """
    notes = notes or {}
    mine = flat_fields(out.loss, out.grads, out.ds0, out.dxs)
    theirs = ref.fields()

    def cmp(name: str, actual: Any, expected: Any, optional: bool = False) -> ArrayCheck | None:
        if name in notes:
            return not_comparable(name, f"{name}: {notes[name]}")
        if optional:
            return compare_optional(name, actual, expected)
        return compare_array(name, actual, expected)

    arrays = [cmp("loss", out.loss, ref.loss)]
    for name in ref.grads:
        arrays.append(cmp(name, mine.get(name), theirs[name], optional=name not in ("U", "W", "V")))
    for name in ("ds0", "ds0.h", "ds0.c"):
        if name in theirs and (mine.get(name) is not None or name in notes or (out.ds0 is not None)):
            arrays.append(cmp(name, mine.get(name), theirs[name]))
    if (out.dxs is not None or "dxs" in notes) and ref.dxs is not None:
        arrays.append(cmp("dxs", out.dxs, ref.dxs))
    return [a for a in arrays if a is not None]


def failure_message(arrays: list[ArrayCheck], against: str) -> str:
    """ "disagrees with <against> in W, U: <worst array's description>", with a float32 diagnosis."""
    bad = sorted((a for a in arrays if not a.passed), key=lambda a: -a.rel_error)
    text = f"disagrees with {against} in {', '.join(a.name for a in bad)}: {bad[0].describe()}"
    if looks_like_float32(arrays):
        if any(a.dtype == "float32" for a in bad):
            why = "the target returns float32 arrays"
        else:
            why = "every failing array is off by a relative error typical of float32 rounding"
        text = f"float32 arithmetic checked at float64 tolerance ({why}); " + text
    return text


def constant_scale(
    out: TargetOutput, ref: Ref, arrays: list[ArrayCheck], cfg: RNNConfig
) -> tuple[str, str]:
    """(a name for the factor, the words for it) when every failing array is one constant
    multiple of the reference's (each array equal to c times the expected one to 1e-9, the
    same c for all, c != 1), else ("", ""). The factor is named after what it is when it is one
    (1/B: a mean over the batch where the sum belongs; 1/T, B, T, 1/(B T)), else as a simple
    fraction (3/2), else as a number."""
    failing = [a for a in arrays if not a.passed]
    if not failing or any(a.index is None for a in failing):
        return "", ""
    mine, theirs = flat_fields(out.loss, out.grads, out.ds0, out.dxs), ref.fields()
    factors = []
    for a in failing:
        x, r = np.asarray(mine[a.name], dtype=np.float64), np.asarray(theirs[a.name], dtype=np.float64)
        rr = float(np.vdot(r, r))
        c = float(np.vdot(x, r)) / rr if rr > 0 else math.nan
        if not math.isfinite(c) or c == 0 or np.max(np.abs(x - c * r)) > 1e-9 * np.max(np.abs(c * r)):
            return "", ""  # not one multiple of the reference
        factors.append(c)
    c = factors[0]
    if any(abs(f - c) > 1e-9 * abs(c) for f in factors) or abs(c - 1) <= 1e-9:
        return "", ""
    B, T = cfg.B or 1, cfg.T
    named = [
        ("1/B", 1 / B, f"B = {B}, the batch size", B > 1),
        ("1/T", 1 / T, f"T = {T}, the sequence length", T > 1),
        ("1/(B T)", 1 / (B * T), f"B T = {B * T}", B > 1 and T > 1),
        ("B", B, f"B = {B}", B > 1),
        ("T", T, f"T = {T}", T > 1),
    ]
    fraction = Fraction(c).limit_denominator(64)
    exact = abs(float(fraction) - c) <= 1e-9 * abs(c)
    for name, value, what, applies in named:
        if applies and abs(c - value) <= 1e-9 * value:
            return name, f"exactly {name} ({fraction}, {what})"
    if exact:
        return str(fraction), f"exactly {fraction}"
    return f"{c:.6g}", f"{c:.6g}"


def oracle_checks(
    check_id: int, cfg: RNNConfig, reply: Reply, refs: References, kind: str = "oracle"
) -> list[ConfigCheck]:
    """The "oracle" check of one configuration (and "torch_rnn" where it applies) from the
    target's reply and the references; one target call serves both."""
    kinds = [kind] + (["torch_rnn"] if kind == "oracle" and refs.get("torch_rnn") is not None else [])
    cell = cfg.cell
    seconds = reply.seconds
    bad = misbehaviour(reply, f"configuration #{check_id}")
    if bad is not None:
        status, msg, tb, uns = bad
        said = printed(reply)
        return [ConfigCheck(check_id, k, cfg, status, (), msg, uns, seconds, tb, output=said) for k in kinds]
    out, notes = target_output(reply, cell)
    results = []
    for k in kinds:
        ref = refs["oracle" if k != "torch_rnn" else "torch_rnn"]
        against = f"torch.nn.{NATIVE[cell]}" if k == "torch_rnn" else "the oracle"
        if not isinstance(ref, Ref):
            results.append(
                ConfigCheck(check_id, k, cfg, "error", (), f"{against} could not run: {ref}", (), seconds)
            )
            continue
        arrays = compare_output(out, ref, notes)
        passed = all(a.passed for a in arrays)
        msg = "" if passed else failure_message(arrays, against)
        scale, words = ("", "") if passed else constant_scale(out, ref, arrays, cfg)
        if scale:
            names = ", ".join(a.name for a in arrays if not a.passed)
            msg += f"; every failing array ({names}) is the expected one times {words}"
        status, said = ("pass", "") if passed else ("fail", printed(reply))
        results.append(
            ConfigCheck(check_id, k, cfg, status, tuple(arrays), msg, (), seconds, scale=scale, output=said)
        )
    return results


def fd_check(check_id: int, cfg: RNNConfig, reply: Reply) -> ConfigCheck:
    """The target's gradients against central differences of its own loss (from its worker)."""
    seconds = reply.seconds
    bad = misbehaviour(reply, f"configuration #{check_id}")
    if bad is not None:
        status, msg, tb, uns = bad
        kind, said = "finite_differences", printed(reply)
        return ConfigCheck(check_id, kind, cfg, status, (), msg, uns, seconds, tb, output=said)
    out, notes = target_output(reply, cfg.cell)
    mine = flat_fields(out.loss, out.grads, out.ds0, out.dxs)
    numeric = reply.numeric
    arrays: list[ArrayCheck] = []
    for name, n in numeric.items():
        actual = mine.get(name)
        if name in notes:
            arrays.append(not_comparable(name, f"{name}: {notes[name]}"))
        else:
            arrays.append(compare_fd(name, actual, n))
    passed = bool(arrays) and all(a.passed for a in arrays)
    msg = "" if passed else failure_message(arrays, "central finite differences of its own loss")
    status, said = ("pass", "") if passed else ("fail", printed(reply))
    kind = "finite_differences"
    return ConfigCheck(check_id, kind, cfg, status, tuple(arrays), msg, (), seconds, output=said)
