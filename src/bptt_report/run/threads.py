"""The thread settings of every process that computes for a sweep: one rule, written here.

A report's numbers must not depend on where its sweep ran (``--jobs``, ``--scheduler``). They
would: a BLAS on two threads cuts a long product's sum into other partial sums than on one
(OpenBLAS, a cell's dW = sum_t dgh_t^T h_{t-1}, a (G*H, T*B) @ (T*B, H) product: the last bits
differ once T*B is in the hundreds, for the Elman cell, the GRU and the LSTM alike), and a Dask
nanny starts its workers with OMP_NUM_THREADS=1 and the like, while a shell leaves every pool
at the number of CPUs. So every process that computes for a sweep runs its BLAS, OpenMP and
torch pools on THREADS threads:

- the processes that run the target, the cross-checked methods and the finite differences
  (bptt_report.run.pool, bptt_report.module.session) start with ``environment()``: the thread
  variables are set before numpy, torch or anything the target imports loads its pools;
- where the references are computed (the checker, its oracle processes, a Dask worker):
  inside ``fixed()``, or after ``fix()`` in a process of its own.

The standard library only at import (torch and threadpoolctl are imported when the settings
are applied).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: Threads of every BLAS, OpenMP and torch pool in a process that computes for a sweep.
THREADS = 1
#: The variables by which a process's BLAS and OpenMP pools take their size when they load
#: (the three a Dask nanny sets, and those of the other BLAS libraries numpy may be built on).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process started to compute for a sweep: ``base`` (default: this
    process's) with every THREAD_VARIABLES set to THREADS."""
    env = dict(os.environ if base is None else base)
    env.update(dict.fromkeys(THREAD_VARIABLES, str(THREADS)))
    return env


def fix() -> None:
    """This process's torch and numpy BLAS pools on THREADS threads from now on (a process
    that only computes references: an oracle process, from its main thread)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    threadpool_limits(THREADS)


#: The BLAS limit of fixed() (the process's): how many threads are inside, and the limiter that
#: restores the earlier setting when the last one leaves.
_LOCK = threading.Lock()
_inside = 0
_blas: Any = None


@contextmanager
def fixed() -> Iterator[None]:
    """torch and numpy's BLAS on THREADS threads meanwhile, restored after: around the references
    computed in a process that does other things too.

    torch's count belongs to the calling thread (OpenMP), so each thread sets and restores its
    own; the BLAS limit (threadpoolctl) is the process's, so threads inside at once (a Dask
    worker with several threads) share it: the first one in applies it, the last one out
    restores it, and none leaves the others without it."""
    import torch
    from threadpoolctl import threadpool_limits

    global _inside, _blas
    with _LOCK:
        if _inside == 0:
            _blas = threadpool_limits(THREADS, user_api="blas")
        _inside += 1
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        with _LOCK:
            _inside -= 1
            if _inside == 0 and _blas is not None:
                _blas.restore_original_limits()
                _blas = None
