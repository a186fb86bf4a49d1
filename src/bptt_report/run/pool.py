"""The worker processes that run the target: fresh interpreters (``python -c``, in a session of
their own, so a Ctrl-C in the terminal reaches only the checker), restarted when the target
ends or hangs one, stopped on interrupt. The checker's side; numpy only.

The worker gets this process's sys.path, so it imports the same packages (and never runs
the calling script again, as multiprocessing's spawn would), and the environment of
bptt_report.run.threads.environment (its BLAS and OpenMP pools on one thread, wherever the sweep
runs). Requests travel on its stdin (length-prefixed pickles, from the checker: trusted);
replies on a copy of its stdout (length-prefixed bptt_report.run.wire messages); the target's own
prints go to stderr.

Requests go out in batches (several per message, up to two batches in flight per worker);
replies come back one per request, in order, as bptt_report.run.wire messages. A worker whose
process ends, whose reply cannot be read, or that runs past the per-configuration timeout
is killed; the request it was on gets a reply saying what happened ("died", "garbled",
"timeout"), the requests queued behind it go to a fresh worker. After ``max_losses`` lost
workers the remaining requests are answered "not_run".
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from manual_bptt.problems import RNNConfig

from ..errors import TargetError, WireError, WorkerLost
from . import threads, wire

#: Requests per message.
BATCH = 8
#: Extra seconds a fresh worker gets to start (spawn, imports) on top of the timeout.
STARTUP_ALLOWANCE = 30.0
#: Default per-configuration timeout, seconds.
DEFAULT_TIMEOUT = 60.0
#: Lost workers (ended, crashed, hung) after which the rest is not run.
MAX_LOSSES = 3

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held back meanwhile (acted on after): a process started here
    inherits the block, so Ctrl-C during its start-up prints no traceback in it, and an
    interrupt never lands half-way through starting it. (In the main thread the Python
    handlers are deferred too: a signal taken by another thread, e.g. one of torch's,
    would otherwise still raise KeyboardInterrupt here.)"""
    caught: list[tuple[int, Any]] = []
    saved: dict[int, Any] = {}
    old_mask = None
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    saved[sig] = handler
                    signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
        if hasattr(signal, "pthread_sigmask"):
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        yield
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a pending signal reaches the recorder
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for signum, frame in caught[:1]:
            saved[signum](signum, frame)


