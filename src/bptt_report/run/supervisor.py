"""The supervisor of one worker process: a small process between the checker and the worker, so
that no process the code under test starts outlives the checker. The standard library only.

    checker --(control, status)-- supervisor --(starts, waits for, ends)-- worker --> its children

Why a supervisor, and not a walk of the worker's descendants in /proc before killing it: a
process the code under test starts and that leaves (a double fork, or ``setsid`` under a parent
that then exits) is reparented to init and is no longer a descendant of the worker, so no walk
from the worker can find it, and every walk races with the forks it is walking. A child
subreaper (Linux's ``prctl(PR_SET_CHILD_SUBREAPER)``, here through ctypes) receives every orphan
among its descendants instead of init: the supervisor is one, so when it ends the worker's
process group (the worker runs in a session of its own) every process that escaped the group is,
or becomes, the supervisor's own child, and it ends its children until it has none. Without the
prctl (not Linux) it ends the worker's process group only.

The supervisor ends them all when its control pipe (its stdin) ends, that is when the checker
closes it or is gone, or when the worker exits. Its status pipe (its stdout) says ``pid N`` once
the worker runs and ``exit S`` (the worker's returncode, negative for a signal) when it is done.
The worker gets the protocol pipes and the pipe of its output as its stdin, stdout and stderr,
nothing else of this process (none of the checker's files).

    python -c SUPERVISOR_BOOT PATH FD_IN FD_OUT FD_ERR COMMAND...      (bptt_report.run.pool)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import selectors
import signal
import subprocess
import sys
import time

#: prctl option: become a child subreaper (Linux >= 3.4).
PR_SET_CHILD_SUBREAPER = 36
#: Seconds the supervisor spends ending the processes it reaps, at most.
END_WITHIN = 5.0


def become_subreaper() -> bool:
    """Make this process a child subreaper (the orphans among its descendants become its
    children); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children(pid: int | None = None) -> list[int]:
    """The pids of the children of ``pid`` (default: this process), zombies included."""
    pid = os.getpid() if pid is None else pid
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        return out
    except OSError:
        pass
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():  # no children files: every stat
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def end_children(deadline: float) -> None:
    """SIGKILL every child of this process and reap it, until none is left (the orphans of the
    ones killed arrive as new children of a subreaper), or until ``deadline``."""
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return  # no child at all
        for pid in children():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


class _Stop(Exception):
    """SIGTERM reached the supervisor."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(1, (line + "\n").encode())


def _wait(worker: subprocess.Popen[bytes]) -> None:
    """Until the control pipe ends, the worker exits, or SIGTERM arrives."""
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(worker.pid)  # readable when the worker exits (Linux >= 5.3)
        sel.register(pidfd, selectors.EVENT_READ)
    try:
        while worker.poll() is None:
            for key, _ in sel.select(timeout=None if pidfd is not None else 0.05):
                if key.fd == 0 and not os.read(0, 1 << 12):
                    return  # the checker closed the control pipe, or is gone
    except _Stop:
        return
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)


def main(argv: list[str]) -> None:
    """Start the worker ``argv[3:]`` on the descriptors ``argv[:3]`` (see the module docstring),
    wait, end it and everything it started, report its returncode."""
    fd_in, fd_out, fd_err = (int(a) for a in argv[:3])
    subreaper = become_subreaper()
    # The worker starts with SIGINT and SIGTERM blocked (inherited from the checker's
    # signals_blocked): it leaves them to the checker itself (run.signals.leave_to_the_checker).
    worker = subprocess.Popen(argv[3:], stdin=fd_in, stdout=fd_out, stderr=fd_err, start_new_session=True)
    for fd in (fd_in, fd_out, fd_err):
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the checker's, which then stops us
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _say(f"pid {worker.pid}")
    _wait(worker)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ending them is not interrupted
    with contextlib.suppress(OSError):
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its group (it may have exited already)
    deadline = time.monotonic() + END_WITHIN
    try:
        status: int | None = worker.wait(END_WITHIN)
    except subprocess.TimeoutExpired:
        status = None
    if subreaper:
        end_children(deadline)
    _say(f"exit {status}")
