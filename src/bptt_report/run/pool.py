"""The local worker processes of both products: fresh interpreters (``python -c BOOT``, in a session
of their own, so a Ctrl-C in the terminal reaches only the checker), each running a Program (the
target's side, bptt_report.targets.worker; check-module's, bptt_report.module.worker) in the one
loop of bptt_report.run.worker; restarted when the code under test ends or hangs one, stopped
on interrupt. The checker's side; numpy only.

    with WorkerPool(targets.worker.program(spec), workers=2) as pool:   # started: pool.hello
        replies = pool.run([Request("call", cfg), ...])                  # stopped on leaving

The worker gets this process's sys.path, so it imports the same packages (and never runs
the calling script again, as multiprocessing's spawn would), and the environment of
bptt_report.run.threads.environment (its BLAS and OpenMP pools on one thread, wherever the sweep
runs). Requests travel on its stdin (framed pickles, from the checker: trusted); replies on a
copy of its stdout (framed bptt_report.run.wire messages, rebuilt as bptt_report.run.protocol
replies); the code under test's own prints go to stderr.

Requests go out in batches (several per message, up to two batches in flight per worker);
replies come back one per request, in order. A worker whose process ends, whose reply cannot be
read, or that runs past the per-request timeout is killed; the request it was on gets a reply
saying what happened ("died", "garbled", "timeout"), the requests queued behind it go to a fresh
worker. After ``max_losses`` lost workers the remaining requests are answered "not_run".
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from manual_bptt.environment import usable_cpus

from ..errors import TargetError, WireError, WorkerLost
from . import threads, wire
from .protocol import Hello, Program, Reply, Request, from_wire
from .signals import signals_blocked

#: Requests per message.
BATCH = 8
#: Extra seconds a fresh worker gets to start (spawn, imports) on top of the timeout.
STARTUP_ALLOWANCE = 30.0
#: Default per-configuration timeout, seconds.
DEFAULT_TIMEOUT = 60.0
#: Lost workers (ended, crashed, hung) after which the rest is not run.
MAX_LOSSES = 3
#: A sweep's worker processes (``jobs``) may be at most this many times the usable CPUs.
JOBS_PER_CPU = 4

#: A worker process's command line: ``python -c BOOT PATH ARGUMENT`` takes the checker's sys.path
#: (JSON) and calls the Program's ``main(ARGUMENT)``.
BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from {module} import {name}; {name}(sys.argv[2])"
)


def unasked(got: int, expected: int | None, issued: int) -> str:
    """What a reply with the id ``got`` is, when the reply to ``expected`` was due (None: none
    was) and the ids 1..``issued`` have been sent."""
    if expected is not None and 1 <= got < expected:
        what = f"a second reply to an earlier request (id {got}: a process of the target that forked?)"
    elif 1 <= got <= issued:
        what = f"a reply to request {got} out of its turn"
    else:
        what = f"a reply to a request that was never sent (id {got})"
    return what + (f", where the reply to request {expected} was due" if expected is not None else "")


def max_jobs() -> int:
    """The largest ``jobs`` accepted: JOBS_PER_CPU x the usable CPUs."""
    return JOBS_PER_CPU * usable_cpus()


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
        """A batch of requests (or None: stop) to the worker."""
        assert self.process.stdin is not None
        wire.write_frame(self.process.stdin.fileno(), pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def recv(self) -> Any:
        """The worker's next message, decoded (WorkerLost at the end of the pipe)."""
        frame = wire.read_frame(self.fileno(), wire.MAX_MESSAGE)
        if frame is None:
            raise WorkerLost("end of the pipe")
        return wire.decode(frame)


