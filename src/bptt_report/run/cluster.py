"""The sweep on a Dask distributed cluster (``check(..., scheduler=ADDRESS)``, ``manual-bptt report
--scheduler ADDRESS``; ``"local"`` starts a LocalCluster on this machine).

The configurations go out in batches (batch_size: a few per worker thread, so the scheduler's
overhead per task stays small beside the work in it). Each batch is one Dask task, run_batch:
on the Dask worker it hands the batch to a bptt_report.run.pool.WorkerPool of the target's
Program, so the target still runs in a subprocess of its own (never in the Dask worker process),
and meanwhile computes what the checker asks beside each request (``beside``: the oracle's and
nn.RNN's results) in the Dask worker process (never where the target runs). The replies and
references come back to the checker, which compares them exactly as in a ``jobs`` run: the same
configurations, the same arrays (rebuilt from each configuration on each side), so the same
checks and verdict.

A Dask worker that dies mid-batch has its batch run again on another worker (the scheduler does
that; a batch that outlives several workers is resubmitted here, at most MAX_RESUBMITS times);
each task records where it started (a Dask event), and the result's notes say which batches were
retried and where. A target that the Dask workers cannot import, or a Dask worker without this
package, is a SchedulerError or a TargetError, with the worker's message.

Dask is optional (the ``dist`` extra); without it, require_dask raises DaskMissing. This module
imports neither Dask nor torch until a sweep runs.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DaskMissing, SchedulerError, TargetError, install_hint
from . import threads
from .pool import DEFAULT_TIMEOUT, WorkerPool
from .protocol import Program, Reply, Request

#: Batches aimed at per worker thread (enough to balance uneven configurations).
BATCHES_PER_THREAD = 4
#: Bounds of a batch, in configurations.
MIN_BATCH, MAX_BATCH = 8, 64
#: Times a batch whose task failed with its workers is submitted again before its
#: configurations are answered "not_run".
MAX_RESUBMITS = 2
#: The Dask event topic on which each task records where it started.
EVENT_TOPIC = "bptt-report-batch"
#: Seconds to wait for the first Dask worker of a cluster.
WORKER_WAIT = 60.0

#: What a Dask worker computes beside the target for each request (the oracle's references, or None).
Beside = Callable[[Request], Any]


def require_dask() -> None:
    """Raise DaskMissing (saying how to install it) unless dask.distributed can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        hint = f"{install_hint('dist')} (Dask distributed); ({type(exc).__name__}: {exc})"
        raise DaskMissing(f"--scheduler needs Dask: {hint}") from exc


def batch_size(n: int, threads: int) -> int:
    """Configurations per task: n spread over BATCHES_PER_THREAD tasks per Dask worker thread,
    within MIN_BATCH..MAX_BATCH (and never more than n)."""
    if n <= 0:
        return 1
    per = math.ceil(n / (BATCHES_PER_THREAD * max(1, threads)))
    return max(1, min(n, max(MIN_BATCH, min(MAX_BATCH, per))))


def batches(n: int, size: int) -> list[range]:
    """0..n-1 cut into consecutive ranges of ``size`` (the last one shorter)."""
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


# ---------------------------------------------------------------------------------------------
# The Dask worker's side.

