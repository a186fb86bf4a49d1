"""The sample models of the plots: how far back each E_t reaches, for each cell. numpy only.

For each sample model (an Elman RNN in a vanishing and in an exploding regime, a GRU, an
LSTM) the norms ||dE_t/dz_k|| over (t, k), k <= t, where z_k is the full state (s_k for the
Elman cell, h_k for the GRU, [h_k; c_k] for the LSTM), by the chain rule

    dE_t/dz_{k-1} = dE_t/dz_k · dz_k/dz_{k-1}

from manual_bptt.decompose's factors (terms.dE_ds(t), terms.ds_ds(k, k - 1)), and the
decomposition's lag profile (term norms and state Jacobians against the lag L = t - k). For
the LSTM the two parts of dE_t/dz_k are kept apart: the h path ||dE_t/dh_k|| and the c path
||dE_t/dc_k||. The cell state is carried by c_k = f_k ⊙ c_{k-1} + i_k ⊙ g_k, whose Jacobian
in c_{k-1} is diag(f_k) with no squashing nonlinearity on the way, so with forget gates near 1
the c path keeps long lags alive while the h path decays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import manual_bptt as mb
from manual_bptt.problems import RNNConfig, make_problem

from ..plan.sweep import config_dict

#: The sample models: (name, cell, activation (the Elman cell), weight scale). The Elman
#: cell's scale is the spectral radius of W (tanh saturates, so its gradients cannot keep
#: exploding; the linear RNN shows radius^L growth); a gated cell's is the init scale.
REGIMES: tuple[tuple[str, str, str | None, float], ...] = (
    ("vanishing", "rnn", "tanh", 0.5),
    ("exploding", "rnn", "identity", 1.5),
    ("GRU", "gru", None, 1.0),
    ("LSTM", "lstm", None, 1.0),
)
#: Their size: T steps, D token ids, H hidden units, K classes.
REGIME_T, REGIME_D, REGIME_H, REGIME_K = 24, 6, 8, 5
#: Added to the LSTM sample's forget-gate biases (both b_if and b_hf): forget gates near
#: sigmoid(LSTM_FORGET_BIAS) ~ 0.95 (a common initialization), so that the c path carries.
LSTM_FORGET_BIAS = 1.5


def regime_config(activation: str | None, radius: float, seed: int, cell: str = "rnn") -> RNNConfig:
    """The sample model of a regime: unbatched tokens, shared s0, bias, full BPTT."""
    return RNNConfig(
        T=REGIME_T, B=None, D=REGIME_D, H=REGIME_H, K=REGIME_K, tokens=True, bias=True, activation=activation,
        truncate=None, reduction="sum", use_mask=False, s0_kind="shared", weight_scale=radius, seed=seed,
        cell=cell,
    )  # fmt: skip


def state_gradient_norms(d: mb.Decomposition, parts: tuple[slice, ...] | None = None) -> list[np.ndarray]:
    """||dE_t/dz_k|| for k <= t, (T, T) each (zero above the diagonal), by the chain rule
    dE_t/dz_{k-1} = dE_t/dz_k · dz_k/dz_{k-1}, from manual_bptt's decomposition factors.

    Args:
        d: from manual_bptt.decompose, unbatched (dE_ds(t): (S,), ds_ds: (S, S)).
        parts: slices of z whose norms are wanted (default: the whole state), e.g. the h and
            c halves of the LSTM's z = [h; c].

    Returns:
        One (T, T) array per part, rows t, columns k.
    """
    T = d.T
    parts = parts or (slice(None),)
    J = [None] + [d.ds_ds(k, k - 1) for k in range(1, T)]  # dz_k/dz_{k-1}, (S, S)
    out = [np.zeros((T, T)) for _ in parts]
    for t in range(T):
        g = d.dE_ds(t)  # dE_t/dz_t, (S,)
        for k in range(t, -1, -1):
            for o, part in zip(out, parts, strict=True):
                o[t, k] = np.linalg.norm(g[part])
            if k > 0:
                g = g @ J[k]  # dE_t/dz_{k-1}
    return out


def lag_means(norms: np.ndarray) -> list[float]:
    """mean over t of norms[t, t - L], for L = 0 .. T - 1."""
    T = norms.shape[0]
    return [float(np.mean([norms[t, t - L] for t in range(L, T)])) for L in range(T)]


def _sample(cell: str, activation: str | None, scale: float, seed: int) -> tuple[RNNConfig, Any, Any, Any]:
    cfg = regime_config(activation, scale, seed, cell)
    prob = make_problem(cfg)
    p = prob.params
    if cell == "lstm":
        H = cfg.H
        f = np.zeros(4 * H)
        f[H : 2 * H] = LSTM_FORGET_BIAS / 2  # split over b_if and b_hf
        p = p.replace(b_ih=p.b_ih + f, b_hh=p.b_hh + f)
    return cfg, p, prob, mb.decompose(p, prob.xs, prob.ys, activation=activation, s0=prob.s0)


def sample_regimes(seed: int, cells: tuple[str, ...] = ("rnn", "gru", "lstm")) -> list[dict[str, Any]]:
    """The sample models of ``cells``: lag profile and ||dE_t/dz_k|| (JSON-ready); the LSTM's
    also split into the h path and the c path."""
    out = []
    for i, (name, cell, activation, scale) in enumerate(REGIMES):
        if cell not in cells:
            continue
        sample_seed = int(np.random.default_rng([seed, 3, i]).integers(2**32))
        cfg, _, _, d = _sample(cell, activation, scale, sample_seed)
        lp = d.lag_profile()
        H = cfg.H
        parts = (slice(None), slice(0, H), slice(H, 2 * H)) if cell == "lstm" else (slice(None),)
        norms = state_gradient_norms(d, parts)
        entry: dict[str, Any] = {
            "name": name,
            "cell": cell,
            "activation": activation,
            "spectral_radius": scale if cell == "rnn" else None,
            "weight_scale": scale,
            "config": config_dict(cfg),
            "lag": lp.lag.tolist(),
            "term_W_mean": lp.term_W_mean.tolist(),
            "jac_spec_mean": lp.jac_spec_mean.tolist(),
            "jac_fro_mean": lp.jac_fro_mean.tolist(),
            "dE_ds_norms": norms[0].tolist(),
            "dE_ds_lag_mean": lag_means(norms[0]),
        }
        if cell == "lstm":
            entry["forget_bias_added"] = LSTM_FORGET_BIAS
            entry["dE_dh_norms"], entry["dE_dc_norms"] = norms[1].tolist(), norms[2].tolist()
            entry["dE_dh_lag_mean"], entry["dE_dc_lag_mean"] = lag_means(norms[1]), lag_means(norms[2])
        out.append(entry)
    return out


__all__ = [
    "LSTM_FORGET_BIAS",
    "REGIMES",
    "REGIME_D",
    "REGIME_H",
    "REGIME_K",
    "REGIME_T",
    "lag_means",
    "regime_config",
    "sample_regimes",
    "state_gradient_norms",
]
