"""What a run's numbers owe to the machine: the CPU, the two BLAS libraries, and the floor measured there.

results.json's "machine" (made by summary() from the environment and the groups) and the
"This machine" section of results.md name them, so that no figure is read as another machine's:

* machine-dependent: every time and FLOP rate, ours / torch and ours / JAX, the floor / torch
  layer ratio, and the two GEMMs against each other (numpy's BLAS against torch's: which kernel
  each library selects on this CPU, OpenBLAS's and MKL's);
* less so: bptt / floor (both run on numpy's BLAS, the same products; what it adds is our own
  elementwise work, validation and copies, whose share grows on a CPU whose products are faster);
* not: the memory slopes (bytes per step: what the algorithm keeps) and the scaling exponents in T.
"""

from __future__ import annotations

from .environment import widest_vector
from .names import GEMM_NP, GEMM_TORCH, OURS, PRODUCTS

#: The sentence results.md prints under the machine's description.
DEPENDS = (
    "Machine-dependent: every time and rate, ours / torch and ours / JAX, 'floor / torch layer' and "
    "GEMM numpy / GEMM torch (numpy's BLAS against torch's on this CPU). Less so: 'bptt / floor' (the "
    "same products on the same BLAS; what it adds is our own elementwise work, whose share grows where "
    "products are faster). Not machine-dependent: the memory slopes (bytes per step) and the scaling "
    "exponents in T."
)


def floor_rows(groups: list[dict]) -> list[dict]:
    """Per group: the floor (bptt's products alone) and the two GEMMs measured in it.

    Keys: cell, size, dtype, threads, floor_ms, floor_gflops, bptt_over_floor (None without ours),
    floor_over_torch (the floor against the group's torch layer, None without a floor),
    gemm_numpy_gflops, gemm_torch_gflops, gemm_numpy_over_torch (time ratio, > 1: numpy's BLAS
    is the slower one here).
    """
    rows = []
    for g in groups:
        c = g["contenders"]
        if PRODUCTS not in c:
            continue
        np_gemm, t_gemm = c.get(GEMM_NP), c.get(GEMM_TORCH)
        over = g["ratios"].get(PRODUCTS) if OURS in c else None
        vs = g.get("floor_vs_nn_rnn")
        rows.append(
            {
                "cell": g.get("cell", "rnn"),
                "size": g["size"]["name"],
                "dtype": g["dtype"],
                "threads": g.get("threads", 1),
                "floor_ms": c[PRODUCTS]["median"] * 1e3,
                "floor_gflops": c[PRODUCTS]["gflops"],
                "bptt_over_floor": over["ratio"] if over else None,
                "floor_over_torch": vs["ratio"] if vs else None,
                "gemm_numpy_gflops": np_gemm["gflops"] if np_gemm else None,
                "gemm_torch_gflops": t_gemm["gflops"] if t_gemm else None,
                "gemm_numpy_over_torch": (
                    np_gemm["median"] / t_gemm["median"] if np_gemm and t_gemm else None
                ),
            }
        )
    return rows


def summary(env: dict, groups: list[dict]) -> dict:
    """results.json's "machine": cpu (model name), cpu_identity, vector_extensions, widest_vector,
    numpy_blas, torch_blas (as environment() records them), floor (floor_rows), depends (DEPENDS)."""
    ext = env["vector_extensions"]
    return {
        "cpu": env["cpu"],
        "cpu_identity": env["cpu_identity"],
        "vector_extensions": ext,
        "widest_vector": widest_vector(ext["extensions"]),
        "numpy_blas": env["numpy_blas"],
        "torch_blas": env["torch_blas"],
        "floor": floor_rows(groups),
        "depends": DEPENDS,
    }
