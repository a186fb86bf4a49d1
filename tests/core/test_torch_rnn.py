"""manual_bptt.bptt against PyTorch's native torch.nn.RNN + nn.Linear + F.cross_entropy.

A second, independent oracle: cuDNN-style fused RNN code rather than our unrolled loop.
nn.RNN has two biases (b_ih + b_hh = our b) and only tanh / relu, no truncation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import manual_bptt as mb
from conftest import examples
from manual_bptt.testing import RNNConfig, make_problem, rnn_configs
from reference import bptt as oracle_bptt
from reference.torch_rnn import make_torch_rnn, params_from_torch, torch_rnn_bptt


def torch_case(cfg):
    """(nn.RNN, nn.Linear, RNNParams with their weights, Problem with cfg's data).

    W (weight_hh) is rescaled to spectral radius cfg.weight_scale * U(0.9, 1.1), as in
    make_problem (never exactly 1: with H = 1, W = [[-1.0]] makes relu pre-activations
    cancel to exactly 0 on repeated tokens, where relu' is ambiguous).
    """
    rnn, linear = make_torch_rnn(
        cfg.D, cfg.H, cfg.K, nonlinearity=cfg.activation, bias=cfg.bias, seed=cfg.seed % 2**31,
        dtype=torch.float64,
    )
    with torch.no_grad():
        rho = float(torch.linalg.eigvals(rnn.weight_hh_l0).abs().max())
        if rho > 0:
            jitter = np.random.default_rng(cfg.seed).uniform(0.9, 1.1)
            rnn.weight_hh_l0.mul_(cfg.weight_scale * jitter / rho)
    tp = params_from_torch(rnn, linear)
    p = mb.RNNParams(U=tp.U, W=tp.W, V=tp.V, b=tp.b, c=tp.c)
    return rnn, linear, p, make_problem(cfg)


@settings(max_examples=examples(0.5), deadline=None)
@given(cfg=rnn_configs(activations=("tanh", "relu"), truncation=False))
def test_bptt_matches_native_torch_rnn(cfg, check):
    rnn, linear, p, prob = torch_case(cfg)
    kw = {"s0": prob.s0, "reduction": cfg.reduction, "mask": prob.mask}
    r = mb.bptt(p, prob.xs, prob.ys, activation=cfg.activation, **kw)
    native = torch_rnn_bptt(rnn, linear, prob.xs, prob.ys, **kw)
    check(r, native, context=f"native nn.RNN, {cfg!r}")
    # the unrolled oracle agrees with the native modules too (checks the oracle itself)
    check(oracle_bptt(p, prob.xs, prob.ys, activation=cfg.activation, **kw), native,
          context=f"oracle vs native nn.RNN, {cfg!r}", record=False)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tokens", [True, False])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_native_torch_rnn_grid(activation, bias, tokens, reduction, check):
    """Every combination of activation x bias x input kind x reduction, batched, with a
    per-row s0 and a mask, whatever the Hypothesis profile draws."""
    cfg = RNNConfig(T=7, B=3, D=5, H=4, K=6, tokens=tokens, bias=bias, activation=activation,
                    truncate=None, reduction=reduction, use_mask=True, s0_kind="per_row",
                    weight_scale=1.0, seed=99)
    rnn, linear, p, prob = torch_case(cfg)
    assert not prob.mask.all() and prob.mask.any()
    kw = {"s0": prob.s0, "reduction": reduction, "mask": prob.mask}
    r = mb.bptt(p, prob.xs, prob.ys, activation=activation, **kw)
    check(r, torch_rnn_bptt(rnn, linear, prob.xs, prob.ys, **kw), context=f"native nn.RNN, {cfg!r}")


@pytest.mark.parametrize("s0_kind", [None, "shared", "per_row"])
def test_native_torch_rnn_initial_state_forms(s0_kind, check):
    cfg = RNNConfig(T=5, B=2, D=3, H=6, K=4, tokens=False, bias=True, activation="tanh",
                    truncate=None, reduction="sum", use_mask=False, s0_kind=s0_kind,
                    weight_scale=1.5, seed=5)
    rnn, linear, p, prob = torch_case(cfg)
    r = mb.bptt(p, prob.xs, prob.ys, s0=prob.s0)
    native = torch_rnn_bptt(rnn, linear, prob.xs, prob.ys, s0=prob.s0)
    assert r.ds0.shape == ((6,) if s0_kind == "shared" else (2, 6))
    check(r, native, context=f"native nn.RNN, {cfg!r}")
    unbatched = dataclasses.replace(cfg, B=None, s0_kind=None if s0_kind is None else "shared")
    rnn, linear, p, prob = torch_case(unbatched)
    check(mb.bptt(p, prob.xs, prob.ys, s0=prob.s0), torch_rnn_bptt(rnn, linear, prob.xs, prob.ys, s0=prob.s0),
          context=f"native nn.RNN, {unbatched!r}")
