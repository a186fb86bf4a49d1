"""JAX as a peer: jax.jit(jax.value_and_grad(loss)) over jax.lax.scan, for the Elman, GRU and LSTM cells.

XLA reads its CPU threading flags once, when jax first creates its CPU backend, and they cannot
be changed in that process afterwards. load(threads) therefore puts the flags in XLA_FLAGS before
jax is first imported, records the count in RNNBENCH_XLA_THREADS (configured_threads) and enables
float64 (jax_enable_x64). A run with another thread count needs another process (run.py starts
one per further --threads value, with child_environment()).

Each loss is written the way a performance-minded JAX user would write it: the input products
of every step as one product before the scan (x_t U^T + b, batch-first to time-major), the
recurrence in lax.scan, the output layer as one product over all states, log_softmax and the
summed cross-entropy. The gradients asked for are the ones manual_bptt.bptt returns: every
weight and bias, the initial state and, for dense inputs, the inputs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import ModuleType

import numpy as np

#: Set by load: the XLA thread count of this process's jax (how a later call knows it).
THREADS_VARIABLE = "RNNBENCH_XLA_THREADS"
_ONE_THREAD = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def xla_flags(threads: int) -> tuple[str, ...]:
    """XLA's CPU flags for `threads` threads.

    One thread: Eigen's multi-threading off and one intra-op thread. More: no flag, XLA's
    default, which uses every logical CPU; so a run with 1 < threads < os.cpu_count() has no
    JAX contender (see missing). Measured with jax 0.10.2 on a 2-CPU machine, a 2048 x 2048
    float64 product under the one-thread flags takes about numpy's one-thread time (0.96x and
    1.19x in two runs), and without flags 0.33x-0.65x of it; setting
    --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2 instead made it slower than
    one thread, not faster.
    """
    return _ONE_THREAD if threads == 1 else ()


def configured_threads() -> int | None:
    """The XLA thread count load() set up in this process, or None."""
    value = os.environ.get(THREADS_VARIABLE)
    return int(value) if value else None


def available() -> bool:
    """Whether jax can be imported here (without importing it)."""
    import importlib.util

    if sys.modules.get("jax") is not None:
        return True
    try:
        return importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):  # a parent package missing, or jax blocked in sys.modules
        return False


def missing(threads: int) -> str | None:
    """Why this process has no JAX contender at `threads` threads (None: it has)."""
    if not available():
        return "jax is not installed: no JAX contender (pip install -e '.[bench]' adds it)"
    if threads > 1 and threads != os.cpu_count():
        return f"JAX runs only at 1 thread or at every logical CPU ({os.cpu_count()}), not at {threads}"
    if sys.modules.get("jax") is not None and configured_threads() != threads:
        return f"jax was set up here for {configured_threads()} thread(s), not {threads}"
    return None


def current() -> ModuleType | None:
    """jax, when load() has set it up in this process; else None (the JAX contenders are left out)."""
    jax = sys.modules.get("jax")
    return jax if jax is not None and configured_threads() is not None else None


def load(threads: int) -> ModuleType | None:
    """jax, with XLA on `threads` threads and float64 enabled; None when missing(threads) says why not.

    XLA_FLAGS is set before jax is first imported; XLA reads it once per process.
    """
    if missing(threads) is not None:
        return None
    if sys.modules.get("jax") is None:
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] not in _FLAG_NAMES]
        os.environ["XLA_FLAGS"] = " ".join([*flags, *xla_flags(threads)])
        os.environ[THREADS_VARIABLE] = str(threads)
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


_FLAG_NAMES = {f.split("=")[0] for f in _ONE_THREAD}


def child_environment() -> dict[str, str]:
    """This process's environment without what load() added: for a run at another thread count."""
    env = {k: v for k, v in os.environ.items() if k != THREADS_VARIABLE}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if f.split("=")[0] not in _FLAG_NAMES]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    return env


def _cross_entropy(jnp, jax, S, V, c, ys_tm):
    """E = sum_t sum_b -log softmax(V s_t + c)[y_t]; S: (T, B, H), ys_tm: (T, B)."""
    logits = S @ V.T + c  # o_t, (T, B, K)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, ys_tm[..., None], axis=-1))


