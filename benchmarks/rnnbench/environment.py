"""The environment of a benchmark run: manual_bptt.environment.describe() and what only the
benchmark knows (the CPU's identity and vector extensions, numpy's BLAS and the kernel it
selected, torch's BLAS, torch's threads, the thread pools during the run, the BLAS variables,
the load average, the command).

The CPU and the two BLAS libraries are what makes a result of one machine differ from another's:
every results file names them (and tables.machine prints them with the floor measured there).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np
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
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "XLA_FLAGS",
)

#: /proc/cpuinfo flags (x86: "flags", Arm: "Features") that name vector extensions.
VECTOR_FLAG = re.compile(r"^(sse\w*|ssse3|avx\w*|fma\w*|f16c|amx\w*|asimd\w*|neon|sve\w*|sme(?!p$)\w*)$")
#: numpy's own names of CPU features (its runtime dispatch), used where /proc/cpuinfo has none.
NUMPY_VECTOR_FEATURE = re.compile(
    r"^(SSE\w*|SSSE3|AVX\w*|FMA\w*|F16C|AMX\w*|ASIMD\w*|NEON\w*|SVE\w*|VSX\w*|VX\w*)$"
)


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
        blocks.append(fields)
    return blocks


def cpu_identity() -> dict[str, str | None]:
    """vendor, family, model, stepping (x86) or implementer / part (Arm), from /proc/cpuinfo; the
    model name alone ('AMD EPYC') can leave the generation unnamed. None where unknown."""
    info = (_cpuinfo() or [{}])[0]
    keys = {
        "vendor": ("vendor_id", "CPU implementer"),
        "family": ("cpu family", "CPU architecture"),
        "model": ("model", "CPU part"),
        "stepping": ("stepping", "CPU revision"),
    }
    out: dict[str, str | None] = {
        k: next((info[n] for n in names if n in info), None) for k, names in keys.items()
    }
    out["processor"] = platform.processor() or None
    return out


def _numpy_cpu_features() -> dict[str, bool]:
    """numpy's run-time CPU feature detection (numpy 2: numpy._core; 1.x: numpy.core); {} if absent."""
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            module = __import__(name, fromlist=["__cpu_features__"])
            return dict(module.__cpu_features__)
        except (ImportError, AttributeError):
            continue
    return {}


def vector_extensions() -> dict:
    """The CPU's vector extensions: {"source", "extensions"}.

    From the flags of /proc/cpuinfo where there is one (Linux: sse4_2, avx2, avx512f, amx_tile,
    asimd, sve, ...), else from numpy's run-time CPU detection (macOS, Windows: 'AVX2',
    'AVX512F', 'ASIMD', ...), which holds on every platform numpy runs on.
    """
    info = (_cpuinfo() or [{}])[0]
    flags = (info.get("flags") or info.get("Features") or "").split()
    found = [f for f in flags if VECTOR_FLAG.match(f)]
    if found:
        return {"source": "/proc/cpuinfo", "extensions": found}
    features = _numpy_cpu_features()
    return {
        "source": "numpy",
        "extensions": [k for k, v in features.items() if v and NUMPY_VECTOR_FEATURE.match(k)],
    }


def widest_vector(extensions: list[str]) -> str:
    """A short name of the widest vector unit among the extensions: 'AVX-512', 'AVX2', 'SVE', ..."""
    lower = {e.lower() for e in extensions}
    for prefix, name in (("amx", "AMX + AVX-512"), ("avx512", "AVX-512"), ("sve", "SVE"), ("avx2", "AVX2")):
        if any(e.startswith(prefix) for e in lower):
            return name
    for prefix, name in (("avx", "AVX"), ("asimd", "NEON"), ("neon", "NEON"), ("sse", "SSE")):
        if any(e.startswith(prefix) for e in lower):
            return name
    return "none found"


def thread_pools() -> list[dict]:
    """Every thread pool threadpoolctl sees (numpy's BLAS, torch's OpenMP, ...), as now limited."""
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads")
    return [
        {k: d.get(k) for k in keys} | {"library": Path(d["filepath"]).name, "filepath": d["filepath"]}
        for d in threadpool_info()
    ]


def numpy_blas() -> dict:
    """numpy's BLAS: the name numpy was built against and the library loaded for it.

    {"build": numpy's build configuration's BLAS name ('scipy-openblas'), "pools": the BLAS
    thread pools of threadpoolctl that are numpy's (those inside numpy's installation, else
    every BLAS pool), each with internal_api ('openblas'), version, architecture (OpenBLAS's
    kernel: 'SkylakeX', 'Haswell', 'Zen', ...), threading_layer, num_threads, library,
    "kernel_forced_by": OPENBLAS_CORETYPE when set (the kernel is then not the one OpenBLAS
    would select on this CPU)}.
    """
    try:
        build = str(np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"])  # type: ignore[call-arg]
    except (TypeError, KeyError):
        build = "unknown"
    root = Path(np.__file__).resolve().parent
    inside = (root, root.with_name("numpy.libs"))
    pools = [p for p in thread_pools() if p["user_api"] == "blas"]
    own = [p for p in pools if any(Path(p["filepath"]).resolve().is_relative_to(d) for d in inside)]
    return {"build": build, "pools": own or pools, "kernel_forced_by": os.environ.get("OPENBLAS_CORETYPE")}


def torch_blas() -> dict:
    """torch's BLAS, from its build configuration (torch.__config__.show()) and torch.backends:
    blas_info ('mkl', 'open', ...), mkl_available, mkl_version (the MKL line of the build
    configuration, None without MKL), mkldnn_available, cpu_capability (the vector code torch's
    own kernels dispatch to: 'AVX512', 'AVX2', 'DEFAULT', ...)."""
    show = torch.__config__.show()
    blas_info = re.search(r"BLAS_INFO=([^,\s]+)", show)
    mkl = re.search(r"Math Kernel Library Version ([^\n]*?)(?: for [^\n]*)?$", show, re.MULTILINE)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {
        "blas_info": blas_info.group(1) if blas_info else None,
        "mkl_available": bool(torch.backends.mkl.is_available()),
        "mkl_version": mkl.group(1).strip() if mkl else None,
        "mkldnn_available": bool(torch.backends.mkldnn.is_available()),
        "cpu_capability": capability,
    }


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15 minute load averages, where the OS has them."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def environment() -> dict:
    """describe() plus: cpu_identity, vector_extensions, numpy_blas, torch_blas (see those
    functions), date, logical_cpus, torch (the version imported), torch_threads, torch_mkl,
    jax (the version imported, or None), threadpools, env (the BLAS and XLA variables),
    loadavg_start, command."""
    return {
        **describe(),
        "cpu_identity": cpu_identity(),
        "vector_extensions": vector_extensions(),
        "numpy_blas": numpy_blas(),
        "torch_blas": torch_blas(),
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
