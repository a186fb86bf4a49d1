"""Targets at the edges of the checker's verdict, for the report's tests (tests/checker/test_edges.py).

Every function here has manual_bptt.bptt's signature (so the report loads it by name,
``edge_targets:narrow_elman``, also in worker processes). Each is either correct and narrow (it
must be checked on what it supports, and PASS), wrong only where a small sweep does not look
(it must not PASS), or an attack on the checker's own process and protocol (the checker must
survive it, say so, and leave no process behind).

Correct, but narrow or slow:

    narrow_elman             the BPTT people write first, in plain numpy: unbatched token ids
                             (T,), no biases, tanh, full BPTT, summed loss, s0 optional;
                             NotImplementedError for anything else (biases included), ValueError
                             for malformed labels; reads p.b first, so a GRUParams or LSTMParams
                             raises AttributeError
    slow_correct             manual_bptt.bptt, after sleeping SLOW_SECONDS on each of the first
                             SLOW_CALLS calls of its process (a long, idle run; the many calls of
                             the finite differences are not slowed)
    within_absolute_tolerance  manual_bptt.bptt with 5e-13 added to every entry of dW: within the
                             absolute tolerance (1e-12) everywhere, also where the reference dW
                             is exactly 0 (T = 1, s0 = None)

Wrong where the default sweep does not look (manual_bptt.bptt otherwise, every cell):

    wrong_from_T40           dW 1.5 times the truth when T >= 40
    wrong_from_B6            dW 1.5 times the truth when the batch has B >= 6 rows
    wrong_above_H10          dW 1.5 times the truth when H > 10

Wrong, and hard to see:

    dw_from_s_t              narrow_elman's backward with dW = sum_t delta_t s_t^T (s_t used
                             where s_{t-1} belongs), biases supported, declared tokens (T,),
                             tanh, s0, the Elman cell: at T = 1 with s0 = None the true dW is
                             exactly 0 and this one is not
    batch_mean               manual_bptt.bptt with the loss and every gradient divided by the
                             batch size B (a batch-mean convention): exactly 1/B of the truth
    lazy_first_read_only     manual_bptt.bptt whose gradients are objects with __array__: the
                             right values on the first read, other values on every read after it

Attacks on the checker's process and protocol (manual_bptt.bptt's correct result otherwise):

    patches_mutation_check_mutates_ys  replaces the worker's bitwise input comparison
                             (bptt_report.worker._same today; by name, skipped when the name is
                             gone) by one that always says "unchanged", computes on a copy of ys,
                             then sets the caller's ys to 0
    forks_both_reply         forks; parent and child both return (so both reply); the child ends
                             by SIGALRM within 30 s if nothing ends it before
    huge_gradient            returns a dW of 6000 x 6000 float64 (288 MB): on every call, or on
                             the first call of a run only when the records below are kept
    writes_into_protocol_pipe  writes bytes into the worker's protocol pipe (the private copy
                             of stdout that bptt_report.wire.private_stdio makes), then returns
    writes_a_wrong_reply     writes a well-framed reply whose fields have the wrong types (dW a
                             string, the status a number) into the protocol pipe, then returns
    replies_to_another_request  writes a well-framed, well-typed reply to a request that was
                             never sent into the protocol pipe, then returns
    leaves_setsid_child      starts ``sleep 60`` in a session of its own (start_new_session),
                             once per worker process, and leaves it running
    leaves_a_daemon          starts, once per worker process, a daemon the classic way: a child
                             that starts ``sleep 60`` in a session of its own and exits at once,
                             so that the sleep is an orphan, no descendant of the worker any more
    prints_128_mib           prints 128 MiB to stdout on every call
    prints_then_raises       prints 100 KiB and a line naming the shape of ys, then raises

When the environment variable RECORD_VARIABLE names a directory, the attacks leave a record
there, so that a test can see that the attack happened and that no process is left: "pids" (one
line per process forked or started), "protocol_fd" (the descriptor written into), "huge" (the
288 MB reply was sent: then only the first call of the run sends it).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

import manual_bptt as mb

#: The environment variable naming the directory in which the attacks leave their records.
RECORD_VARIABLE = "EDGE_TARGETS_RECORD"
#: How long slow_correct sleeps per call, seconds, on how many calls of a process.
SLOW_SECONDS, SLOW_CALLS = 0.4, 25
#: The factor by which the size-dependent targets get dW wrong.
WRONG_FACTOR = 1.5


def _record(name: str, line: object) -> None:
    """Append ``line`` to the record ``name`` (when RECORD_VARIABLE is set)."""
    where = os.environ.get(RECORD_VARIABLE)
    if where:
        with open(os.path.join(where, name), "a") as f:
            f.write(f"{line}\n")


def _recorded(name: str) -> bool:
    where = os.environ.get(RECORD_VARIABLE)
    return bool(where) and os.path.exists(os.path.join(where, name))


def _scaled(r, factor: float, names: tuple[str, ...] | None = None):
    """A manual_bptt result with the loss (when ``names`` is None) and the gradients ``names``
    (None: every gradient, ds0 and dxs too) multiplied by ``factor``."""

    def mul(a):
        return None if a is None else np.asarray(a) * factor

    every = names is None
    grads = r.grads.replace(**{n: mul(a) for n, a in r.grads.items() if every or n in names})
    if not every:
        return dataclasses.replace(r, grads=grads)
    ds0 = r.ds0
    if isinstance(ds0, mb.LSTMState):
        ds0 = mb.LSTMState(mul(ds0.h), mul(ds0.c))
    else:
        ds0 = mul(ds0)
    return dataclasses.replace(r, loss=r.loss * factor, grads=grads, ds0=ds0, dxs=mul(r.dxs))


def _bptt(p, xs, ys, kw):
    """manual_bptt.bptt with the keywords the checker passed (activation only for the Elman cell)."""
    return mb.bptt(p, xs, ys, **kw)


# ---------------------------------------------------------------------------------------------
# Correct, but narrow or slow
# ---------------------------------------------------------------------------------------------
def _elman_tokens(p, xs, ys, s0, *, bug: str | None = None):
    """Loss and gradients of the Elman cell (tanh) on token ids (T,), in plain numpy.

    Shapes: p.U (H, D), p.W (H, H), p.V (K, H), p.b (H,) or None, p.c (K,) or None; xs, ys (T,)
    integer ids; s0 (H,) or None (zeros). bug "s_t": dW from s_t instead of s_{t-1}.
    """
    U, W, V = (np.asarray(a, dtype=np.float64) for a in (p.U, p.W, p.V))
    b = None if p.b is None else np.asarray(p.b, dtype=np.float64)
    c = None if p.c is None else np.asarray(p.c, dtype=np.float64)
    H, K, T = W.shape[0], V.shape[0], len(xs)
    s = np.zeros((T + 1, H))  # s[t + 1] = s_t, s[0] = s_{-1} = s0
    if s0 is not None:
        s[0] = np.asarray(s0, dtype=np.float64)
    dO = np.zeros((T, K))  # dE_t/do_t
    loss = 0.0
    for t in range(T):
        a = U[:, xs[t]] + W @ s[t] + (0.0 if b is None else b)  # a_t = U x_t + W s_{t-1} + b
        s[t + 1] = np.tanh(a)  # s_t = tanh(a_t)
        o = V @ s[t + 1] + (0.0 if c is None else c)  # o_t = V s_t + c
        o = o - o.max()
        logp = o - np.log(np.exp(o).sum())  # log softmax(o_t)
        loss -= float(logp[ys[t]])  # E_t = -log y_hat_t[y_t]
        dO[t] = np.exp(logp)
        dO[t, ys[t]] -= 1.0  # dE_t/do_t = y_hat_t - onehot(y_t)
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = np.zeros(H)
    carried = np.zeros(H)  # W^T delta_{t+1}
    for t in reversed(range(T)):
        dV += np.outer(dO[t], s[t + 1])  # dV = sum_t dE/do_t s_t^T
        delta = (V.T @ dO[t] + carried) * (1.0 - s[t + 1] ** 2)  # delta_t = (e_t + W^T delta_{t+1}) f'(a_t)
        dW += np.outer(delta, s[t + 1] if bug == "s_t" else s[t])  # dW = sum_t delta_t s_{t-1}^T
        dU[:, xs[t]] += delta  # dU = sum_t delta_t x_t^T
        db += delta
        carried = W.T @ delta
    grads = SimpleNamespace(U=dU, W=dW, V=dV, b=None if b is None else db,
                            c=None if c is None else dO.sum(axis=0))  # fmt: skip
    return SimpleNamespace(loss=loss, grads=grads, ds0=carried, dxs=None)


def narrow_elman(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
    """The Elman cell's BPTT on token ids (T,), without biases (correct). NotImplementedError for
    biases, other input forms, activations and options; AttributeError for gated parameters
    (they have no .b)."""
    if p.b is not None or p.c is not None:
        raise NotImplementedError("biases are not implemented: b and c must be None")
    if activation != "tanh":
        raise NotImplementedError(f"activation {activation!r}: only tanh is implemented")
    if truncate is not None or reduction != "sum" or mask is not None:
        raise NotImplementedError("only full BPTT of the summed loss, without a mask, is implemented")
    xs, ys = np.asarray(xs), np.asarray(ys)
    if xs.ndim != 1 or not np.issubdtype(xs.dtype, np.integer):
        raise NotImplementedError(f"token ids of shape (T,) only, got {xs.dtype} of shape {xs.shape}")
    if ys.shape != xs.shape:
        raise ValueError(f"ys: expected the shape of xs, {xs.shape}, got {ys.shape}")
    if s0 is not None and np.shape(s0) != (p.W.shape[0],):
        raise NotImplementedError("s0: one state (H,) only")
    return _elman_tokens(p, xs, ys, s0)


_CALLS: list[int] = [0]


def slow_correct(p, xs, ys, **kw):
    """manual_bptt.bptt, SLOW_SECONDS late on the first SLOW_CALLS calls of the process."""
    _CALLS[0] += 1
    if _CALLS[0] <= SLOW_CALLS:
        time.sleep(SLOW_SECONDS)
    return _bptt(p, xs, ys, kw)


def within_absolute_tolerance(p, xs, ys, **kw):
    """manual_bptt.bptt with 5e-13 added to every entry of dW (within the absolute tolerance)."""
    r = _bptt(p, xs, ys, kw)
    return dataclasses.replace(r, grads=r.grads.replace(W=r.grads.W + 5e-13))


# ---------------------------------------------------------------------------------------------
# Wrong where the default sweep does not look
# ---------------------------------------------------------------------------------------------
def _sizes(p, ys) -> tuple[int, int, int]:
    """(T, B, H) of a call: B is 1 for unbatched labels (T,)."""
    ys = np.asarray(ys)
    T = ys.shape[-1]
    B = ys.shape[0] if ys.ndim == 2 else 1
    return T, B, int(np.asarray(p.W).shape[1])


def _wrong_when(condition):
    def target(p, xs, ys, *, activation="tanh", s0=None, truncate=None, reduction="sum", mask=None):
        kw = {"s0": s0, "truncate": truncate, "reduction": reduction, "mask": mask}
        if isinstance(p, mb.RNNParams):
            kw["activation"] = activation
        r = mb.bptt(p, xs, ys, **kw)
        return _scaled(r, WRONG_FACTOR, ("W",)) if condition(*_sizes(p, ys)) else r

    return target


wrong_from_T40 = _wrong_when(lambda T, B, H: T >= 40)
wrong_from_B6 = _wrong_when(lambda T, B, H: B >= 6)
wrong_above_H10 = _wrong_when(lambda T, B, H: H > 10)
for _name in ("wrong_from_T40", "wrong_from_B6", "wrong_above_H10"):
    globals()[_name].__name__ = globals()[_name].__qualname__ = _name


# ---------------------------------------------------------------------------------------------
# Wrong, and hard to see
# ---------------------------------------------------------------------------------------------
def dw_from_s_t(p, xs, ys, *, activation="tanh", s0=None):
    """The Elman cell's BPTT on token ids (T,) with dW = sum_t delta_t s_t^T (s_t used where
    s_{t-1} belongs); every other gradient right. NotImplementedError for what it does not declare."""
    if activation != "tanh":
        raise NotImplementedError(f"activation {activation!r}: only tanh is implemented")
    return _elman_tokens(p, np.asarray(xs), np.asarray(ys), s0, bug="s_t")


dw_from_s_t.bptt_supports = {
    "cells": ["rnn"],
    "inputs": ["tokens (T,)"],
    "options": ["s0"],
    "activations": ["tanh"],
}


def batch_mean(p, xs, ys, **kw):
    """manual_bptt.bptt with the loss and every gradient divided by B (1 for unbatched input)."""
    r = _bptt(p, xs, ys, kw)
    _, B, _ = _sizes(p, ys)
    return r if B == 1 else _scaled(r, 1.0 / B)


class _ReadOnce:
    """An array-like whose first read gives ``value`` and every later read ``2 * value + 1``."""

    def __init__(self, value) -> None:
        self._value = np.asarray(value)
        self.reads = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    def __array__(self, dtype=None, copy=None):
        self.reads += 1
        a = self._value if self.reads == 1 else 2.0 * self._value + 1.0
        return np.array(a, dtype=dtype, copy=True)


def lazy_first_read_only(p, xs, ys, **kw):
    """manual_bptt.bptt with every gradient an object that is right on its first read only."""
    r = _bptt(p, xs, ys, kw)
    grads = {n: None if a is None else _ReadOnce(a) for n, a in vars(r.grads).items()}
    return SimpleNamespace(loss=r.loss, grads=SimpleNamespace(**grads), ds0=r.ds0, dxs=r.dxs)


# ---------------------------------------------------------------------------------------------
# Attacks on the checker's process and protocol
# ---------------------------------------------------------------------------------------------
#: The names under which the worker compares the inputs before and after a call (today: _same).
_INPUT_CHECKS = ("_same",)


def _always_unchanged(a, b) -> bool:
    return True


def patches_mutation_check_mutates_ys(p, xs, ys, **kw):
    """Disables the worker's input comparison in its own process, then changes the caller's ys
    after computing the right result on a copy of them."""
    for name, module in list(sys.modules.items()):
        if name == "bptt_report" or name.startswith("bptt_report."):
            for check in _INPUT_CHECKS:
                if callable(getattr(module, check, None)):
                    setattr(module, check, _always_unchanged)
    r = _bptt(p, xs, np.array(ys, copy=True), kw)
    ys[...] = 0
    return r


def forks_both_reply(p, xs, ys, **kw):
    """manual_bptt.bptt, returned by two processes: the worker and a fork of it (which ends by
    SIGALRM after 30 s at the latest)."""
    r = _bptt(p, xs, ys, kw)
    pid = os.fork()
    if pid == 0:
        import signal

        signal.alarm(30)
    else:
        _record("pids", pid)
    return r


def huge_gradient(p, xs, ys, **kw):
    """manual_bptt.bptt with dW replaced by a 6000 x 6000 float64 array (288,000,000 bytes): on
    every call, or only on the first one of a run when RECORD_VARIABLE is set."""
    r = _bptt(p, xs, ys, kw)
    if _recorded("huge"):
        return r
    _record("huge", os.getpid())
    grads = SimpleNamespace(**{**vars(r.grads), "W": np.zeros((6000, 6000))})
    return SimpleNamespace(loss=r.loss, grads=grads, ds0=r.ds0, dxs=r.dxs)


def _protocol_fd() -> int | None:
    """The worker's protocol descriptor: the ``fd_out`` of the frames that serve the requests
    (bptt_report.worker), else the one write-only pipe other than stdout and stderr."""
    frame = sys._getframe()
    while frame is not None:
        fd = frame.f_locals.get("fd_out")
        if isinstance(fd, int):
            return fd
        frame = frame.f_back
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in (0, 1, 2):
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as f:
                flags = int(re.search(r"flags:\s*(\d+)", f.read()).group(1), 8)
        except (OSError, AttributeError):
            continue
        if target.startswith("pipe:") and flags & os.O_ACCMODE == os.O_WRONLY:
            return fd
    return None


def writes_into_protocol_pipe(p, xs, ys, **kw):
    """Writes 16 bytes of garbage into the worker's protocol pipe, then returns manual_bptt.bptt."""
    fd = _protocol_fd()
    if fd is not None:
        _record("protocol_fd", fd)  # first: the checker may end this process as soon as it reads the bytes
        os.write(fd, b"\xff\xff\xff\xf0not a reply!")
    return _bptt(p, xs, ys, kw)


