"""Checking one configuration: the target's reply against the oracle, nn.RNN, and finite differences.

The references run here (or in oracle worker processes), never where the target runs, on
arrays rebuilt from the configuration by manual_bptt.problems.make_problem:

oracle               reference.bptt: plain unrolled PyTorch autograd, every option
torch_rnn            reference.torch_rnn_bptt: torch.nn.RNN + nn.Linear + F.cross_entropy,
                     with the configuration's weights copied in; only where nn.RNN applies
                     (tanh or relu, full BPTT or a window covering the whole sequence)
finite_differences   central differences of the target's own loss (computed in its worker),
                     (E(θ + eps e_i) - E(θ - eps e_i)) / (2 eps), eps = 1e-5, for every entry of
                     U, W, V, b, c, s0 (when given) and dense xs; full BPTT only
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import reference
from manual_bptt.problems import Problem, RNNConfig

from .compare import (
    ArrayCheck,
    compare_array,
    compare_fd,
    compare_optional,
    looks_like_float32,
    not_comparable,
)
from .results import ConfigCheck
from .sweep import problem_for
from .targets import TargetOutput


@dataclass(frozen=True)
class Ref:
    """A reference result as plain arrays: loss (), grads U, W, V, b, c (None where absent), ds0, dxs."""

    loss: float
    grads: dict[str, np.ndarray | None]
    ds0: np.ndarray | None
    dxs: np.ndarray | None


def _plain(r: Any) -> Ref:
    def arr(a: Any) -> np.ndarray | None:
        return None if a is None else np.asarray(a, dtype=np.float64)

    return Ref(
        loss=float(r.loss),
        grads={n: arr(getattr(r.grads, n)) for n in ("U", "W", "V", "b", "c")},
        ds0=arr(getattr(r, "ds0", None)),
        dxs=arr(getattr(r, "dxs", None)),
    )


def oracle_reference(prob: Problem) -> Ref:
    """reference.bptt on the problem's arrays, float64."""
    return _plain(reference.bptt(prob.params, prob.xs, prob.ys, **prob.kwargs()))


def torch_rnn_applies(cfg: RNNConfig) -> bool:
    """nn.RNN has tanh and relu only, and computes full BPTT."""
    return cfg.activation in ("tanh", "relu") and (cfg.truncate is None or cfg.truncate >= cfg.T - 1)


def torch_rnn_reference(prob: Problem) -> Ref:
    """reference.torch_rnn_bptt with the problem's U, W, V, b, c copied into nn.RNN / nn.Linear.

    nn.RNN's two biases: bias_ih = b, bias_hh = 0 (their sum is our b).
    """
    p, c = prob.params, prob.cfg
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


def init_oracle_worker() -> None:
    """An oracle worker: one torch thread, Ctrl-C left to the checker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The target's reply
# ---------------------------------------------------------------------------------------------
_SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


def misbehaviour(reply: dict[str, Any], during: str) -> tuple[str, str, str, tuple[str, ...]] | None:
    """(status, message, traceback, unsupported keywords) when the reply is not a result, else None.

    ``during`` names the work, e.g. "configuration #12".
    """
    status = reply.get("status")
    tb = str(reply.get("traceback", ""))
    if status == "ok":
        return None
    if status == "unsupported":
        return "unsupported", str(reply.get("message", "")), "", tuple(reply.get("keywords", ()))
    if status == "raised":
        return "fail", f"the target raised {reply.get('type')}: {reply.get('message')}", tb, ()
    if status == "bad_result":
        return "fail", str(reply.get("message")), "", ()
    if status == "mutated":
        names = ", ".join(reply.get("inputs", ()))
        return "fail", f"the target modified {names} (its input) during {during}", "", ()
    if status == "exited":
        return "fail", f"the target called sys.exit({reply.get('code')}) during {during}", tb, ()
    if status == "died":
        code = reply.get("exitcode")
        if isinstance(code, int) and code < 0:
            name = _SIGNAL_NAMES.get(-code, "?")
            text = f"the target's process was killed by signal {-code} ({name}) during {during}"
        elif code is None:
            text = f"the target's process stopped answering during {during}"
        else:
            text = f"the target exited with status {code} during {during}"
        return "fail", text, "", ()
    if status == "timeout":
        return "fail", f"the target ran past the timeout during {during}; its process was killed", "", ()
    if status == "garbled":
        return "fail", f"the target's process sent a reply that cannot be read during {during} "
        f"({reply.get('detail')})", "", ()
    return "fail", f"no result for {during} ({status})", "", ()


def target_output(reply: dict[str, Any]) -> tuple[TargetOutput, dict[str, str]]:
    """The target's arrays from a reply, and field -> note for values that could not be read."""
    f = reply.get("fields", {})
    out = TargetOutput(
        loss=f.get("loss"),
        grads={n: f.get(n) for n in ("U", "W", "V", "b", "c")},
        ds0=f.get("ds0"),
        dxs=f.get("dxs"),
    )
    return out, dict(reply.get("notes", {}))


