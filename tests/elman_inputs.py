"""The small Elman problem that the input tests (tests/core/inputs) share, and what it was drawn from.

Sizes: D = 3 (vocabulary / input size), H = 4, K = 5, batches of B = 2 sequences of T = 6.
RNG is the generator the arrays were drawn from; tests draw more from it.
"""

from __future__ import annotations

import numpy as np

from manual_bptt import RNNParams

D, H, K, B, T = 3, 4, 5, 2, 6
RNG = np.random.default_rng(1234)
P = RNNParams.init(D, H, K, seed=3)
TOK = RNG.integers(0, D, (B, T))  # (B, T) token ids
DENSE = RNG.standard_normal((B, T, D))  # (B, T, D)
YS = RNG.integers(0, K, (B, T))  # (B, T) labels
S0 = RNG.standard_normal(H)  # (H,), shared by every row
S0_ROWS = RNG.standard_normal((B, H))  # (B, H), one per row
MASK = RNG.random((B, T)) < 0.6  # (B, T): the targets counted
MASK[0, 0] = True