class WorkerPool:
    """Worker processes running ``program``; a context manager: started on entering (the hello
    in ``.hello``), stopped on leaving.

    Args:
        program: what each worker runs.
        workers: how many processes at most.
        timeout: seconds one request may take.
        max_losses: lost workers after which the remaining requests are not run.
        path: the workers' sys.path (default: this process's).
    """

    def __init__(
        self,
        program: Program,
        workers: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        max_losses: int = MAX_LOSSES,
        path: list[str] | None = None,
    ) -> None:
        self.program = program
        self.path = None if path is None else list(path)
        self.workers = max(1, workers)
        self.timeout = float(timeout)
        self.max_losses = max_losses
        self.losses = 0
        self.notes: list[str] = []
        self.stop = threading.Event()
        self._workers: list[_Worker] = []
        self._seq = 0
        self.hello = Hello(status="")

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.close()

    @property
    def aborted(self) -> bool:
        return self.losses >= self.max_losses

    def _command(self) -> list[str]:
        """The command line of a worker process."""
        path = sys.path if self.path is None else self.path
        main = self.program.main
        boot = BOOT.format(module=main.__module__, name=main.__name__)
        return [sys.executable, "-c", boot, json.dumps(path), self.program.argument]

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

    def start(self) -> Hello:
        """Start the first worker and return its hello: what the code under test is and declares.

        Raises:
            TargetError when the code under test cannot be loaded (or its process ends while loading).
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
                raise TargetError(f"{self.program.label}: loading it took longer than {limit:.0f} s")
        try:
            info = w.recv()
        except (WorkerLost, OSError, WireError) as exc:
            self._kill(w)
            if w.process.returncode is not None:
                raise TargetError(
                    f"{self.program.label}: the process loading it ended with status {w.process.returncode}"
                ) from exc
            self._kill(w)
            raise TargetError(f"{self.program.label}: the process loading it failed ({exc})") from exc
        try:
            hello = from_wire(Hello, info)
        except WireError as exc:
            self._kill(w)
            why = f"the process loading it sent a hello that cannot be read ({exc})"
            raise TargetError(f"{self.program.label}: {why}") from exc
        if hello.status != "ready":
            self._kill(w)
            raise TargetError(str(hello.message or f"{self.program.label}: cannot be loaded"))
        w.ready, w.since = True, time.monotonic()
        self._workers.append(w)
        self.hello = hello
        return hello

    def run(self, requests: list[Request], on_reply: Callable[[int], None] | None = None) -> list[Reply]:
        """The replies to ``requests``, in order (each request sent with the pool's next id).

        Raises:
            KeyboardInterrupt when ``stop`` is set meanwhile.
        """
        n = len(requests)
        replies: list[Reply | None] = [None] * n
        seqs: list[int] = []
        for _ in range(n):
            self._seq += 1
            seqs.append(self._seq)
        queue: deque[int] = deque(range(n))
        pending = n

        def finish(i: int, reply: Reply) -> None:
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
                seconds = time.monotonic() - w.since
                finish(i, Reply(status=status, exit_status=code, detail=detail, seconds=seconds))
                queue.extendleft(reversed(w.outstanding))
            elif not w.ready:
                self.notes.append(f"a worker process ended while loading {self.program.noun} (status {code})")
            self.losses += 1
            if self.aborted:
                self.notes.append(
                    f"{self.program.noun} ended or hung {self.losses} worker processes; the rest was not run"
                )

        while pending:
            if self.stop.is_set():
                raise KeyboardInterrupt
            if self.aborted and queue:
                for i in list(queue):
                    finish(i, Reply(status="not_run"))
                queue.clear()
                if not pending:
                    break
            while queue and len(self._workers) < self.workers:
                self._workers.append(self._start())
            now = time.monotonic()
            for w in list(self._workers):
                if queue and len(w.outstanding) <= BATCH:
                    take = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
                    if not w.outstanding and w.ready:
                        w.since = now
                    try:
                        w.send([dataclasses.replace(requests[i], id=seqs[i]) for i in take])
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
                try:
                    message = from_wire(Hello if not w.ready else Reply, msg)
                except WireError as exc:
                    lose(w, "garbled", str(exc))
                    continue
                if isinstance(message, Hello):
                    if message.status != "ready":
                        lose(w, "died", str(message.message))
                        continue
                    w.ready, w.since = True, time.monotonic()
                    continue
                reply = message
                expected = seqs[w.outstanding[0]] if w.outstanding else None
                if reply.id != expected:
                    lose(w, "garbled", unasked(reply.id, expected, self._seq))
                    continue
                finish(w.outstanding.popleft(), reply)
                w.since = time.monotonic()
            now = time.monotonic()
            for w in [w for w in busy if w in self._workers and now > limit(w)]:
                lose(w, "timeout")
        return [r if r is not None else Reply(status="not_run") for r in replies]

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
