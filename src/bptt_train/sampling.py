"""Sampling characters from a trained character model."""

from __future__ import annotations

import numpy as np

from manual_bptt import RNNParams, forward

from .loop import ACTIVATION

__all__ = ["sample"]


def sample(
    params: RNNParams,
    vocab: str,
    seed_char: str,
    n: int,
    *,
    seed: int | None,
    s0: np.ndarray | None = None,
) -> str:
    """Sample ``n`` characters from the model, following ``seed_char``.

    x_0 = seed_char; for t = 0..n-1: s_t = f(U x_t + W s_{t-1} + b), x_{t+1} ~ softmax(V s_t + c).

    Args:
        params: U (H, K), W (H, H), V (K, H), b, c with K = len(vocab).
        vocab: character i has id i.   seed_char: one character of vocab.
        n: characters to sample, >= 0.   seed: seed of the numpy Generator.
        s0: (H,) state before seed_char; None for zeros.
    Returns:
        The n sampled characters (seed_char not included).
    """
    if params.input_size != len(vocab) or params.output_size != len(vocab):
        raise ValueError(
            f"vocab: {len(vocab)} characters, but params have D = {params.input_size}, "
            f"K = {params.output_size}"
        )
    if not isinstance(seed_char, str) or len(seed_char) != 1 or seed_char not in vocab:
        raise ValueError(f"seed_char: expected one character of the vocabulary, got {seed_char!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an integer >= 0, got {n!r}")
    rng = np.random.default_rng(seed)
    x, s, out = vocab.index(seed_char), s0, []
    for _ in range(n):
        fr = forward(params, np.array([x]), activation=ACTIVATION, s0=s)
        cdf = np.cumsum(fr.y_hat[0])
        x = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(vocab) - 1)
        s = fr.final_state
        out.append(vocab[x])
    return "".join(out)
