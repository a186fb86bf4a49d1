"""What this process runs on: interpreter, numpy and its BLAS, platform, CPUs, package versions.

    from manual_bptt.environment import describe
    describe()["numpy"]   # '2.1.3'

The one description of the environment that results (benchmarks, gradient-check reports) record.
Numpy only: the versions of torch, hypothesis, matplotlib and jax are read from the installed
distributions' metadata, without importing those packages, and the BLAS is described by
threadpoolctl only if it is importable. Callers add what only they know (a thread count of
torch, a load average, ...) to the dict they get.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np

#: Distributions whose versions describe() reports, read from their metadata only.
OPTIONAL_DISTRIBUTIONS = ("torch", "hypothesis", "matplotlib", "jax")
#: The value of a version when the distribution is not installed.
NOT_INSTALLED = "not installed"


def distribution_version(name: str) -> str:
    """The installed version of distribution `name`, or NOT_INSTALLED; never imports it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo where there is one), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def blas() -> str:
    """numpy's BLAS as threadpoolctl reports it, one '; '-joined entry per BLAS library loaded:
    'openblas 0.3.27 (libscipy_openblas64_.so, kernel Haswell, pthreads), 2 thread(s)'.
    Without threadpoolctl: numpy's own name of the BLAS it was built against, if it has one."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"{_numpy_build_blas()} (threadpoolctl not installed)"
    pools = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    if not pools:
        return "none reported by threadpoolctl"
    return "; ".join(
        f"{d.get('internal_api')} {d.get('version')} ({Path(d.get('filepath', '?')).name}, "
        f"kernel {d.get('architecture')}, {d.get('threading_layer') or '-'}), "
        f"{d.get('num_threads')} thread(s)"
        for d in pools
    )


def _numpy_build_blas() -> str:
    """The BLAS name numpy's build configuration records (numpy >= 1.26), else 'unknown'."""
    try:
        config = np.show_config(mode="dicts")  # type: ignore[call-arg]
        return str(config["Build Dependencies"]["blas"]["name"])
    except (TypeError, KeyError):
        return "unknown"


def describe() -> dict[str, str]:
    """The environment, every value a string.

    Keys: python, numpy, blas, platform, machine, cpu, cpus (usable CPUs), torch, hypothesis,
    matplotlib, jax (versions from metadata, NOT_INSTALLED when absent), manual_bptt.
    """
    from . import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": str(usable_cpus()),
        **{name: distribution_version(name) for name in OPTIONAL_DISTRIBUTIONS},
        "manual_bptt": __version__,
    }