def compare_output(out: TargetOutput, ref: Ref, notes: dict[str, str] | None = None) -> list[ArrayCheck]:
    """Every array of the target's output against a reference result.

    loss, U, W, V always; b, c where the model has them (None or zeros accepted where it has
    not); ds0 and dxs when the target returns them (dxs: dense inputs only).
    """
    notes = notes or {}

    def cmp(name: str, actual: Any, expected: Any, optional: bool = False) -> ArrayCheck | None:
        if name in notes:
            return not_comparable(name, f"{name}: {notes[name]}")
        if optional:
            return compare_optional(name, actual, expected)
        return compare_array(name, actual, expected)

    arrays = [cmp("loss", out.loss, ref.loss)]
    arrays += [cmp(name, out.grads[name], ref.grads[name]) for name in ("U", "W", "V")]
    for name in ("b", "c"):
        arrays.append(cmp(name, out.grads[name], ref.grads[name], optional=True))
    if out.ds0 is not None or "ds0" in notes:
        arrays.append(cmp("ds0", out.ds0, ref.ds0))
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
    check_id: int, cfg: RNNConfig, reply: dict[str, Any], refs: References, kind: str = "oracle"
) -> list[ConfigCheck]:
    """The "oracle" check of one configuration (and "torch_rnn" where it applies) from the
    target's reply and the references; one target call serves both."""
    kinds = [kind] + (["torch_rnn"] if kind == "oracle" and refs.get("torch_rnn") is not None else [])
    seconds = float(reply.get("seconds", 0.0) or 0.0)
    bad = misbehaviour(reply, f"configuration #{check_id}")
    if bad is not None:
        status, msg, tb, uns = bad
        return [ConfigCheck(check_id, k, cfg, status, (), msg, uns, seconds, tb) for k in kinds]
    out, notes = target_output(reply)
    results = []
    for k in kinds:
        ref = refs["oracle" if k != "torch_rnn" else "torch_rnn"]
        against = "torch.nn.RNN" if k == "torch_rnn" else "the oracle"
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


def fd_check(check_id: int, cfg: RNNConfig, reply: dict[str, Any]) -> ConfigCheck:
    """The target's gradients against central differences of its own loss (from its worker)."""
    seconds = float(reply.get("seconds", 0.0) or 0.0)
    bad = misbehaviour(reply, f"configuration #{check_id}")
    if bad is not None:
        status, msg, tb, uns = bad
        return ConfigCheck(check_id, "finite_differences", cfg, status, (), msg, uns, seconds, tb)
    out, notes = target_output(reply)
    numeric = reply.get("numeric", {})
    arrays: list[ArrayCheck] = []
    for name, n in numeric.items():
        actual = out.grads.get(name) if name in out.grads else (out.ds0 if name == "ds0" else out.dxs)
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
