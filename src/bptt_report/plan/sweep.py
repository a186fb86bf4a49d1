"""The sweep: which random configurations are checked, drawn deterministically from a seed.

The sweep covers each cell the target supports (the Elman RNN, the GRU, the LSTM; see
split_examples), each with its own stream of random numbers: the Elman cell's configurations
are exactly those of a sweep without cells, for the same seed and count. Within a cell every
categorical choice is stratified: its values are dealt out in shuffled rounds, so each
value of each dimension appears about equally often (and at least once when there are at
least as many configurations as values), while the combinations are random:

    input form      tokens (T,), tokens (B, T), dense (T, D), dense (B, T, D)
    activation      tanh, sigmoid, relu, identity (the Elman cell; None for a gated cell)
    truncation      None (twice as often), 0, 1, about T/2, beyond T - 1
    reduction       sum, mean
    mask, bias      off, on (bias: when the target takes biases; else off)
    s0              none, shared (H,), per row (B, H) (batched only; shared otherwise)
    weight scale    manual_bptt.problems.WEIGHT_SCALES; the Elman cell: the spectral radius of
                    W, 0.1 and 0.5 vanish, 1.0 is marginal, 1.5 and 3.0 explode; a gated cell:
                    the init scale, gates from their linear middle (0.1) into saturation (3.0)

Sizes are drawn pairwise distinct where the ranges allow (D != H != K != B), so a transposed
array shows as a wrong shape. A target can be wrong only beyond the ranges (a kernel that tiles
long sequences, a batched path for larger batches, a blocked path for wide states), so each
cell's share of at least LARGE_FROM configurations ends with three large ones, each as drawn
but for one size: a long sequence (T = large_T), a large batch (B = large_B, on a batched
form) and a wide state (H = large_H); all three full BPTT (the oracle cheap: one unrolled
graph) with the Elman cell's radius of W (a gated cell's weight scale) at most LARGE_RADIUS.
The arrays of each configuration come from manual_bptt.problems.make_problem. A small extra set
of tiny configurations (smooth activations, full BPTT) is checked by central finite
differences. numpy only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from manual_bptt.problems import WEIGHT_SCALES, RNNConfig

from ..cells import CELLS
from ..targets.contract import ACTIVATIONS, FORMS, FULL_SUPPORT, Capabilities

#: Largest number of oracle configurations accepted (``examples``).
MAX_EXAMPLES = 100_000
TRUNCATIONS = ("none", "none", "zero", "one", "half", "beyond")
#: Each option's values, dealt in shuffled rounds when the target supports it (see _stratified) ...
OPTION_VALUES: dict[str, tuple[Any, ...]] = {
    "s0": (None, "shared", "per_row"),
    "truncate": TRUNCATIONS,
    "mask": (False, True),
    "reduction=mean": ("sum", "mean"),
}
#: ... and its one value when it does not.
OPTION_OFF: dict[str, Any] = {"s0": None, "truncate": "none", "mask": False, "reduction=mean": "sum"}


@dataclass(frozen=True)
class SweepSize:
    """Ranges of one sweep.

    Attributes:
        examples: number of configurations checked against the oracle (and nn.RNN).
        max_T: longest sequence.  max_B, max_D, max_H, max_K: largest sizes.
        fd_examples: number of tiny configurations checked by finite differences.
        large_T, large_B, large_H: the sizes of the three large configurations that end each
            cell's share (see the module docstring).
    """

    examples: int
    max_T: int
    max_B: int
    max_D: int
    max_H: int
    max_K: int
    fd_examples: int
    large_T: int = 64
    large_B: int = 8
    large_H: int = 32


#: The default sweep: about a minute on 2 cores, plots included.
FULL = SweepSize(examples=3000, max_T=32, max_B=5, max_D=9, max_H=10, max_K=8, fd_examples=40)
#: --quick: a few seconds.
QUICK = SweepSize(examples=32, max_T=7, max_B=3, max_D=5, max_H=5, max_K=5, fd_examples=3)
#: A cell's share of at least this many configurations ends with its three large ones.
LARGE_FROM = 10
#: The large configurations' radius of W (a gated cell's weight scale) is at most this: at
#: radius 1.0 the float64 rounding of any implementation stays far inside the tolerance at
#: every length up to 256 (bptt_report.plan.profiles.RADIUS_CAPS).
LARGE_RADIUS = 1.0


def split_examples(total: int, cells: tuple[str, ...]) -> dict[str, int]:
    """cell -> its share of ``total`` configurations, as even as possible (the first cells take
    the remainder), each at least 1: the default 3000 over three cells is 1000 each, over the
    Elman cell alone 3000."""
    if not cells:
        return {}
    q, r = divmod(total, len(cells))
    return {c: max(1, q + (i < r)) for i, c in enumerate(cells)}


def _stream(seed: int, tag: int, cell: str) -> np.random.Generator:
    """The cell's random numbers: the Elman cell keeps [seed, tag], as before cells existed."""
    return np.random.default_rng([seed, tag] if cell == "rnn" else [seed, tag, CELLS.index(cell)])


