"""Matrix-product backends for the BLAS study (benchmarks/blas_study.py): numpy's BLAS and others.

Each backend is an `mm(a, b, out=None)` with numpy's matmul semantics for 2-D float32 / float64
operands (what rnnbench.floor.products_alone calls), plus a description of the library and the
kernel it selected on this CPU. Operands may be C-contiguous or transposed views (bptt's weight
gradients are `delta.T @ S`, torch's layout is `x @ W.T`): they are passed to the BLAS with a
transpose flag or strides, never copied (an operand with neither layout is copied, and counted).

    numpy         np.matmul: numpy's BLAS, as bptt calls it
    torch         torch.matmul on zero-copy tensors of the same memory: torch's BLAS (MKL in the
                  CPU wheel); a reference, never a dependency
    mkl           cblas_dgemm / cblas_sgemm of the `mkl` package's libmkl_rt, sequential (ctypes)
    openblas-new  the cblas of the `scipy-openblas64` package: a newer OpenBLAS than numpy's (ctypes)
    blis          bli_dgemm / bli_sgemm of the `blis` package (cython-blis), with general strides

The ctypes backends must be loaded before torch is imported (load_early): MKL and OpenBLAS then
bind their own symbols among themselves, whatever torch's static MKL exports later.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enums

Mm = Callable[..., np.ndarray]


@dataclass
class Backend:
    """A product backend: name, mm(a, b, out=None), and what it is (library, version, kernel)."""

    name: str
    mm: Mm
    info: dict = field(default_factory=dict)
    copies: list[int] = field(default_factory=lambda: [0])  # operands that had to be copied


def _site_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.joinpath(*parts)


def _layout(x: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of a 2-D operand, row-major; None: needs a copy."""
    it = x.itemsize
    rows, cols = x.shape
    s0, s1 = x.strides
    if (s1 == it or cols == 1) and s0 % it == 0 and s0 // it >= max(1, cols):
        return NO_TRANS, s0 // it
    if (s0 == it or rows == 1) and s1 % it == 0 and s1 // it >= max(1, rows):
        return TRANS, s1 // it
    return None


def _cblas_mm(gemm: dict, int_t, copies: list[int]) -> Mm:
    """mm over cblas_?gemm (gemm: {np.float64: dgemm, np.float32: sgemm}), int_t the BLAS integer."""
    ptr = ctypes.c_void_p
    for f, real in ((gemm[np.float64], ctypes.c_double), (gemm[np.float32], ctypes.c_float)):
        f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, real, ptr, int_t]
        f.argtypes += [ptr, int_t, real, ptr, int_t]
        f.restype = None

    def mm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        (m, k), n = a.shape, b.shape[1]
        if b.shape[0] != k or a.dtype != b.dtype:
            raise ValueError(f"mm: shapes {a.shape} {b.shape} or dtypes {a.dtype} {b.dtype}")
        la, lb = _layout(a), _layout(b)
        if la is None:
            a, la, copies[0] = np.ascontiguousarray(a), (NO_TRANS, max(1, k)), copies[0] + 1
        if lb is None:
            b, lb, copies[0] = np.ascontiguousarray(b), (NO_TRANS, max(1, n)), copies[0] + 1
        target = out if out is not None and out.flags.c_contiguous else np.empty((m, n), a.dtype)
        f = gemm[a.dtype.type]
        f(ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1], 0.0,
          target.ctypes.data, max(1, n))  # fmt: skip
        if out is not None and target is not out:
            out[...] = target
            return out
        return target

    return mm


