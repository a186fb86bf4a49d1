"""Every exception of the checker, under one root. The standard library only.

    CheckerError                 the root: anything raised on purpose by bptt_report
    ├── UsageError (ValueError)  the check cannot run as asked: exit status 2, with one line
    │   ├── TargetError          the target (or check-module's factory) cannot be loaded, or
    │   │                        declares something invalid
    │   ├── SchedulerError       the Dask cluster cannot be reached or cannot run the sweep
    │   └── DaskMissing          --scheduler without Dask installed (also an ImportError)
    ├── PlotsUnavailable         matplotlib is not installed (an ImportError)
    ├── WireError (ValueError)   a worker's message that cannot be decoded
    ├── WorkerLost               a worker's pipe ended or carried something unreadable
    └── Misbehaved               what the code under test did instead of answering, raised in
        │                        its worker and turned into a reply there
        ├── Unsupported          the target does not take these keywords (or this cell)
        ├── BadResult            the target returned something that is not a result
        ├── BrokenContract       check-module: the module does not follow the layer contract
        └── Declined             check-module: the factory declines a size (NotImplementedError)
"""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """How to install an optional part of the package: ``pip install 'manual-bptt[EXTRA]'``."""
    return f"pip install 'manual-bptt[{extra}]'"


class CheckerError(Exception):
    """The root of every exception the checker raises on purpose."""


class UsageError(CheckerError, ValueError):
    """The check cannot run as asked (bad options, a target or module that cannot be loaded, an
    output location that cannot be written): exit status 2, with the message."""


class TargetError(UsageError):
    """The target cannot be loaded or declares something invalid."""


class SchedulerError(UsageError):
    """The Dask cluster cannot be reached, has no workers, or its workers cannot run the sweep."""


class DaskMissing(UsageError, ImportError):
    """--scheduler without Dask installed."""


class PlotsUnavailable(CheckerError, ImportError):
    """matplotlib is not installed."""


class WireError(CheckerError, ValueError):
    """A message that cannot be decoded (the worker sent something malformed)."""


class WorkerLost(CheckerError):
    """The worker's pipe ended or carried something unreadable."""


class Misbehaved(CheckerError):
    """What the code under test did instead of answering (raised in its worker process)."""


class Unsupported(Misbehaved):
    """The target does not accept these keywords (or raised NotImplementedError for them)."""

    def __init__(self, keywords: tuple[str, ...], detail: str = "") -> None:
        super().__init__(f"unsupported option(s): {', '.join(keywords)}" + (f" ({detail})" if detail else ""))
        self.keywords = keywords
        self.detail = detail


class BadResult(Misbehaved):
    """The target returned something that is not a result (None, or no .loss / .grads)."""


class BrokenContract(Misbehaved):
    """The module does not follow the contract (missing parameters, wrong forward structure)."""


class Declined(Misbehaved):
    """check-module: the factory raised NotImplementedError for the sizes it was given (those
    sizes are unsupported, not failed)."""
