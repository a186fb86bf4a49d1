"""The environment of a benchmark run: manual_bptt.environment.describe() and what only the
benchmark knows (torch's threads and MKL, the thread pools during the run, the BLAS variables,
the load average, the command)."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import torch
from threadpoolctl import threadpool_info

from manual_bptt.environment import describe

#: Environment variables that change what the BLAS libraries do.
BLAS_VARIABLES = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
)


def thread_pools() -> list[dict]:
    """Every thread pool threadpoolctl sees (numpy's BLAS, torch's, OpenMP), as now limited."""
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads")
    return [{k: d.get(k) for k in keys} | {"library": Path(d["filepath"]).name} for d in threadpool_info()]


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages, where the OS has them."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def environment() -> dict:
    """describe() plus: date, logical_cpus, torch (the version imported), torch_threads,
    torch_mkl, jax (the version imported, or None), threadpools, env (the BLAS and XLA variables),
    loadavg_start, command."""
    return {
        **describe(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_mkl": bool(torch.backends.mkl.is_available()),
        "jax": getattr(sys.modules.get("jax"), "__version__", None),
        "threadpools": thread_pools(),
        "env": {k: os.environ.get(k, "unset") for k in BLAS_VARIABLES},
        "loadavg_start": load_average(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