def _loaded_libraries(pattern: str) -> list[str]:
    """Names of the shared libraries mapped in this process whose name contains pattern."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    return sorted({Path(line.split()[-1]).name for line in maps.splitlines() if pattern in line.split()[-1]})


def mkl() -> Backend | str:
    """MKL from the `mkl` package (libmkl_rt in this environment's lib/), sequential, LP64; or why not."""
    candidates = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so*"))
    if not candidates:
        return "the mkl package is not installed (no libmkl_rt in this environment's lib/)"
    rt = ctypes.CDLL(str(candidates[0]), mode=ctypes.RTLD_LOCAL)
    rt.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    rt.MKL_Set_Threading_Layer(1)  # MKL_THREADING_SEQUENTIAL: one thread, no OpenMP runtime
    rt.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    rt.MKL_Set_Interface_Layer(0)  # MKL_INTERFACE_LP64
    buf = ctypes.create_string_buffer(256)
    rt.MKL_Get_Version_String(buf, 256)
    copies = [0]
    mm = _cblas_mm({np.float64: rt.cblas_dgemm, np.float32: rt.cblas_sgemm}, ctypes.c_int, copies)
    for dt in (np.float64, np.float32):  # load the CPU-specific library now (see load_early)
        mm(np.ones((8, 8), dt), np.ones((8, 8), dt))
    rt.mkl_cbwr_get_auto_branch.restype = ctypes.c_int
    branch = rt.mkl_cbwr_get_auto_branch()
    info = {
        "library": candidates[0].name,
        "version": buf.value.decode(),
        "kernel_libraries": _loaded_libraries("libmkl_"),
        "cbwr_auto_branch": CBWR_BRANCHES.get(branch, f"branch {branch}"),
        "threading": "sequential",
    }
    return Backend("mkl", mm, info, copies)


#: MKL's conditional-numerical-reproducibility branches (mkl_cbwr.h): the code path MKL selects.
CBWR_BRANCHES = {
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}


def openblas_new() -> Backend | str:
    """The OpenBLAS of the `scipy-openblas64` package (ILP64, symbols scipy_*64_), one thread."""
    path = _site_file("scipy_openblas64", "lib", "libscipy_openblas64_.so")
    if path is None or not path.exists():
        return "the scipy-openblas64 package is not installed"
    lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
    lib.scipy_openblas_set_num_threads64_.argtypes = [ctypes.c_int]
    lib.scipy_openblas_set_num_threads64_(1)
    lib.scipy_openblas_get_corename64_.restype = ctypes.c_char_p
    lib.scipy_openblas_get_config64_.restype = ctypes.c_char_p
    copies = [0]
    gemm = {np.float64: lib.scipy_cblas_dgemm64_, np.float32: lib.scipy_cblas_sgemm64_}
    info = {
        "library": path.name,
        "config": lib.scipy_openblas_get_config64_().decode(),
        "kernel": lib.scipy_openblas_get_corename64_().decode(),
        "threads": 1,
    }
    return Backend("openblas-new", _cblas_mm(gemm, ctypes.c_int64, copies), info, copies)


def blis() -> Backend | str:
    """BLIS from the `blis` package (cython-blis): bli_dgemm / bli_sgemm with general strides."""
    root = _site_file("blis")
    path = sorted(root.glob("cy.*.so")) if root is not None else []
    lib = ctypes.CDLL(str(path[0]), mode=ctypes.RTLD_LOCAL)
    lib.bli_init()
    lib.bli_thread_set_num_threads.argtypes = [ctypes.c_int64]
    lib.bli_thread_set_num_threads(1)
    lib.bli_arch_query_id.restype = ctypes.c_int
    lib.bli_arch_string.restype = ctypes.c_char_p
    lib.bli_arch_string.argtypes = [ctypes.c_int]
    lib.bli_info_get_version_str.restype = ctypes.c_char_p
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    gemm = {np.float64: (lib.bli_dgemm, ctypes.c_double), np.float32: (lib.bli_sgemm, ctypes.c_float)}
    for f, _ in gemm.values():
        f.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, ptr, ptr, i64, i64, ptr, i64, i64]
        f.argtypes += [ptr, ptr, i64, i64]
        f.restype = None
    one = {dt: ctypes.byref(real(1.0)) for dt, (_, real) in gemm.items()}
    zero = {dt: ctypes.byref(real(0.0)) for dt, (_, real) in gemm.items()}

    def mm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        (m, k), n = a.shape, b.shape[1]
        if b.shape[0] != k or a.dtype != b.dtype:
            raise ValueError(f"mm: shapes {a.shape} {b.shape} or dtypes {a.dtype} {b.dtype}")
        out = np.empty((m, n), a.dtype) if out is None else out
        it, t = a.itemsize, a.dtype.type
        (ra, ca), (rb, cb), (rc, cc) = ((x.strides[0] // it, x.strides[1] // it) for x in (a, b, out))
        gemm[t][0](0, 0, m, n, k, one[t], a.ctypes.data, ra, ca, b.ctypes.data, rb, cb, zero[t],
                   out.ctypes.data, rc, cc)  # fmt: skip
        return out

    info = {
        "library": f"blis/{path[0].name}",
        "version": lib.bli_info_get_version_str().decode(),
        "kernel": lib.bli_arch_string(lib.bli_arch_query_id()).decode(),
        "threads": 1,
    }
    return Backend("blis", mm, info)


def numpy_backend() -> Backend:
    """np.matmul, numpy's BLAS (described by rnnbench.environment.numpy_blas)."""
    return Backend("numpy", np.matmul, {"library": "numpy's BLAS (see the environment)"})


def torch_backend() -> Backend:
    """torch.matmul on torch.from_numpy views of the same memory (no copy), out= when given."""
    import warnings

    import torch

    # bptt's parameters are read-only arrays; torch warns once that it could write through them
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)

    def mm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        torch.matmul(torch.from_numpy(a), torch.from_numpy(b), out=torch.from_numpy(out))
        return out

    return Backend("torch", mm, {"library": "torch's BLAS (see the environment)"})


def load_early() -> dict[str, Backend | str]:
    """The ctypes backends (mkl, openblas-new, blis), each a Backend or why it is missing; to be
    called before torch is imported."""
    found: dict[str, Backend | str] = {}
    for name, make in (("mkl", mkl), ("openblas-new", openblas_new), ("blis", blis)):
        try:
            found[name] = make()
        except (OSError, AttributeError) as e:
            found[name] = f"{name} could not be loaded: {type(e).__name__}: {e}"
    return found