def elman_loss(U, W, b, V, c, s0, xs, ys, *, tokens: bool):
    """E of the Elman RNN (tanh). U (H, D), W (H, H), b (H,), V (K, H), c (K,), s0 (B, H);
    xs (B, T) token ids or (B, T, D) dense; ys (B, T)."""
    import jax
    import jax.numpy as jnp

    ux = U.T[xs] if tokens else xs @ U.T  # U x_t, (B, T, H)
    a_in = jnp.swapaxes(ux + b, 0, 1)  # (T, B, H)

    def step(s, a_x):
        s = jnp.tanh(a_x + s @ W.T)  # s_t = tanh(U x_t + b + W s_{t-1})
        return s, s

    _, S = jax.lax.scan(step, s0, a_in)  # (T, B, H)
    return _cross_entropy(jnp, jax, S, V, c, ys.T)


def gru_loss(U, W, b_ih, b_hh, V, c, h0, xs, ys):
    """E of nn.GRU's cell + a softmax output layer, torch's layout (blocks r, z, n).
    U (3H, D), W (3H, H), b_ih, b_hh (3H,), V (K, H), c (K,), h0 (B, H), xs (B, T, D), ys (B, T)."""
    import jax
    import jax.numpy as jnp

    H = W.shape[1]
    gi = jnp.swapaxes(xs @ U.T + b_ih, 0, 1)  # U x_t + b_ih, (T, B, 3H)

    def step(h, gi_t):
        gh = h @ W.T + b_hh  # W h_{t-1} + b_hh, (B, 3H)
        r = jax.nn.sigmoid(gi_t[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gi_t[:, H : 2 * H] + gh[:, H : 2 * H])
        n = jnp.tanh(gi_t[:, 2 * H :] + r * gh[:, 2 * H :])  # n = tanh(gi_n + r (W_n h + b_hn))
        h = (1 - z) * n + z * h
        return h, h

    _, S = jax.lax.scan(step, h0, gi)
    return _cross_entropy(jnp, jax, S, V, c, ys.T)


def lstm_loss(U, W, b_ih, b_hh, V, c, h0, c0, xs, ys):
    """E of nn.LSTM's cell + a softmax output layer, torch's layout (blocks i, f, g, o).
    U (4H, D), W (4H, H), b_ih, b_hh (4H,), V (K, H), c (K,) the output bias, h0 and c0 (B, H)
    (c0 the initial cell state), xs (B, T, D), ys (B, T)."""
    import jax
    import jax.numpy as jnp

    H = W.shape[1]
    gi = jnp.swapaxes(xs @ U.T + b_ih, 0, 1)  # (T, B, 4H)

    def step(carry, gi_t):
        h, cell = carry
        g_all = gi_t + h @ W.T + b_hh  # (B, 4H)
        i = jax.nn.sigmoid(g_all[:, :H])
        f = jax.nn.sigmoid(g_all[:, H : 2 * H])
        g = jnp.tanh(g_all[:, 2 * H : 3 * H])
        o = jax.nn.sigmoid(g_all[:, 3 * H :])
        cell = f * cell + i * g  # c_t = f c_{t-1} + i g
        h = o * jnp.tanh(cell)  # h_t = o tanh(c_t)
        return (h, cell), h

    _, S = jax.lax.scan(step, (h0, c0), gi)
    return _cross_entropy(jnp, jax, S, V, c, ys.T)


def compiled_value_and_grad(
    loss: Callable, args: tuple, argnums: tuple[int, ...], **static
) -> tuple[Callable[[], tuple], float]:
    """(call, compile seconds): call() runs jit(value_and_grad(loss)) on args, compiled ahead of
    time (jit(...).lower(*args).compile()), and waits for the result: (E, (dE/d args[i] for i in
    argnums))."""
    import functools

    import jax

    fn = functools.partial(loss, **static) if static else loss
    t0 = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(fn, argnums=argnums)).lower(*args).compile()
    compile_s = time.perf_counter() - t0

    def call() -> tuple:
        return jax.block_until_ready(compiled(*args))

    return call, compile_s


def device_args(*arrays: np.ndarray | None) -> tuple:
    """numpy arrays as jax arrays (made before timing, as the torch tensors are)."""
    import jax.numpy as jnp

    return tuple(jnp.asarray(a) for a in arrays)


def to_numpy(tree) -> tuple:
    """A tuple of jax arrays as numpy arrays."""
    return tuple(np.asarray(a) for a in tree)
