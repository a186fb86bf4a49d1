"""The loop of every worker process, for both products: a target's (bptt_report.targets.worker)
and check-module's module's (bptt_report.module.worker). numpy only: what it imports besides is
the product's, and the code under test's.

A worker process runs bptt_report.run.pool's BOOT: it takes the checker's sys.path, imports the
product's worker module and calls its ``main(argument)``, which calls ``serve(load)`` with

    load() -> (handle, Hello)      imports the code under test; handle is None when it cannot
    handle(Request) -> Reply       answers one request (a function or a functools.partial of
                                   one, so that a traceback starts at the product's handler)

serve() keeps private copies of stdin and stdout for the protocol (the code under test sees
/dev/null as its stdin, and as its stdout its stderr: the pipe of its output, which the pool
reads), leaves Ctrl-C to the checker, sends the Hello, then answers each request of each batch
the checker sends (bptt_report.run.protocol: the requests pickled, the replies as
bptt_report.run.wire messages), in order, until a None batch or the end of the stream. A
request whose handling raises is answered "raised" (or "exited", for SystemExit) with the
traceback; every reply carries the request's id and its wall time, and goes after what the
code under test printed meanwhile has been flushed. When the checker goes away (a closed
pipe), the worker ends quietly.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable

from .protocol import Hello, Reply, Request, to_wire
from .signals import leave_to_the_checker
from .wire import encode, read_frame, write_frame

#: Runs one request in the worker.
Handle = Callable[[Request], Reply]
#: The modules a worker must not need, whose presence its Hello reports.
ORACLE_MODULES = ("torch", "reference")
#: The environment variable in which the pool gives a worker the mark that ends the output of
#: each message (run.pool: the output of a request is what the code under test printed before
#: its mark); the worker takes it out of its environment, so that what the code under test
#: starts does not see it.
OUTPUT_MARK = "BPTT_REPORT_OUTPUT_MARK"
_MARK: list[bytes] = [b""]


def imported(names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``names`` that this process has imported, sorted."""
    return tuple(sorted(m for m in names if m in sys.modules))


def private_stdio() -> tuple[int, int]:
    """A worker process's start: Ctrl-C left to the checker, and private copies (fd_in, fd_out) of
    stdin and stdout for the protocol, while the code under test sees /dev/null as stdin and
    stderr as stdout."""
    leave_to_the_checker()
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    return fd_in, fd_out


def answer(handle: Handle, request: Request) -> Reply:
    """``handle(request)``, or what it raised, with the request's id and the time it took."""
    t0 = time.perf_counter()
    try:
        reply = handle(request)
    except (Exception, SystemExit) as exc:
        reply = exception_reply(exc)
    seconds = time.perf_counter() - t0
    mark_output()
    return dataclasses.replace(reply, id=request.id, seconds=seconds)


def mark_output() -> None:
    """The end of what the code under test printed for the message about to be sent: its
    sys.stdout and sys.stderr flushed into the output pipe, then the mark written after it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the code under test may have replaced or closed them
            pass
    if _MARK[0]:
        try:
            os.write(2, _MARK[0])
        except OSError:
            pass


def exception_reply(exc: BaseException) -> Reply:
    """The reply to a request whose handling raised ``exc``: "exited" for SystemExit (its
    argument), else "raised" (the exception's type name and message), with the traceback."""
    if isinstance(exc, SystemExit):
        return Reply(status="exited", exit_argument=repr(exc.code), traceback=_traceback(exc))
    return Reply(status="raised", exception=type(exc).__name__, message=str(exc), traceback=_traceback(exc))


def _traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` from the product's handler on (answer's own frame left out)."""
    tb = exc.__traceback__
    start = tb.tb_next if tb is not None and tb.tb_next is not None else tb
    return "".join(traceback.format_exception(type(exc), exc, start))


def serve(load: Callable[[], tuple[Handle | None, Hello]]) -> None:
    """The worker's loop (see the module docstring)."""
    _MARK[0] = os.environ.pop(OUTPUT_MARK, "").encode("ascii")
    try:
        fd_in, fd_out = private_stdio()
        before = imported(ORACLE_MODULES)
        handle, hello = load()
        hello = dataclasses.replace(hello, modules=imported(ORACLE_MODULES), modules_before=before)
        mark_output()
        write_frame(fd_out, encode(to_wire(hello)))
        if handle is None:
            return
        while (body := read_frame(fd_in)) is not None and (batch := pickle.loads(body)) is not None:
            for request in batch:
                write_frame(fd_out, encode(to_wire(answer(handle, request))))
    except (BrokenPipeError, ConnectionError, EOFError):
        os._exit(0)
