"""Checking one configuration: the target against the oracle, nn.RNN, and finite differences.

oracle               reference.bptt: plain unrolled PyTorch autograd, every option
torch_rnn            reference.torch_rnn_bptt: torch.nn.RNN + nn.Linear + F.cross_entropy,
                     with the configuration's weights copied in; only where nn.RNN applies
                     (tanh or relu, full BPTT or a window covering the whole sequence)
finite_differences   central differences of the target's own loss,
                     (E(θ + eps e_i) - E(θ - eps e_i)) / (2 eps), eps = 1e-5, for every entry of
                     U, W, V, b, c, s0 (when given) and dense xs; full BPTT only
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import reference
from manual_bptt import RNNParams
from manual_bptt.testing import Problem, RNNConfig, central_differences, make_problem

from .compare import ArrayCheck, compare_array, compare_fd, compare_optional, looks_like_float32
from .results import ConfigCheck
from .targets import TargetOutput, Unsupported, call_target

#: Finite-difference step.
FD_EPS = 1e-5


def compare_output(out: TargetOutput, ref: Any) -> list[ArrayCheck]:
    """Every array of the target's output against a reference result (RefResult-like).

    loss, U, W, V always; b, c where the model has them (None or zeros accepted where it has
    not); ds0 and dxs when the target returns them (dxs: dense inputs only).
    """
    arrays = [compare_array("loss", out.loss, ref.loss)]
    arrays += [compare_array(name, out.grads[name], getattr(ref.grads, name)) for name in ("U", "W", "V")]
    for name in ("b", "c"):
        a = compare_optional(name, out.grads[name], getattr(ref.grads, name))
        if a is not None:
            arrays.append(a)
    if out.ds0 is not None:
        arrays.append(compare_array("ds0", out.ds0, ref.ds0))
    if out.dxs is not None and ref.dxs is not None:
        arrays.append(compare_array("dxs", out.dxs, ref.dxs))
    return arrays


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


def oracle_reference(prob: Problem, overrides: dict[str, Any] | None = None) -> Any:
    """reference.bptt on the problem's arrays, float64."""
    kw = {**prob.kwargs(), **(overrides or {})}
    return reference.bptt(prob.params, prob.xs, prob.ys, **kw)


def torch_rnn_applies(cfg: RNNConfig) -> bool:
    """nn.RNN has tanh and relu only, and computes full BPTT."""
    return cfg.activation in ("tanh", "relu") and (cfg.truncate is None or cfg.truncate >= cfg.T - 1)


def torch_rnn_reference(prob: Problem) -> Any:
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
    return reference.torch_rnn_bptt(
        rnn, linear, prob.xs, prob.ys, s0=prob.s0, reduction=c.reduction, mask=prob.mask
    )


def run_oracle_checks(fn: Callable[..., Any], cfg: RNNConfig, check_id: int) -> list[ConfigCheck]:
    """The "oracle" check of one configuration, and the "torch_rnn" check where it applies.

    The target is called once; both references see the same output.
    """
    t0 = time.perf_counter()
    prob = make_problem(cfg)
    kinds = ["oracle"] + (["torch_rnn"] if torch_rnn_applies(cfg) else [])
    try:
        out = call_target(fn, prob.params, prob.xs, prob.ys, prob.kwargs())
    except Unsupported as exc:
        dt = time.perf_counter() - t0
        return [ConfigCheck(check_id, k, cfg, "unsupported", (), str(exc), exc.keywords, dt) for k in kinds]
    except Exception as exc:
        dt = time.perf_counter() - t0
        msg = f"the target raised {type(exc).__name__}: {exc}"
        return [ConfigCheck(check_id, k, cfg, "fail", (), msg, (), dt) for k in kinds]
    results = []
    for kind in kinds:
        if kind != "oracle":
            t0 = time.perf_counter()  # the target's own time is counted in the oracle check
        against = "the oracle" if kind == "oracle" else "torch.nn.RNN"
        try:
            ref = oracle_reference(prob) if kind == "oracle" else torch_rnn_reference(prob)
        except Exception as exc:
            msg = f"{against} could not run: {type(exc).__name__}: {exc}"
            results.append(ConfigCheck(check_id, kind, cfg, "error", (), msg, (), time.perf_counter() - t0))
            continue
        arrays = compare_output(out, ref)
        passed = all(a.passed for a in arrays)
        msg = "" if passed else failure_message(arrays, against)
        status = "pass" if passed else "fail"
        results.append(
            ConfigCheck(check_id, kind, cfg, status, tuple(arrays), msg, (), time.perf_counter() - t0)
        )
    return results


def _central_differences(loss_of: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central differences of loss_of at x with step FD_EPS (float64, x's shape)."""
    return central_differences(loss_of, x, eps=FD_EPS)


def run_fd_check(fn: Callable[..., Any], cfg: RNNConfig, check_id: int) -> ConfigCheck:
    """The target's gradients against central differences of the target's own loss (full BPTT)."""
    t0 = time.perf_counter()
    prob = make_problem(cfg)
    kw = {**prob.kwargs(), "truncate": None}
    p = prob.params

    def loss(params: RNNParams = p, xs: Any = prob.xs, s0: Any = prob.s0) -> float:
        return float(call_target(fn, params, xs, prob.ys, {**kw, "s0": s0}).loss)

    try:
        out = call_target(fn, p, prob.xs, prob.ys, kw)
        arrays: list[ArrayCheck] = []
        for name, value in p.items():
            numeric = _central_differences(lambda a, name=name: loss(params=p.replace(**{name: a})), value)
            arrays.append(compare_fd(name, out.grads[name], numeric))
        if prob.s0 is not None and out.ds0 is not None:
            arrays.append(compare_fd("ds0", out.ds0, _central_differences(lambda a: loss(s0=a), prob.s0)))
        if not cfg.tokens and out.dxs is not None:
            arrays.append(compare_fd("dxs", out.dxs, _central_differences(lambda a: loss(xs=a), prob.xs)))
    except Unsupported as exc:
        return ConfigCheck(
            check_id,
            "finite_differences",
            cfg,
            "unsupported",
            (),
            str(exc),
            exc.keywords,
            time.perf_counter() - t0,
        )
    except Exception as exc:
        msg = f"the target raised {type(exc).__name__}: {exc}"
        return ConfigCheck(check_id, "finite_differences", cfg, "fail", (), msg, (), time.perf_counter() - t0)
    passed = all(a.passed for a in arrays)
    msg = "" if passed else failure_message(arrays, "central finite differences of its own loss")
    return ConfigCheck(
        check_id,
        "finite_differences",
        cfg,
        "pass" if passed else "fail",
        tuple(arrays),
        msg,
        (),
        time.perf_counter() - t0,
    )