#: One WorkerPool per (sweep token, program, path, timeout, thread) in this Dask worker process:
#: a sweep's batches reuse their pool; a new sweep closes the pools of the earlier ones (so an
#: edited target is imported again).
_POOLS: dict[tuple[Any, ...], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def _close_pools(keep: str | None = None) -> None:
    with _POOLS_LOCK:
        stale = [k for k in _POOLS if k[0] != keep]
        pools = [_POOLS.pop(k) for k in stale]
    for p in pools:
        p.stop.set()
        p.close()


atexit.register(_close_pools)


def close_sweep(token: str) -> None:
    """Stop the target processes of the sweep ``token`` in this Dask worker (run on every worker
    when the sweep ends)."""
    with _POOLS_LOCK:
        pools = [_POOLS.pop(k) for k in [k for k in _POOLS if k[0] == token]]
    for p in pools:
        p.stop.set()
        p.close()


def _worker_path(client_path: list[str]) -> list[str]:
    """This process's sys.path, then the checker's entries that exist here too (a target
    importable beside the checker on a shared file system, or on this machine)."""
    extra = [p for p in client_path if p not in sys.path and p and os.path.isdir(p)]
    return [*sys.path, *extra]


def _address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


@dataclass(frozen=True)
class Batch:
    """What one batch gives back from its Dask worker (``error``: the target cannot be loaded
    there; then nothing else).

    Attributes:
        worker: the Dask worker's address.  replies: the target's reply to each request.
        refs: ``beside`` of each request.  notes: the pool's notes meanwhile.
        aborted: whether the pool stopped running the target after repeated losses.
    """

    worker: str
    replies: list[Reply] = field(default_factory=list)
    refs: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    aborted: bool = False
    error: str = ""


def run_batch(
    token: str,
    program: Program,
    client_path: list[str],
    timeout: float,
    index: int,
    requests: list[Request],
    beside: Beside,
) -> Batch:
    """One batch, on a Dask worker: the target's replies (from its own subprocess, running
    ``program``) and ``beside`` of each request (here, in the Dask worker process)."""
    where = _address()
    try:
        from distributed import get_worker

        get_worker().log_event(EVENT_TOPIC, {"token": token, "batch": index, "worker": where})
    except (ImportError, ValueError, AttributeError):
        pass
    key = (token, program, tuple(client_path), float(timeout), threading.get_ident())
    _close_pools(keep=token)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
    if pool is None:
        pool = WorkerPool(program, workers=1, timeout=float(timeout), path=_worker_path(client_path))
        try:
            pool.start()
        except TargetError as exc:
            pool.close()
            return Batch(where, error=str(exc))
        with _POOLS_LOCK:
            _POOLS[key] = pool
    seen = len(pool.notes)
    box: dict[str, Any] = {}

    def target_side() -> None:
        try:
            box["replies"] = pool.run(list(requests))
        except BaseException as exc:  # handed to the task's thread below
            box["error"] = exc

    thread = threading.Thread(target=target_side, name="bptt-report-target", daemon=True)
    try:
        thread.start()
        with threads.fixed():  # the same numbers as in the checker's or its oracle processes
            refs = [beside(r) for r in requests]
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    return Batch(where, box["replies"], refs, pool.notes[seen:], pool.aborted)


# ---------------------------------------------------------------------------------------------
# The checker's side.


@dataclass(frozen=True)
class DaskOutcome:
    """What a sweep on Dask gives back, aligned with its requests.

    Attributes:
        replies: the target's reply to each request.
        refs: ``beside`` of each request (the references of the oracle's requests).
        notes: what happened on the way (retried batches, workers that stopped the target).
        aborted: whether a pool stopped running the target after repeated losses.
        workers: the Dask worker addresses that completed batches.
        batch: configurations per task.
    """

    replies: list[Reply]
    refs: list[Any]
    notes: tuple[str, ...]
    aborted: bool
    workers: tuple[str, ...]
    batch: int


def _connect(scheduler: str, jobs: int) -> tuple[Any, Any]:
    """A Client, and the LocalCluster it owns for "local" (else None)."""
    require_dask()
    from distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(
            n_workers=max(1, jobs),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster), cluster
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({type(exc).__name__}: {exc})"
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise SchedulerError(
            f"--scheduler {scheduler}: no Dask worker joined within {WORKER_WAIT:.0f} s ({exc})"
        ) from None
    return client, None


def _is_lost_workers(exc: BaseException) -> bool:
    try:
        from distributed import KilledWorker
    except ImportError:
        return False
    return isinstance(exc, KilledWorker)


def dask_sweep(
    scheduler: str,
    program: Program,
    requests: list[Request],
    beside: Beside,
    *,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Callable[[int], None] | None = None,
    client: Any = None,
) -> DaskOutcome:
    """Run ``requests`` on the Dask cluster at ``scheduler`` ("local": a LocalCluster of ``jobs``
    single-threaded workers, closed afterwards), in batches: the target in worker processes
    running ``program`` there, and ``beside(request)`` in the Dask worker processes.

    Args:
        client: an existing dask.distributed.Client to use instead (``scheduler`` is then only
            named in messages).

    Raises:
        DaskMissing without Dask; SchedulerError when the cluster cannot be reached or cannot
        run the sweep; TargetError when the target cannot be loaded on a Dask worker.
    """
    own_client, cluster = (client, None) if client is not None else _connect(scheduler, jobs)
    token = uuid.uuid4().hex
    path = [*sys.path, os.getcwd()]  # a target found in the current directory, as load_target does
    n = len(requests)
    try:
        threads = sum(own_client.nthreads().values()) or 1
        size = batch_size(n, threads)
        parts = batches(n, size)
        replies: list[Reply | None] = [None] * n
        refs: list[Any] = [None] * n
        notes: list[str] = []
        aborted = False
        done_on: dict[int, str] = {}
        resubmits = dict.fromkeys(range(len(parts)), 0)

        def submit(k: int) -> Any:
            part = parts[k]
            return own_client.submit(
                run_batch, token, program, path, float(timeout), k, [requests[i] for i in part], beside,
                key=f"bptt-report-{token}-{k}-{resubmits[k]}", pure=False, retries=0,
            )  # fmt: skip

        from distributed import as_completed

        futures = {submit(k): k for k in range(len(parts))}
        pending = as_completed(list(futures))
        try:
            for fut in pending:
                k = futures.pop(fut)
                part = parts[k]
                try:
                    out = fut.result()
                except Exception as exc:
                    if _is_lost_workers(exc) and resubmits[k] < MAX_RESUBMITS:
                        resubmits[k] += 1
                        notes.append(
                            f"Dask batch {k} (configurations {part.start}..{part.stop - 1}) outlived its "
                            f"workers ({type(exc).__name__}); submitted again"
                        )
                        new = submit(k)
                        futures[new] = k
                        pending.add(new)
                        continue
                    if _is_lost_workers(exc):
                        notes.append(
                            f"Dask batch {k} (configurations {part.start}..{part.stop - 1}) was not run: "
                            f"its workers kept dying ({exc})"
                        )
                        for i in part:
                            replies[i] = Reply(status="not_run")
                        if on_progress is not None:
                            on_progress(len(part))
                        continue
                    raise SchedulerError(
                        f"--scheduler {scheduler}: a Dask worker could not run the sweep "
                        f"({type(exc).__name__}: {exc}); every worker needs manual-bptt[report] installed"
                    ) from exc
                if out.error:
                    raise TargetError(
                        f"{out.error} (on the Dask worker {out.worker}: the target must be "
                        "importable on every worker)"
                    )
                for j, i in enumerate(part):
                    replies[i] = out.replies[j]
                    refs[i] = out.refs[j]
                notes.extend(f"on the Dask worker {out.worker}: {m}" for m in out.notes)
                aborted |= out.aborted
                done_on[k] = out.worker
                if on_progress is not None:
                    on_progress(len(part))
        except BaseException:
            own_client.cancel(list(futures))
            raise
        notes[:0] = _retried(own_client, token, parts, done_on)
    finally:
        try:
            own_client.run(close_sweep, token)
        except Exception:  # a worker gone meanwhile: its processes went with it
            pass
        if client is None:
            own_client.close()
            if cluster is not None:
                cluster.close()
    return DaskOutcome(
        replies=[r if r is not None else Reply(status="not_run") for r in replies],
        refs=refs,
        notes=tuple(notes),
        aborted=aborted,
        workers=tuple(sorted(set(done_on.values()))),
        batch=size,
    )


def _retried(client: Any, token: str, parts: list[range], done_on: dict[int, str]) -> list[str]:
    """One note per batch that started more than once: where it was lost, where it finished."""
    try:
        events = client.get_events(EVENT_TOPIC)
    except Exception:  # an older scheduler without events: nothing to say
        return []
    starts: dict[int, list[str]] = {}
    for _, msg in events:
        if isinstance(msg, dict) and msg.get("token") == token:
            starts.setdefault(int(msg["batch"]), []).append(str(msg["worker"]))
    return retry_notes(starts, parts, done_on)


def retry_notes(starts: dict[int, list[str]], parts: list[range], done_on: dict[int, str]) -> list[str]:
    """Notes for the batches started more than once (``starts``: batch -> the workers where it
    started, in order; ``done_on``: batch -> the worker that finished it)."""
    out = []
    for k in sorted(starts):
        if len(starts[k]) < 2:
            continue
        lost = [w for w in starts[k][:-1]]
        part = parts[k]
        out.append(
            f"Dask batch {k} (configurations {part.start}..{part.stop - 1}) was retried: its worker "
            f"{', then '.join(lost)} was lost mid-batch; it ran again on {done_on.get(k, starts[k][-1])}"
        )
    return out