def _write_frame(value: dict) -> None:
    """A well-framed message (bptt_report's wire format) into the protocol pipe."""
    from bptt_report.run import wire

    fd = _protocol_fd()
    if fd is not None:
        _record("protocol_fd", fd)  # first: the checker may end this process as soon as it reads the frame
        wire.write_frame(fd, wire.encode(value))


def writes_a_wrong_reply(p, xs, ys, **kw):
    """A reply of the wrong types (status 200, dW a string) ahead of the real one."""
    _write_frame({"id": 1, "status": 200, "fields": {"W": "the right answer"}})
    return _bptt(p, xs, ys, kw)


def replies_to_another_request(p, xs, ys, **kw):
    """A reply to a request that was never sent (id 10**9) ahead of the real one."""
    _write_frame({"id": 10**9, "status": "ok", "fields": {}})
    return _bptt(p, xs, ys, kw)


_SPAWNED: list[int] = []


def leaves_setsid_child(p, xs, ys, **kw):
    """manual_bptt.bptt; the first call of each worker process starts ``sleep 60`` in a session
    of its own, and leaves it running."""
    if not _SPAWNED:
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        _SPAWNED.append(child.pid)
        _record("pids", child.pid)
    return _bptt(p, xs, ys, kw)


_DAEMONS: list[int] = []


def leaves_a_daemon(p, xs, ys, **kw):
    """manual_bptt.bptt; the first call of each worker process leaves an orphaned ``sleep 60``
    (started by a child that exits at once) running."""
    if not _DAEMONS:
        code = (
            "import subprocess as s; print(s.Popen(['sleep', '60'], start_new_session=True, "
            "stdin=s.DEVNULL, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
        )
        pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        _DAEMONS.append(pid)
        _record("pids", pid)
    return _bptt(p, xs, ys, kw)


_MIB_OF_LINES = ("x" * 1023 + "\n") * 1024


def prints_128_mib(p, xs, ys, **kw):
    """manual_bptt.bptt, after printing 128 MiB of lines to stdout."""
    for _ in range(128):
        sys.stdout.write(_MIB_OF_LINES)
    sys.stdout.flush()
    return _bptt(p, xs, ys, kw)


def prints_then_raises(p, xs, ys, **kw):
    """Prints a line (and 100 KiB of filler before it), then raises: the report keeps the tail."""
    sys.stdout.write("x" * (100 << 10) + "\n")
    print(f"about to fail on a problem of {np.shape(ys)}")
    raise RuntimeError("this target always fails")
