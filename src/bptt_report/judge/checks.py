"""Checking one configuration: the target's reply against the oracle, the native torch module,
and finite differences.

The references run here (or in oracle worker processes), never where the target runs, on
arrays rebuilt from the configuration by manual_bptt.problems.make_problem:

oracle               reference.bptt_cell(cell, ...): plain unrolled PyTorch autograd, every
                     option (reference.bptt for the Elman cell, gru_bptt, lstm_bptt)
torch_rnn            the native module with the configuration's weights copied in, + nn.Linear
                     + F.cross_entropy: torch.nn.RNN (reference.torch_rnn_bptt; tanh or relu),
                     nn.GRU or nn.LSTM (reference.to_torch, reference.torch_gated_bptt); only
                     for full BPTT or a window covering the whole sequence
finite_differences   central differences of the target's own loss (computed in its worker),
                     (E(θ + eps e_i) - E(θ - eps e_i)) / (2 eps), eps = 1e-5, for every entry of
                     the parameters, s0 (when given) and dense xs; full BPTT only

The arrays compared: loss, the cell's parameters (U, W, V, b, c; or U, W, b_ih, b_hh, V, c),
ds0 (the LSTM's as ds0.h and ds0.c), dxs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

import reference
from manual_bptt.problems import Problem, RNNConfig

from ..run import threads
from ..run.protocol import Reply, Request
from ..run.signals import leave_to_the_checker
from ..targets.contract import PARAM_FIELDS, TargetOutput, problem_for, state_parts
from ..targets.replies import misbehaviour, target_output
from .compare import (
    ArrayCheck,
    compare_array,
    compare_fd,
    compare_optional,
    looks_like_float32,
    not_comparable,
)
from .results import ConfigCheck

#: The native torch module of each cell, as messages name it.
NATIVE = {"rnn": "torch.nn.RNN", "gru": "torch.nn.GRU", "lstm": "torch.nn.LSTM"}


@dataclass(frozen=True)
class Ref:
    """A reference result as plain arrays: loss (), grads (the cell's parameters, None where
    absent), ds0 ((H,) / (B, H); the LSTM: a pair (dh0, dc0)), dxs."""

    loss: float
    grads: dict[str, np.ndarray | None]
    ds0: Any
    dxs: np.ndarray | None

    def fields(self) -> dict[str, Any]:
        """The arrays by report name: loss, the parameters, ds0 (or ds0.h, ds0.c), dxs."""
        return flat_fields(self.loss, self.grads, self.ds0, self.dxs)


def flat_fields(loss: Any, grads: dict[str, Any], ds0: Any, dxs: Any) -> dict[str, Any]:
    """loss, grads..., ds0 (a pair becomes ds0.h and ds0.c), dxs."""
    out = {"loss": loss, **grads}
    parts = state_parts(ds0) if isinstance(ds0, tuple) else None
    if parts is None:
        out["ds0"] = ds0
    else:
        out["ds0.h"], out["ds0.c"] = parts
    out["dxs"] = dxs
    return out


def _plain(r: Any, cell: str = "rnn") -> Ref:
    def arr(a: Any) -> np.ndarray | None:
        return None if a is None else np.asarray(a, dtype=np.float64)

    ds0 = getattr(r, "ds0", None)
    parts = state_parts(ds0) if cell == "lstm" else None
    return Ref(
        loss=float(r.loss),
        grads={n: arr(getattr(r.grads, n)) for n in PARAM_FIELDS[cell]},
        ds0=arr(ds0) if parts is None else (arr(parts[0]), arr(parts[1])),
        dxs=arr(getattr(r, "dxs", None)),
    )


def oracle_reference(prob: Problem) -> Ref:
    """reference.bptt_cell(cell, ...) on the problem's arrays, float64."""
    cell = prob.cfg.cell
    return _plain(reference.bptt_cell(cell, prob.params, prob.xs, prob.ys, **prob.kwargs()), cell)


def torch_rnn_applies(cfg: RNNConfig) -> bool:
    """The native modules compute full BPTT; nn.RNN has tanh and relu only."""
    full = cfg.truncate is None or cfg.truncate >= cfg.T - 1
    return full and (cfg.cell != "rnn" or cfg.activation in ("tanh", "relu"))


