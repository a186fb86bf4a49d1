"""Ctrl-C and SIGTERM belong to the checker's main thread: the rule, for every process and thread
that works for a check. The standard library only.

- The checker's main thread handles them (the command line turns SIGTERM into KeyboardInterrupt)
  and stops the workers.
- Its helper threads block them (``block_in_this_thread``), so that they reach the main thread.
- A process it starts is started inside ``signals_blocked()``, and a worker or oracle process,
  once started, ignores Ctrl-C and unblocks both (``leave_to_the_checker``): a Ctrl-C in the
  terminal, which reaches the whole process group, prints no traceback there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The signals that stop a check.
SIGNALS = {signal.SIGINT, signal.SIGTERM}


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
            for sig in SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    saved[sig] = handler
                    signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
        if hasattr(signal, "pthread_sigmask"):
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        yield
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a pending signal reaches the recorder
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for signum, frame in caught[:1]:
            saved[signum](signum, frame)


def block_in_this_thread() -> None:
    """A helper thread of the checker: SIGINT and SIGTERM left to the main thread (and blocked in
    the processes this thread starts)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def leave_to_the_checker() -> None:
    """A worker or oracle process: Ctrl-C ignored (the checker handles it and stops us), SIGINT
    and SIGTERM no longer blocked (the block inherited from signals_blocked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
