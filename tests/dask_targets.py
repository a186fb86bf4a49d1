"""Targets for the Dask sweep tests (importable by name from the Dask workers' subprocesses).

kills_its_dask_worker_once   manual_bptt.bptt, except that the first call made under a Dask
                             worker (a pool process other than the checker's, whose pid is in
                             BPTT_TEST_CHECKER_PID) kills that process with SIGKILL: a Dask worker
                             lost mid-batch. The marker file BPTT_TEST_KILL_MARKER makes it once.
                             (The pool's process is the parent of the worker's supervisor.)
set_environ                  os.environ.update, for Client.run (os.environ.update itself would
                             update an unpickled copy of os.environ on the Dask worker).
"""

from __future__ import annotations

import os
import signal

import manual_bptt


def set_environ(values):
    os.environ.update(values)


def pool_process() -> int:
    """The pid of the process whose WorkerPool runs this worker: its supervisor's parent."""
    with open(f"/proc/{os.getppid()}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def kills_its_dask_worker_once(p, xs, ys, **kwargs):
    marker = os.environ.get("BPTT_TEST_KILL_MARKER")
    checker = os.environ.get("BPTT_TEST_CHECKER_PID")
    parent = pool_process()
    if marker and checker and str(parent) != checker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(parent, signal.SIGKILL)
    return manual_bptt.bptt(p, xs, ys, **kwargs)