def _stratified(rng: np.random.Generator, values: tuple[Any, ...], n: int) -> list[Any]:
    """n values dealt in shuffled rounds of ``values``: each appears floor or ceil(n / len) times."""
    out: list[Any] = []
    while len(out) < n:
        out.extend(values[i] for i in rng.permutation(len(values)))
    return out[:n]


def _distinct(rng: np.random.Generator, ranges: list[tuple[int, int]]) -> list[int]:
    """One integer from each inclusive range, pairwise distinct where possible."""
    used: list[int] = []
    for lo, hi in ranges:
        choices = [v for v in range(lo, hi + 1) if v not in used] or list(range(lo, hi + 1))
        used.append(int(rng.choice(choices)))
    return used


def _length(rng: np.random.Generator, i: int, max_T: int) -> int:
    """T: the first configurations take T = 1, 2, 3 (no recurrence, one step, two steps);
    then half log-uniform (short sequences, where bugs are easy to see) and half uniform
    (long ones, where vanishing and exploding products build up) in 1..max_T."""
    if i < 3:
        return min(i + 1, max_T)
    if rng.random() < 0.5:
        return int(np.clip(round(float(np.exp(rng.uniform(0.0, np.log(max_T))))), 1, max_T))
    return int(rng.integers(1, max_T + 1))