def torch_rnn_reference(prob: Problem) -> Ref:
    """reference.torch_rnn_bptt with the problem's U, W, V, b, c copied into nn.RNN / nn.Linear.

    nn.RNN's two biases: bias_ih = b, bias_hh = 0 (their sum is our b). A gated cell: its
    nn.GRU / nn.LSTM from reference.to_torch (the layout is torch's, b_ih and b_hh as they are).
    """
    p, c = prob.params, prob.cfg
    if c.cell != "rnn":
        writable = SimpleNamespace(**{n: None if a is None else np.array(a) for n, a in vars(p).items()})
        module, linear = reference.to_torch(writable, c.cell)
        r = reference.torch_gated_bptt(
            module, linear, prob.xs, prob.ys, s0=prob.s0, reduction=c.reduction, mask=prob.mask
        )
        return _plain(r, c.cell)
    rnn, linear = reference.make_torch_rnn(c.D, c.H, c.K, nonlinearity=c.activation, bias=c.bias, seed=0)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(np.asarray(p.U), dtype=torch.float64))
        rnn.weight_hh_l0.copy_(torch.tensor(np.asarray(p.W), dtype=torch.float64))
        linear.weight.copy_(torch.tensor(np.asarray(p.V), dtype=torch.float64))
        if c.bias:
            rnn.bias_ih_l0.copy_(torch.tensor(np.asarray(p.b), dtype=torch.float64))
            rnn.bias_hh_l0.zero_()
            linear.bias.copy_(torch.tensor(np.asarray(p.c), dtype=torch.float64))
    return _plain(
        reference.torch_rnn_bptt(
            rnn, linear, prob.xs, prob.ys, s0=prob.s0, reduction=c.reduction, mask=prob.mask
        )
    )


#: kind -> a Ref, an error message (str), or None where the reference does not apply.
References = dict[str, "Ref | str | None"]


def references(cfg: RNNConfig, prefix: int | None = None, *, with_torch_rnn: bool = True) -> References:
    """The oracle's (and nn.RNN's, where it applies) results for a configuration."""
    prob = problem_for(cfg, prefix)
    out: References = {"oracle": None, "torch_rnn": None}
    if prob is None:
        return out
    try:
        out["oracle"] = oracle_reference(prob)
    except Exception as exc:  # a problem of this tool, reported as "error"
        out["oracle"] = f"{type(exc).__name__}: {exc}"
    if with_torch_rnn and torch_rnn_applies(prob.cfg):
        try:
            out["torch_rnn"] = torch_rnn_reference(prob)
        except Exception as exc:
            out["torch_rnn"] = f"{type(exc).__name__}: {exc}"
    return out


def references_batch(cfgs: list[RNNConfig]) -> list[References]:
    """references() of several configurations (the unit of work of an oracle worker)."""
    return [references(c) for c in cfgs]


def sweep_references(request: Request) -> References | None:
    """The references of a sweep's request: of its configuration for an oracle request ("call"
    on the whole sequence), None for the others (what a Dask worker computes beside the target)."""
    return references(request.config) if request.kind == "call" and request.prefix is None else None


def init_oracle_worker() -> None:
    """An oracle worker: the thread settings of bptt_report.run.threads, Ctrl-C left to the checker."""
    leave_to_the_checker()
    threads.fix()


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
        return [ConfigCheck(check_id, k, cfg, status, (), msg, uns, seconds, tb) for k in kinds]
    out, notes = target_output(reply, cell)
    results = []
    for k in kinds:
        ref = refs["oracle" if k != "torch_rnn" else "torch_rnn"]
        against = NATIVE[cell] if k == "torch_rnn" else "the oracle"
        if not isinstance(ref, Ref):
            results.append(
                ConfigCheck(check_id, k, cfg, "error", (), f"{against} could not run: {ref}", (), seconds)
            )
            continue
        arrays = compare_output(out, ref, notes)
        passed = all(a.passed for a in arrays)
        msg = "" if passed else failure_message(arrays, against)
        results.append(
            ConfigCheck(check_id, k, cfg, "pass" if passed else "fail", tuple(arrays), msg, (), seconds)
        )
    return results


def fd_check(check_id: int, cfg: RNNConfig, reply: Reply) -> ConfigCheck:
    """The target's gradients against central differences of its own loss (from its worker)."""
    seconds = reply.seconds
    bad = misbehaviour(reply, f"configuration #{check_id}")
    if bad is not None:
        status, msg, tb, uns = bad
        return ConfigCheck(check_id, "finite_differences", cfg, status, (), msg, uns, seconds, tb)
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
    return ConfigCheck(
        check_id, "finite_differences", cfg, "pass" if passed else "fail", tuple(arrays), msg, (), seconds
    )


def replace_id(check: ConfigCheck, new_id: int) -> ConfigCheck:
    return dataclasses.replace(check, id=new_id)
