"""manual_bptt's other derivations of the same gradient, as targets (module:function names with
manual_bptt.bptt's signature), for the thorough profile's cross-checks (bptt_report.judge.crosschecks).
They run in the target's worker processes, like any target: numpy and manual_bptt only.

    rtrl          manual_bptt.rtrl: forward-mode sensitivities, every array
    decomposed    dW, dU and the biases as the explicit double sum over t and k of manual_bptt.decompose's
                  terms; the loss from the decomposition too; dV, dc, ds0, dxs from manual_bptt.bptt
                  (the output layer and the inputs have no (t, k) terms)

Both compute full BPTT only (no ``truncate`` keyword).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import manual_bptt as mb


def rtrl(p: Any, xs: Any, ys: Any, *, activation: str | None = None, s0: Any = None,
         reduction: str = "sum", mask: Any = None) -> Any:  # fmt: skip
    """manual_bptt.rtrl (loss, grads, ds0, dxs)."""
    return mb.rtrl(p, xs, ys, activation=activation, s0=s0, reduction=reduction, mask=mask)


def decomposed(p: Any, xs: Any, ys: Any, *, activation: str | None = None, s0: Any = None,
               reduction: str = "sum", mask: Any = None) -> Any:  # fmt: skip
    """The gradient as sum_t sum_k of the decomposition's terms: .loss, .grads (U, W, V and the biases),
    .ds0, .dxs. Shapes as manual_bptt.bptt's result."""
    kw = dict(activation=activation, s0=s0, reduction=reduction, mask=mask)
    d = mb.decompose(p, xs, ys, **kw)
    r = mb.bptt(p, xs, ys, **kw)
    # dE/dθ = sum_t sum_k term[t, k]  (the seed's double sum, term by term)
    sums = {n: getattr(d, n).full().sum(axis=(0, 1)) for n in ("W", "U")}
    for bias in ("b", "b_ih", "b_hh"):  # the Elman cell's b; a gated cell's b_ih and b_hh
        view = getattr(d, bias, None)
        if view is not None:
            sums[bias] = view.full().sum(axis=(0, 1))
    return SimpleNamespace(loss=d.loss, grads=r.grads.replace(**sums), ds0=r.ds0, dxs=r.dxs)