def _truncate(kind: str, T: int, rng: np.random.Generator) -> int | None:
    return {
        "none": None,
        "zero": 0,
        "one": 1,
        "half": max(0, T // 2),
        "beyond": T - 1 + int(rng.integers(0, 3)),
    }[kind]


@dataclass(frozen=True)
class Space:
    """The values each dimension of the sweep may take (inside what a target supports)."""

    forms: tuple[tuple[bool, bool], ...]
    activations: tuple[str | None, ...]
    truncations: tuple[str, ...]
    reductions: tuple[str, ...]
    masks: tuple[bool, ...]
    s0s: tuple[str | None, ...]
    biases: tuple[bool, ...] = (True, False)


def space_of(caps: Capabilities) -> Space:
    """The sweep's values restricted to ``caps`` (each dimension keeps its order)."""
    opts = set(caps.options)

    def values(option: str) -> tuple[Any, ...]:
        return OPTION_VALUES[option] if option in opts else (OPTION_OFF[option],)

    acts = tuple(a for a in ACTIVATIONS if a in caps.activations) if caps.cell == "rnn" else (None,)
    return Space(
        forms=tuple(FORMS[f] for f in FORMS if f in caps.forms),
        activations=acts,
        truncations=values("truncate"),
        reductions=values("reduction=mean"),
        masks=values("mask"),
        s0s=values("s0"),
        biases=(True, False) if caps.bias else (False,),
    )


def plan_configs(seed: int, size: SweepSize, caps: Capabilities = FULL_SUPPORT) -> list[RNNConfig]:
    """The ``size.examples`` configurations of the sweep for the cell ``caps.cell``,
    deterministically from ``seed``, every one inside what ``caps`` supports (none when nothing
    can be checked): those drawn (drawn_configs), the last three made large when there are at
    least LARGE_FROM (see the module docstring)."""
    configs = drawn_configs(seed, size, caps)
    if len(configs) >= LARGE_FROM:
        configs[-3:] = large_configs(configs[-3:], size, space_of(caps))
    return configs


def drawn_configs(seed: int, size: SweepSize, caps: Capabilities = FULL_SUPPORT) -> list[RNNConfig]:
    """The sweep's configurations as drawn, within its ranges (plan_configs before the large ones)."""
    if not caps.checkable:
        return []
    n = size.examples
    sp = space_of(caps)
    rng = _stream(seed, 1, caps.cell)
    forms = _stratified(rng, sp.forms, n)
    acts = _stratified(rng, sp.activations, n) if caps.cell == "rnn" else [None] * n
    truncs = _stratified(rng, sp.truncations, n)
    reductions = _stratified(rng, sp.reductions, n)
    masks = _stratified(rng, sp.masks, n)
    biases = _stratified(rng, sp.biases, n)
    s0s = _stratified(rng, sp.s0s, n)
    scales = _stratified(rng, WEIGHT_SCALES, n)
    configs = []
    for i in range(n):
        tokens, batched = forms[i]
        T = _length(rng, i, size.max_T)
        B, K, H, D = _distinct(rng, [(1, size.max_B), (2, size.max_K), (1, size.max_H), (1, size.max_D)])
        s0_kind = s0s[i] if batched or s0s[i] != "per_row" else "shared"
        configs.append(
            RNNConfig(
                T=T,
                B=B if batched else None,
                D=D,
                H=H,
                K=K,
                tokens=tokens,
                bias=biases[i],
                activation=acts[i],
                truncate=_truncate(truncs[i], T, rng),
                reduction=reductions[i],
                use_mask=masks[i],
                s0_kind=s0_kind,
                weight_scale=scales[i],
                seed=int(rng.integers(2**32)),
                cell=caps.cell,
            )
        )
    return configs


def large_configs(last: list[RNNConfig], size: SweepSize, sp: Space) -> list[RNNConfig]:
    """The three last configurations of a cell's share made large, one size each (see the
    module docstring): T = large_T; B = large_B (on a batched form of the same kind when the
    target takes one, else on any batched form it takes; unchanged when it takes none);
    H = large_H. D and K stay apart from the new size."""
    r = dataclasses.replace

    def tame(c: RNNConfig, **sizes: int) -> RNNConfig:
        c = r(c, truncate=None, weight_scale=min(c.weight_scale, LARGE_RADIUS), **sizes)
        taken = {c.H, c.B}
        D = next(v for v in (c.D, c.D + 1, c.D + 2) if v not in taken)
        K = next(v for v in (c.K, c.K + 1, c.K + 2) if v not in taken | {D})
        return r(c, D=D, K=K)

    long, batch, wide = last
    out = [tame(long, T=size.large_T)]
    batched = [f for f in sp.forms if f[1]]
    if batched:
        tokens = batch.tokens if (batch.tokens, True) in batched else batched[0][0]
        out.append(tame(batch, B=size.large_B, tokens=tokens))
    else:
        out.append(batch)
    out.append(tame(wide, H=size.large_H))
    return out


def plan_fd_configs(seed: int, size: SweepSize, caps: Capabilities = FULL_SUPPORT) -> list[RNNConfig]:
    """Tiny full-BPTT configurations for finite differences (tanh, sigmoid, identity: no kinks).

    T <= 4, H <= 4, D <= 3, K <= 4, B <= 2: a few hundred loss evaluations each. Inside ``caps``
    (a gated cell: activation None, every gate smooth).
    """
    sp = space_of(caps)
    smooth = tuple(a for a in ("tanh", "sigmoid", "identity", None) if a in sp.activations)
    if not caps.checkable or not smooth:
        return []
    n = size.fd_examples
    rng = _stream(seed, 2, caps.cell)
    forms = _stratified(rng, sp.forms, n)
    acts = _stratified(rng, smooth, n)
    s0s = _stratified(rng, sp.s0s, n)
    configs = []
    for i in range(n):
        tokens, batched = forms[i]
        B, K, H, D = _distinct(rng, [(1, 2), (2, 4), (1, 4), (1, 3)])
        configs.append(
            RNNConfig(
                T=int(rng.integers(1, 5)),
                B=B if batched else None,
                D=D,
                H=H,
                K=K,
                tokens=tokens,
                bias=bool(rng.integers(2)) and len(sp.biases) == 2,
                activation=acts[i],
                truncate=None,
                reduction=str(rng.choice(["sum", "mean"])) if len(sp.reductions) == 2 else "sum",
                use_mask=bool(rng.integers(2)) and len(sp.masks) == 2,
                s0_kind=s0s[i] if batched or s0s[i] != "per_row" else "shared",
                weight_scale=float(rng.choice([0.5, 1.0, 1.5])),
                seed=int(rng.integers(2**32)),
                cell=caps.cell,
            )
        )
    return configs


def config_dict(cfg: RNNConfig) -> dict[str, Any]:
    """The configuration as a JSON-ready dict (the fields of RNNConfig)."""
    return dataclasses.asdict(cfg)


def form_name(cfg: RNNConfig) -> str:
    """The input form, e.g. "tokens (B, T)" or "dense (T, D)"."""
    kind = "tokens" if cfg.tokens else "dense"
    shape = (
        ("(B, T)" if cfg.tokens else "(B, T, D)")
        if cfg.B is not None
        else ("(T,)" if cfg.tokens else "(T, D)")
    )
    return f"{kind} {shape}"


def describe_config(cfg: RNNConfig) -> str:
    """A short one-line description, e.g. "T=3 B=None D=2 H=4 K=3 tokens tanh full sum ..."
    (a gated cell: "GRU T=3 ..." or "LSTM T=3 ...", without an activation)."""
    parts = [
        *([] if cfg.cell == "rnn" else [cfg.cell.upper()]),
        f"T={cfg.T}",
        f"B={cfg.B}",
        f"D={cfg.D}",
        f"H={cfg.H}",
        f"K={cfg.K}",
        form_name(cfg),
        *([cfg.activation] if cfg.cell == "rnn" else []),
        "full BPTT" if cfg.truncate is None else f"truncate={cfg.truncate}",
        f"reduction={cfg.reduction}",
        "mask" if cfg.use_mask else "no mask",
        f"s0={cfg.s0_kind}",
        "bias" if cfg.bias else "no bias",
        f"radius(W)={cfg.weight_scale:g}" if cfg.cell == "rnn" else f"weight_scale={cfg.weight_scale:g}",
        f"seed={cfg.seed}",
    ]
    return " ".join(parts)
