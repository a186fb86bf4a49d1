"""The local worker processes of both products: fresh interpreters (``python -c BOOT``), each
running a Program (the target's side, bptt_report.targets.worker; check-module's,
bptt_report.module.worker) in the one loop of bptt_report.run.worker; restarted when the code
under test ends or hangs one, stopped on interrupt. The checker's side; numpy only.

    with WorkerPool(targets.worker.program(spec), workers=2) as pool:   # started: pool.hello
        replies = pool.run([Request("call", cfg), ...])                  # stopped on leaving

Each worker runs under a supervisor of its own (bptt_report.run.supervisor, in a session of its
own, so a Ctrl-C in the terminal reaches only the checker), which ends the worker's process
group and, on Linux as a child subreaper, every process the code under test started, also one
that left the group: when the checker lets a worker go, or the worker exits, nothing it started
is left running.

The worker gets this process's sys.path, so it imports the same packages (and never runs
the calling script again, as multiprocessing's spawn would), and the environment of
bptt_report.run.threads.environment (its BLAS and OpenMP pools on one thread, wherever the sweep
runs). Requests travel on its stdin (framed pickles, from the checker: trusted); replies on a
copy of its stdout (framed bptt_report.run.wire messages, rebuilt as bptt_report.run.protocol
replies, each field checked); the code under test's own output (its stdout and stderr) on a pipe
of its own, which the pool reads: the last OUTPUT_TAIL bytes of each request's output go with
its reply (Reply.output, Reply.output_bytes) and are echoed on this process's stderr, at most
OUTPUT_ECHO bytes in all. No file of the checker is open in the worker.

Requests go out in batches (several per message, up to two batches in flight per worker);
replies come back one per request, in order, read without blocking (a message that stops half
way is timed out like a request). A worker whose process ends, whose reply cannot be read (a
frame too long or malformed, a field of the wrong type, a reply to another request), or that
runs past the per-request timeout is ended; the request it was on gets a reply saying what
happened ("died", "garbled", "timeout"), the requests queued behind it go to a fresh worker.
After ``max_losses`` lost workers the remaining requests are answered "not_run".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import secrets
import signal
import struct
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
from . import supervisor, threads, wire
from .protocol import Hello, Program, Reply, Request, from_wire
from .signals import signals_blocked
from .worker import OUTPUT_MARK

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
#: The last bytes of the code under test's output during one request, kept with its reply.
OUTPUT_TAIL = 64 << 10
#: At most this many bytes of the code under test's output are echoed on stderr, per pool.
OUTPUT_ECHO = 1 << 20
#: At most this many bytes of output are read from one worker at a time (a target that prints
#: without end does not keep the pool from its timeouts).
_DRAIN = 8 << 20
#: Seconds to wait for a supervisor to end its worker and everything it started.
END_WAIT = 10.0
#: Pipe capacity asked for (Linux, best effort): fewer wake-ups for large replies and output.
_PIPE_SIZE = 1 << 20

#: A worker process's command line: ``python -c BOOT PATH ARGUMENT`` takes the checker's sys.path
#: (JSON) and calls the Program's ``main(ARGUMENT)``.
BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from {module} import {name}; {name}(sys.argv[2])"
)
#: The supervisor's command line: ``python -c SUPERVISOR_BOOT PATH FD_IN FD_OUT FD_ERR COMMAND...``.
SUPERVISOR_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    f"from {supervisor.__name__} import main; main(sys.argv[2:])"
)


def max_jobs() -> int:
    """The largest ``jobs`` accepted: JOBS_PER_CPU x the usable CPUs."""
    return JOBS_PER_CPU * usable_cpus()


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


def _pipe() -> tuple[int, int]:
    """A pipe (read end, write end), as large as the system grants (Linux)."""
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import fcntl  # POSIX

        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # Linux (an AttributeError elsewhere)
    return r, w


class _Output:
    """The read end of a worker's output pipe, cut into what each message of the worker
    followed: the worker writes ``mark`` after what the code under test printed while it
    answered (run.worker.mark_output), so that the output of a request is what came before its
    mark, even when the worker has gone on to the next one before the pool reads the pipe. Of
    each part the last OUTPUT_TAIL bytes are kept, and the count of all."""

    def __init__(self, fd: int, mark: bytes) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.mark = mark
        self.tail = bytearray()
        self.count = 0
        self.carry = b""  # the start of a mark, cut by a read
        self.parts: deque[tuple[bytes, int]] = deque()
        self.open = True

    def fileno(self) -> int:
        return self.fd

    def _add(self, data: bytes) -> None:
        self.count += len(data)
        self.tail += data
        if len(self.tail) > 2 * OUTPUT_TAIL:
            del self.tail[:-OUTPUT_TAIL]

    def _cut(self) -> tuple[bytes, int]:
        part = (bytes(self.tail[-OUTPUT_TAIL:]), self.count)
        self.tail, self.count = bytearray(), 0
        return part

    def _feed(self, chunk: bytes) -> None:
        data, self.carry = self.carry + chunk, b""
        while (i := data.find(self.mark)) >= 0:
            self._add(data[:i])
            self.parts.append(self._cut())
            data = data[i + len(self.mark) :]
        for k in range(min(len(self.mark) - 1, len(data)), 0, -1):
            if self.mark.startswith(data[-k:]):
                data, self.carry = data[:-k], data[-k:]
                break
        self._add(data)

    def drain(self) -> None:
        """Read what is there (at most _DRAIN bytes)."""
        got = 0
        while self.open and got < _DRAIN:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.open = False
                return
            got += len(chunk)
            self._feed(chunk)

    def take(self) -> tuple[str, int]:
        """(the last OUTPUT_TAIL bytes as text, the bytes in all) of the oldest part not taken:
        what came before the next mark, or, without one (a worker lost half way), all that came."""
        self.drain()
        if self.parts:
            data, count = self.parts.popleft()
        else:
            self._add(self.carry)
            self.carry = b""
            data, count = self._cut()
        return data.decode("utf-8", "replace"), count


@dataclass(eq=False)
class _Worker:
    supervisor: subprocess.Popen[bytes]
    fd_send: int
    fd_recv: int
    out: _Output
    ready: bool = False
    since: float = 0.0
    outstanding: deque[int] = field(default_factory=deque)
    frames: deque[bytes] = field(default_factory=deque)
    inbox: bytearray = field(default_factory=bytearray)
    returncode: int | None = None
    ended: bool = False

    def fileno(self) -> int:
        return self.fd_recv

    def send(self, obj: Any) -> None:
        """A batch of requests (or None: stop) to the worker."""
        wire.write_frame(self.fd_send, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> None:
        """Read what has arrived (one read: the caller waited until the pipe was readable) and
        keep each complete frame in ``frames``.

        Raises:
            WorkerLost at the end of the pipe; WireError for a frame longer than
            wire.MAX_MESSAGE (before it is read), or a pipe that ends inside one.
        """
        chunk = os.read(self.fd_recv, 1 << 20)
        if not chunk:
            if self.inbox:
                raise WireError(f"the pipe ended inside a message ({len(self.inbox)} bytes of it)")
            raise WorkerLost("end of the pipe")
        self.inbox += chunk
        while len(self.inbox) >= 4:
            (n,) = struct.unpack(">I", self.inbox[:4])
            if n > wire.MAX_MESSAGE:
                raise WireError(f"a message of {n} bytes (at most {wire.MAX_MESSAGE})")
            if len(self.inbox) < 4 + n:
                return
            self.frames.append(bytes(self.inbox[4 : 4 + n]))
            del self.inbox[: 4 + n]


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
        self._echoed = 0
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
        main = self.program.main
        boot = BOOT.format(module=main.__module__, name=main.__name__)
        return [sys.executable, "-c", boot, json.dumps(self._path()), self.program.argument]

    def _path(self) -> list[str]:
        return sys.path if self.path is None else self.path

    def _start(self) -> _Worker:
        """A worker under its supervisor: the protocol pipes and the output pipe made here, their
        worker ends passed to the supervisor (and on to the worker) and closed here."""
        mark = f"\x1e{secrets.token_hex(12)}\x1e".encode("ascii")
        req_r, req_w = _pipe()
        rep_r, rep_w = _pipe()
        out_r, out_w = _pipe()
        ends = (req_r, rep_w, out_w)
        command = [sys.executable, "-c", SUPERVISOR_BOOT, json.dumps(self._path()),
                   *map(str, ends), *self._command()]  # fmt: skip
        try:
            with signals_blocked():
                sup = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    pass_fds=ends,
                    start_new_session=True,
                    env={**threads.environment(), OUTPUT_MARK: mark.decode("ascii")},
                )
        except BaseException:
            for fd in (req_r, req_w, rep_r, rep_w, out_r, out_w):
                os.close(fd)
            raise
        for fd in ends:
            os.close(fd)
        out = _Output(out_r, mark)
        return _Worker(supervisor=sup, fd_send=req_w, fd_recv=rep_r, out=out, since=time.monotonic())

    @staticmethod
    def _kill(w: _Worker) -> None:
        """End the worker and everything it started (its supervisor does), and set its returncode."""
        if w.ended:
            return
        w.ended = True
        sup = w.supervisor
        with contextlib.suppress(OSError):
            if sup.stdin is not None:
                sup.stdin.close()  # the end of the control pipe: the supervisor ends them all
        try:
            sup.wait(END_WAIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
        status = {}
        with contextlib.suppress(OSError, ValueError):
            assert sup.stdout is not None
            for line in sup.stdout.read().decode("ascii", "replace").splitlines():
                key, _, value = line.partition(" ")
                status[key] = value
            sup.stdout.close()
        if "exit" not in status and status.get("pid", "").isdigit():
            with contextlib.suppress(OSError):  # the supervisor itself was ended: its worker's group
                os.killpg(int(status["pid"]), signal.SIGKILL)
        code = status.get("exit", "None")
        w.returncode = int(code) if code.lstrip("-").isdigit() else None
        for fd in (w.fd_send, w.fd_recv, w.out.fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _echo(self, text: str, count: int, during: str) -> None:
        """The code under test's output on stderr: the last OUTPUT_TAIL bytes of each request's,
        at most OUTPUT_ECHO in all (then one line saying that the rest is left out)."""
        if not count or self._echoed > OUTPUT_ECHO:
            return
        noun = self.program.noun
        head = f"[{noun} printed {count} bytes{during}; the last {len(text)} characters follow]\n"
        chunk = (head if len(text.encode("utf-8", "replace")) < count else "") + text
        chunk += "" if chunk.endswith("\n") else "\n"
        if self._echoed + len(chunk) > OUTPUT_ECHO:
            chunk = (f"[{noun} printed {count} bytes{during}; more than {OUTPUT_ECHO} bytes of its output "
                     "have been shown here, the rest is not]\n")  # fmt: skip
            self._echoed = OUTPUT_ECHO
        self._echoed += len(chunk)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(chunk)
            sys.stderr.flush()

    def _output(self, w: _Worker, during: str) -> dict[str, Any]:
        """The output of ``w`` since the last time (echoed), as Reply fields."""
        text, count = w.out.take()
        self._echo(text, count, during)
        return {"output": text, "output_bytes": count}

    def start(self) -> Hello:
        """Start the first worker and return its hello: what the code under test is and declares.

        Raises:
            TargetError when the code under test cannot be loaded (or its process ends while loading).
        """
        w = self._start()
        limit = self.timeout + STARTUP_ALLOWANCE
        deadline = time.monotonic() + limit
        label = self.program.label
        try:
            while not w.frames:
                if self.stop.is_set():
                    raise KeyboardInterrupt
                if time.monotonic() > deadline:
                    raise TargetError(f"{label}: loading it took longer than {limit:.0f} s")
                ready = wait([w] + ([w.out] if w.out.open else []), timeout=0.1)
                if w.out in ready:
                    w.out.drain()
                if w in ready:
                    w.receive()
            hello = from_wire(Hello, wire.decode(w.frames.popleft()))
        except (WorkerLost, OSError, WireError) as exc:
            self._output(w, " while loading")
            self._kill(w)
            if isinstance(exc, WorkerLost):
                why = f"the process loading it ended with status {w.returncode}"
            else:
                why = f"the process loading it sent a hello that cannot be read ({exc})"
            raise TargetError(f"{label}: {why}") from exc
        except BaseException:
            self._kill(w)
            raise
        self._output(w, " while loading")
        if hello.status != "ready":
            self._kill(w)
            raise TargetError(str(hello.message or f"{label}: cannot be loaded"))
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
            i = w.outstanding[0] if w.outstanding else None
            output = self._output(w, "")
            self._kill(w)
            code = w.returncode
            if i is not None:
                w.outstanding.popleft()
                seconds = time.monotonic() - w.since
                finish(i, Reply(status=status, exit_status=code, detail=detail, seconds=seconds, **output))
                queue.extendleft(reversed(w.outstanding))
            elif not w.ready:
                self.notes.append(f"a worker process ended while loading {self.program.noun} (status {code})")
            self.losses += 1
            if self.aborted:
                self.notes.append(
                    f"{self.program.noun} ended or hung {self.losses} worker processes; the rest was not run"
                )

        def handle(w: _Worker) -> None:
            """Every complete message of ``w``, in order."""
            while w.frames and w in self._workers:
                try:
                    message = from_wire(Reply if w.ready else Hello, wire.decode(w.frames.popleft()))
                except WireError as exc:
                    lose(w, "garbled", str(exc))
                    return
                if isinstance(message, Hello):
                    if message.status != "ready":
                        lose(w, "died", str(message.message))
                        return
                    self._output(w, " while loading")
                    w.ready, w.since = True, time.monotonic()
                    continue
                expected = seqs[w.outstanding[0]] if w.outstanding else None
                if message.id != expected:
                    lose(w, "garbled", unasked(message.id, expected, self._seq))
                    return
                i = w.outstanding.popleft()
                reply = dataclasses.replace(message, **self._output(w, ""))
                check = self.program.check
                finish(i, reply if check is None else check(requests[i], reply))
                w.since = time.monotonic()

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
            outputs = [w.out for w in self._workers if w.out.open]
            ready = wait([*busy, *outputs], timeout=max(0.0, wait_for))
            for out in [o for o in outputs if o in ready]:
                out.drain()
            for w in [w for w in busy if w in ready]:
                try:
                    w.receive()
                except (WorkerLost, OSError):
                    handle(w)  # what arrived before the end
                    if w in self._workers:
                        lose(w, "died")
                    continue
                except WireError as exc:
                    lose(w, "garbled", str(exc))
                    continue
                handle(w)
            now = time.monotonic()
            for w in [w for w in busy if w in self._workers and now > limit(w)]:
                lose(w, "timeout")
        return [r if r is not None else Reply(status="not_run") for r in replies]

    def close(self) -> None:
        """Stop every worker (politely, then by force), and everything each started."""
        workers, self._workers = self._workers, []
        for w in workers:
            try:
                w.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for w in workers:
            try:
                w.supervisor.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._output(w, " after its last request")
            self._kill(w)
