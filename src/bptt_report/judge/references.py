"""The references, computed where the target cannot reach them: in the checker, in oracle worker
processes, or in a Dask worker; never where the target runs. Each on arrays rebuilt from the
configuration by targets.contract.problem_for (manual_bptt.problems.make_problem):

oracle       reference.bptt_cell(cell, ...): plain unrolled PyTorch autograd, every option
             (reference.bptt for the Elman cell, gru_bptt, lstm_bptt)
torch_rnn    the native module with the configuration's weights copied in, + nn.Linear +
             F.cross_entropy: torch.nn.RNN (reference.torch_rnn_bptt; tanh or relu), nn.GRU or
             nn.LSTM (reference.to_torch, reference.torch_gated_bptt); only for full BPTT or a
             window covering the whole sequence

The arrays: loss, the cell's parameters (U, W, V, b, c; or U, W, b_ih, b_hh, V, c), ds0 (the
LSTM's as ds0.h and ds0.c), dxs.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

import reference
from manual_bptt.problems import Problem, RNNConfig
from reference.autograd import ACTIVATIONS, initial_state, prepare_targets, prepare_xs, rnn_step, step_loss

from ..run import threads
from ..run.protocol import Request
from ..run.signals import leave_to_the_checker, signals_blocked
from ..targets.contract import PARAM_FIELDS, problem_for, state_parts


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


def elman_trajectory(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's own intermediate values of an Elman problem, by autograd through its steps
    (reference.autograd.rnn_step, step_loss; full BPTT): (s, delta) with s (B, T + 1, H),
    s[:, 0] = s_{-1} = s0 and s[:, t + 1] = s_t, and delta (B, T, H), delta_t = dE/da_t (the
    pre-activation's gradient, every later step's share included). B = 1 when unbatched."""
    cfg, p, dtype = prob.cfg, prob.params, torch.float64
    f = ACTIVATIONS[str(cfg.activation)]
    U, W, V = (torch.tensor(np.asarray(a), dtype=dtype, requires_grad=True) for a in (p.U, p.W, p.V))
    b, c = (None if a is None else torch.tensor(np.asarray(a), dtype=dtype) for a in (p.b, p.c))
    tokens, batched, _, xs_b = prepare_xs(prob.xs, dtype, requires_grad=False)
    ys_b, weight = prepare_targets(prob.ys, prob.mask, cfg.reduction, dtype)
    B, T = ys_b.shape
    s = initial_state(prob.s0, W.shape[0], B, batched, dtype, requires_grad=False).expand(B, -1)
    states, pre = [s], []
    E = torch.zeros((), dtype=dtype)
    for t in range(T):
        a = rnn_step(U, W, b, xs_b[:, t], s, lambda z: z, tokens)  # a_t = U x_t + W s_{t-1} + b
        a.retain_grad()
        s = f(a)  # s_t = f(a_t)
        pre.append(a)
        states.append(s)
        E = E + step_loss(V, c, s, ys_b[:, t], weight[:, t])
    E.backward()
    out_s = torch.stack([x.detach() for x in states], dim=1).numpy()
    delta = torch.stack([a.grad for a in pre], dim=1).numpy()
    return out_s, delta


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


def references_of(configs: list[RNNConfig], jobs: int) -> list[References]:
    """The oracle's and nn.RNN's results for every configuration: here for jobs=1, else in
    ``jobs`` oracle processes (spawn; they never run the target)."""
    if jobs <= 1 or len(configs) < 2 * jobs:
        return references_batch(configs)
    n = min(len(configs), 32 * jobs)  # small chunks: an interrupt waits for the running ones only
    chunks = [list(range(i, len(configs), n)) for i in range(n)]
    out: list[References | None] = [None] * len(configs)
    others = set(multiprocessing.active_children())
    ex = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_oracle_worker
    )
    try:
        with signals_blocked():
            futures: list[tuple[list[int], Future[list[References]]]] = [
                (idx, ex.submit(references_batch, [configs[i] for i in idx])) for idx in chunks
            ]
        for idx, fut in futures:
            for i, r in zip(idx, fut.result(), strict=True):
                out[i] = r
    except BaseException:
        for proc in set(multiprocessing.active_children()) - others:  # ours: stop now, not after their chunk
            proc.kill()  # (SIGTERM is held back while they start)
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return [r if r is not None else {"oracle": "not computed", "torch_rnn": None} for r in out]