_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from bptt_report.targets.worker import main; main(sys.argv[2])"
)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ready: bool = False
    since: float = 0.0
    outstanding: deque[int] = field(default_factory=deque)

    def fileno(self) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        assert self.process.stdin is not None
        self.process.stdin.write(struct.pack(">I", len(data)) + data)
        self.process.stdin.flush()

    def _read(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(self.fileno(), min(n - got, 1 << 20))
            if not chunk:
                raise WorkerLost("end of the pipe")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def recv(self) -> Any:
        (n,) = struct.unpack(">I", self._read(4))
        if n > wire.MAX_MESSAGE:
            raise WireError(f"a message of {n} bytes")
        return wire.decode(self._read(n))


class TargetPool:
    """Worker processes running the target ``spec`` ("module:function").

    Args:
        spec: the target's importable name.
        workers: how many processes at most.
        timeout: seconds one request may take.
        max_losses: lost workers after which the remaining requests are not run.
        path: the workers' sys.path (default: this process's).
    """

    def __init__(
        self,
        spec: str,
        workers: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        max_losses: int = MAX_LOSSES,
        path: list[str] | None = None,
    ) -> None:
        self.spec = spec
        self.path = None if path is None else list(path)
        self.n = max(1, workers)
        self.timeout = float(timeout)
        self.max_losses = max_losses
        self.losses = 0
        self.notes: list[str] = []
        self.stop = threading.Event()
        self._workers: list[_Worker] = []
        self._seq = 0
        self.info: dict[str, Any] = {}

    @property
    def aborted(self) -> bool:
        return self.losses >= self.max_losses

    def _command(self) -> list[str]:
        """The command line of a worker process."""
        path = sys.path if self.path is None else self.path
        return [sys.executable, "-c", _BOOT, json.dumps(path), self.spec]

    def _start(self) -> _Worker:
        with signals_blocked():
            p = subprocess.Popen(
                self._command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
                env=threads.environment(),
            )
        return _Worker(process=p, since=time.monotonic())

    @staticmethod
    def _kill(w: _Worker) -> None:
        for f in (w.process.stdin, w.process.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        if w.process.poll() is None:
            w.process.kill()
        try:
            w.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def start(self) -> dict[str, Any]:
        """Start the first worker and return its hello: what the target is and declares.

        Raises:
            TargetError when the target cannot be loaded (or its process ends while loading).
        """
        w = self._start()
        limit = self.timeout + STARTUP_ALLOWANCE
        deadline = time.monotonic() + limit
        while not wait([w], timeout=0.1):
            if self.stop.is_set():
                self._kill(w)
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                self._kill(w)
                raise TargetError(f"--target {self.spec}: loading it took longer than {limit:.0f} s")
        try:
            info = w.recv()
        except (WorkerLost, OSError, WireError) as exc:
            self._kill(w)
            if w.process.returncode is not None:
                raise TargetError(
                    f"--target {self.spec}: the process loading it ended with status {w.process.returncode}"
                ) from exc
            self._kill(w)
            raise TargetError(f"--target {self.spec}: the process loading it failed ({exc})") from exc
        if not isinstance(info, dict) or info.get("status") != "ready":
            self._kill(w)
            msg = info.get("message") if isinstance(info, dict) else None
            raise TargetError(str(msg or f"--target {self.spec}: cannot be loaded"))
        w.ready, w.since = True, time.monotonic()
        self._workers.append(w)
        self.info = info
        return info

    def run(
        self,
        requests: list[tuple[str, RNNConfig, int | None]],
        on_reply: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The replies to ``requests`` ((kind, cfg, prefix) each), in order.

        Raises:
            KeyboardInterrupt when ``stop`` is set meanwhile.
        """
        n = len(requests)
        replies: list[dict[str, Any] | None] = [None] * n
        seqs: list[int] = []
        for _ in range(n):
            self._seq += 1
            seqs.append(self._seq)
        queue: deque[int] = deque(range(n))
        pending = n

        def finish(i: int, reply: dict[str, Any]) -> None:
            nonlocal pending
            if replies[i] is None:
                replies[i] = reply
                pending -= 1
                if on_reply is not None:
                    on_reply(1)

        def lose(w: _Worker, status: str, detail: str = "") -> None:
            self._workers.remove(w)
            self._kill(w)
            code = w.process.returncode
            if w.outstanding:
                i = w.outstanding.popleft()
                finish(i, {"status": status, "exitcode": code, "detail": detail,
                           "seconds": time.monotonic() - w.since})  # fmt: skip
                queue.extendleft(reversed(w.outstanding))
            elif not w.ready:
                self.notes.append(f"a worker process ended while loading the target (status {code})")
            self.losses += 1
            if self.aborted:
                self.notes.append(
                    f"the target ended or hung {self.losses} worker processes; the rest was not run"
                )

        while pending:
            if self.stop.is_set():
                raise KeyboardInterrupt
            if self.aborted and queue:
                for i in list(queue):
                    finish(i, {"status": "not_run"})
                queue.clear()
                if not pending:
                    break
            while queue and len(self._workers) < self.n:
                self._workers.append(self._start())
            now = time.monotonic()
            for w in list(self._workers):
                if queue and len(w.outstanding) <= BATCH:
                    take = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
                    if not w.outstanding and w.ready:
                        w.since = now
                    try:
                        w.send([(requests[i][0], seqs[i], requests[i][1], requests[i][2]) for i in take])
                    except (OSError, ValueError):
                        queue.extendleft(reversed(take))
                        lose(w, "died")
                        continue
                    w.outstanding.extend(take)
            busy = [w for w in self._workers if w.outstanding or not w.ready]
            if not busy:
                continue

            def limit(w: _Worker) -> float:
                return w.since + self.timeout + (0.0 if w.ready else STARTUP_ALLOWANCE)

            wait_for = min(min(limit(w) for w in busy) - time.monotonic(), 0.2)
            ready = wait(busy, timeout=max(0.0, wait_for))
            for w in [w for w in busy if w in ready]:
                try:
                    msg = w.recv()
                except (WorkerLost, OSError):
                    lose(w, "died")
                    continue
                except WireError as exc:
                    lose(w, "garbled", str(exc))
                    continue
                if not isinstance(msg, dict):
                    lose(w, "garbled", "not a dict")
                    continue
                if not w.ready:
                    if msg.get("status") != "ready":
                        lose(w, "died", str(msg.get("message", "")))
                        continue
                    w.ready, w.since = True, time.monotonic()
                    continue
                if not w.outstanding or msg.get("id") != seqs[w.outstanding[0]]:
                    lose(w, "garbled", "a reply to a request that was not asked")
                    continue
                finish(w.outstanding.popleft(), msg)
                w.since = time.monotonic()
            now = time.monotonic()
            for w in [w for w in busy if w in self._workers and now > limit(w)]:
                lose(w, "timeout")
        return [r if r is not None else {"status": "not_run"} for r in replies]

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        workers, self._workers = self._workers, []
        for w in workers:
            try:
                w.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for w in workers:
            try:
                w.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._kill(w)
