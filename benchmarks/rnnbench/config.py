"""Benchmark sizes and run settings: the full run and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """One benchmark size. tokens: integer token ids in [0, D) (D = vocabulary), else dense.

    rounds: round-robin rounds; gemm_every: the GEMMs run in every gemm_every-th round only.
    """

    name: str
    B: int
    T: int
    D: int
    H: int
    K: int
    tokens: bool
    rounds: int
    gemm_every: int


@dataclass(frozen=True)
class Config:
    sizes: tuple[Size, ...]
    gemm_n: int
    scaling_T: tuple[int, ...]  # bptt
    rtrl_T: tuple[int, ...]
    decompose_T: tuple[int, ...]
    scaling_dims: tuple[int, int, int, int]  # B, D (vocabulary), H, K
    rtrl_H: int
    scaling_rounds: int
    memory_T: tuple[int, ...]
    memory_dims: tuple[int, int, int, int]  # B, D, H, K
    slot_s: float  # target duration of one timed slot (back-to-back calls of one contender)


FULL = Config(
    sizes=(
        Size("small", B=1, T=25, D=65, H=100, K=65, tokens=True, rounds=150, gemm_every=15),
        Size("medium", B=32, T=64, D=128, H=256, K=128, tokens=False, rounds=25, gemm_every=3),
        Size("large", B=64, T=128, D=512, H=512, K=512, tokens=False, rounds=13, gemm_every=1),
    ),
    gemm_n=2048,
    scaling_T=(32, 64, 128, 256, 512, 1024, 2048, 4096),
    rtrl_T=(32, 64, 128, 256, 512, 1024),
    decompose_T=(32, 64, 128, 256, 512),
    scaling_dims=(4, 16, 32, 16),
    rtrl_H=8,
    scaling_rounds=5,
    memory_T=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
    memory_dims=(8, 32, 128, 32),
    slot_s=0.02,
)
QUICK = Config(
    sizes=(
        Size("small", B=1, T=6, D=7, H=5, K=7, tokens=True, rounds=3, gemm_every=1),
        Size("medium", B=2, T=5, D=4, H=6, K=3, tokens=False, rounds=3, gemm_every=1),
        Size("large", B=3, T=4, D=5, H=7, K=4, tokens=False, rounds=3, gemm_every=1),
    ),
    gemm_n=64,
    scaling_T=(4, 8, 16),
    rtrl_T=(4, 8, 16),
    decompose_T=(4, 8, 16),
    scaling_dims=(2, 3, 4, 3),
    rtrl_H=3,
    scaling_rounds=2,
    memory_T=(4, 8, 16),
    memory_dims=(2, 3, 4, 3),
    slot_s=0.001,
)
