"""bptt_report.check, as its phases: probe what the target supports, plan the sweep, run it, judge
each reply, cross-check manual_bptt's other methods (thorough), localize what fails.

    result = bptt_report.check("mypackage.rnn:bptt", quick=True)
    result.assert_ok()

The target never runs in this process: it runs in worker processes (bptt_report.targets.worker,
fresh interpreters even for jobs=1, never importing torch or the oracle), which rebuild each
configuration's arrays from the configuration, hand the target fresh copies, and send back plain
arrays. The oracle and nn.RNN run here (jobs=1) or in separate oracle processes (jobs > 1) on
arrays rebuilt the same way, and the comparison runs here. A target that exits, crashes or runs
past the timeout ends only its worker, which is restarted.

With ``scheduler=`` the sweep's configurations run on a Dask cluster instead
(bptt_report.run.cluster: the target still in worker processes of its own there, the oracle in
the Dask worker processes); the probes, the comparison and the localization stay here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from manual_bptt.environment import describe, usable_cpus
from manual_bptt.problems import RNNConfig

from .cells import CELLS
from .errors import UsageError
from .judge.checks import fd_check, oracle_checks
from .judge.localize import localize, select
from .judge.references import References, references_batch, references_of, sweep_references
from .judge.results import CheckResult, ConfigCheck, Localization
from .plan.profiles import conditioned, profile_size
from .plan.sweep import MAX_EXAMPLES, SweepSize, plan_configs, plan_fd_configs, split_examples
from .run import threads
from .run.pool import DEFAULT_TIMEOUT, JOBS_PER_CPU, WorkerPool, max_jobs
from .run.protocol import Reply, Request
from .run.signals import block_in_this_thread
from .targets.contract import DEFAULT_TARGET, Capabilities, spec_of, split_spec
from .targets.probe import capabilities
from .targets.replies import misbehaviour, printed
from .targets.worker import program

#: A target as accepted by check(): a "module:function" name or the callable itself.
TargetLike = str | Callable[..., Any] | None
#: A probe in which the target misbehaved: (the feature probed, its configuration, the reply).
Probe = tuple[str, RNNConfig, Reply]
#: A sweep of fewer requests (oracle and finite-difference configurations) runs on one target
#: worker with the oracle in this process, whatever ``jobs`` says: starting the oracle processes
#: (spawn, import torch) costs seconds, which only a sweep about this big wins back on 2 cores
#: (measured: docs/report.md, "Where the sweep runs").
PARALLEL_FROM = 1000


def effective_jobs(jobs: int, requests: int) -> int:
    """The processes worth starting for a sweep of ``requests``: ``jobs``, or 1 below PARALLEL_FROM."""
    return jobs if requests >= PARALLEL_FROM else 1


def environment() -> dict[str, str]:
    """Versions of python, numpy, torch and the other packages involved, the BLAS and the platform
    (manual_bptt.environment.describe, the one description shared with the benchmarks)."""
    return describe()


def _resolve(target: TargetLike) -> str:
    """The importable "module:function" name of a target (nothing is imported here).

    Raises:
        TargetError for a malformed name; UsageError (a ValueError) for a callable that cannot
        be found again by name (a lambda, a nested function): the target runs in another process.
    """
    if target is None:
        return DEFAULT_TARGET
    if isinstance(target, str):
        split_spec(target)
        return target
    if not callable(target):
        raise TypeError(f"target: expected a callable or 'module:function', got {type(target).__name__}")
    spec = spec_of(target)
    if spec is None:
        name = getattr(target, "__qualname__", repr(target))
        raise UsageError(
            f"target: {name} cannot be imported by name, and the target runs in a separate process; "
            "pass a module-level function (or its 'module:function' name)"
        )
    return spec


#: The configurations whose failing checks keep what the target printed (ConfigCheck.output).
OUTPUTS_KEPT = 20
#: Seconds between two progress lines when stderr is not a terminal (a CI log).
PROGRESS_EVERY = 10.0


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """Progress on stderr: a tqdm bar on a terminal (when tqdm is installed), else _Lines; a
    silent stand-in when disabled."""
    if enabled and _terminal():
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, unit="config", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass
    return _Lines(total, desc) if enabled else _Silent()


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _say(text: str) -> None:
    """One line of progress on stderr."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines:
    """Progress for a log, which a bar would fill with carriage returns: a line when the work
    starts, one every PROGRESS_EVERY seconds while it goes on (from a thread of its own, so
    also while no configuration finishes), one when it is done."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self.t0 = time.monotonic()
        self.done = threading.Event()
        _say(f"{desc}: {total} configurations")
        threading.Thread(target=self._every, name="bptt_report progress", daemon=True).start()

    def _every(self) -> None:
        block_in_this_thread()
        while not self.done.wait(PROGRESS_EVERY):
            share = 100 * self.n // max(1, self.total)
            _say(f"{self.desc}: {self.n} of {self.total} ({share}%), {time.monotonic() - self.t0:.0f} s")

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.done.set()
        _say(f"{self.desc}: {self.n} of {self.total} done in {time.monotonic() - self.t0:.1f} s")


def _in_thread(pool: WorkerPool, requests: list[Request], bar: Any) -> list[Reply]:
    """pool.run in a helper thread, with SIGINT and SIGTERM left to the main thread (and
    blocked in the worker processes this thread starts)."""
    block_in_this_thread()
    return pool.run(requests, bar.update)


def parse_cells(cells: Any) -> tuple[str, ...]:
    """The requested cells, in the order rnn, gru, lstm: "all", one name, or several.

    Raises:
        UsageError (a ValueError) naming ``cells`` and what is wrong.
    """
    names = list(CELLS) if cells == "all" else [cells] if isinstance(cells, str) else cells
    if not isinstance(names, (list, tuple)) or not names or any(c not in CELLS for c in names):
        raise UsageError(f"cells: expected 'all' or some of {', '.join(CELLS)}, got {cells!r}")
    return tuple(c for c in CELLS if c in names)


def _check_arguments(seed: Any, examples: Any, jobs: Any, max_localized: Any, timeout: Any) -> None:
    for name, value, least in (("seed", seed, 0), ("jobs", jobs, 1), ("max_localized", max_localized, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{name}: expected an integer >= {least}, got {value!r}")
    if jobs > max_jobs():
        raise UsageError(
            f"jobs: at most {max_jobs()} ({JOBS_PER_CPU} x the {usable_cpus()} usable CPUs), got {jobs}"
        )
    if examples is not None and (
        isinstance(examples, bool) or not isinstance(examples, int) or not 1 <= examples <= MAX_EXAMPLES
    ):
        raise UsageError(f"examples: expected an integer in 1..{MAX_EXAMPLES}, got {examples!r}")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (math.isfinite(timeout) and timeout > 0)
    ):
        raise UsageError(f"timeout: expected a positive number of seconds, got {timeout!r}")


def check(
    target: TargetLike = None,
    *,
    seed: int = 0,
    examples: int | None = None,
    quick: bool = False,
    jobs: int = 1,
    progress: bool = False,
    max_localized: int = 3,
    timeout: float = DEFAULT_TIMEOUT,
    cells: str | tuple[str, ...] | list[str] = "all",
    scheduler: str | None = None,
    profile: str | None = None,
) -> CheckResult:
    """Check an implementation of BPTT against the PyTorch oracle, the native torch module
    (nn.RNN / nn.GRU / nn.LSTM) and finite differences, on each cell.

    Args:
        target: the implementation: its name "module:function", or a module-level callable
            (found again by name: it runs in worker processes); None checks manual_bptt.bptt.
            Its contract and how it declares what it supports: bptt_report.targets.contract.
        seed: seeds the sweep (the configurations and their arrays).
        examples: number of oracle configurations (default: 3000, or 32 with ``quick``), at
            most MAX_EXAMPLES.
        quick: a small sweep of short sequences (a few seconds).
        jobs: worker processes for the target, and as many for the oracle when > 1 (at most
            JOBS_PER_CPU x the usable CPUs). The target runs in a worker process even with 1.
            A sweep smaller than PARALLEL_FROM runs on one (effective_jobs). With
            ``scheduler="local"``: the number of Dask workers.
        progress: show progress on stderr: a bar on a terminal, else a line when each phase
            starts, every PROGRESS_EVERY seconds and when it ends (a CI log is not left silent).
        max_localized: how many disagreements (with distinct sets of arrays) to localize.
        timeout: seconds one configuration may take in the target; past it, its process is
            killed and that is a failure.
        cells: "all" (the default: the Elman RNN, the GRU and the LSTM), "rnn", "gru", "lstm",
            or a list of them. The examples are split evenly over the cells the target supports
            (sweep.split_examples); a cell it does not support is listed as unsupported.
        scheduler: run the sweep on a Dask distributed cluster: the scheduler's address, or
            "local" for a LocalCluster of ``jobs`` workers here (bptt_report.run.cluster; needs
            the ``dist`` extra). The probes and the localization still run here.
        profile: "quick", "default" or "thorough" (bptt_report.plan.profiles); ``quick=True`` is
            "quick".

    Returns:
        CheckResult: ``.verdict`` ("PASS", "FAIL", "INSUFFICIENT"), ``.ok``, ``.summary()``,
        ``.assert_ok()`` (raises unless PASS), ``.failures``, ``.localizations``.

    Raises:
        bptt_report.TargetError when the target cannot be loaded or declares something
        invalid; bptt_report.errors.UsageError (a ValueError) for bad arguments.
    """
    _check_arguments(seed, examples, jobs, max_localized, timeout)
    wanted = parse_cells(cells)
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler:
            raise UsageError(f"scheduler: expected an address or 'local', got {scheduler!r}")
        from .run.cluster import require_dask

        require_dask()
    t0 = time.perf_counter()
    spec = _resolve(target)
    size = profile_size(profile, quick=quick, examples=examples)
    timeout = float(timeout)
    with WorkerPool(program(spec), workers=1 if scheduler is not None else jobs, timeout=timeout) as pool:
        if progress:
            _say(f"probing what {spec} supports ({', '.join(wanted)})")
        every, bad_probes = _probe(pool, wanted, named=cells != "all")
        configs, fd_configs = _plan(seed, size, every, profile)
        replies, refs, dask_aborted = _run(pool, spec, configs, fd_configs, jobs, scheduler, progress)
        checks = _judge(configs, fd_configs, replies, refs)
        if profile == "thorough":
            checks += _cross_check(pool, spec, configs, refs)
        checks += _probe_checks(bad_probes, first_id=len(configs) + len(fd_configs))
        checks.sort(key=lambda c: (c.id, c.kind))
        checks = _fewer_outputs(checks)
        aborted = pool.aborted or dask_aborted
        localizations = [] if aborted else _localize(pool, checks, max_localized, progress)
    return CheckResult(
        target=spec,
        seed=seed,
        size=size,
        jobs=jobs,
        checks=tuple(checks),
        localizations=tuple(localizations),
        environment=environment(),
        seconds=time.perf_counter() - t0,
        capabilities=next((c for c in every if c.cell == "rnn"), every[0]),
        notes=tuple(pool.notes),
        timeout=timeout,
        cell_capabilities=tuple(every),
    )


# ---------------------------------------------------------------------------------------------
# The phases of check(), in order
# ---------------------------------------------------------------------------------------------
def _probe(pool: WorkerPool, cells: tuple[str, ...], named: bool) -> tuple[list[Capabilities], list[Probe]]:
    """1. What the target supports, per requested cell (targets.probe), and the probes in which it
    misbehaved. On cells not asked for by name (``named`` False) an input form whose probe
    raises is unsupported, unless that leaves no cell at all: a target that raises on every
    cell is probed again as if each had been named, so that what it raises is a failure."""
    every: list[Capabilities] = []
    misbehaved: list[Probe] = []
    for cell in cells:
        caps, bad = capabilities(pool, pool.hello, cell, named=named)
        every.append(caps)
        misbehaved += bad
    if not named and not any(c.checkable for c in every) and any(c.declined for c in every):
        for i, caps in enumerate(every):
            if caps.declined:
                every[i], bad = capabilities(pool, pool.hello, caps.cell, named=True)
                misbehaved += bad
    return every, misbehaved


def _plan(
    seed: int, size: SweepSize, every: list[Capabilities], profile: str | None
) -> tuple[list[RNNConfig], list[RNNConfig]]:
    """2. The sweep (plan.sweep): each supported cell's share of the oracle and finite-difference
    configurations, inside what the target supports; the thorough profile's conditioned."""
    share = split_examples(size.examples, tuple(c.cell for c in every if c.checkable))
    configs: list[RNNConfig] = []
    fd_configs: list[RNNConfig] = []
    for c in every:
        if c.checkable:
            n = share[c.cell]
            fd = max(1, round(size.fd_examples * n / size.examples))
            cell_size = dataclasses.replace(size, examples=n, fd_examples=fd)
            configs += plan_configs(seed, cell_size, c)
            fd_configs += plan_fd_configs(seed, cell_size, c)
    if profile == "thorough":
        configs = conditioned(configs)
    return configs, fd_configs


def _run(
    pool: WorkerPool,
    spec: str,
    configs: list[RNNConfig],
    fd_configs: list[RNNConfig],
    jobs: int,
    scheduler: str | None,
    progress: bool,
) -> tuple[list[Reply], list[References], bool]:
    """3. The target's reply to every configuration, and the references of the oracle ones: on the
    local pool (the references meanwhile here or in oracle processes), or on a Dask cluster.
    Also whether a Dask worker's pool stopped running the target."""
    requests = [Request("call", c) for c in configs] + [Request("fd", c) for c in fd_configs]
    bar = _progress(len(requests), "checking", progress)
    try:
        if scheduler is not None:
            from .run.cluster import dask_sweep

            outcome = dask_sweep(
                scheduler, program(spec), requests, sweep_references, jobs=jobs, timeout=pool.timeout,
                on_progress=bar.update,
            )  # fmt: skip
            pool.notes.extend(outcome.notes)
            return outcome.replies, outcome.refs[: len(configs)], outcome.aborted
        pool.workers = effective_jobs(jobs, len(requests))
        with threads.fixed(), ThreadPoolExecutor(1) as helper:
            fut = helper.submit(_in_thread, pool, requests, bar)
            try:
                refs = references_of(configs, pool.workers)
                replies = fut.result()
            except BaseException:
                pool.stop.set()
                raise
        return replies, refs, False
    finally:
        bar.close()


def _judge(
    configs: list[RNNConfig], fd_configs: list[RNNConfig], replies: list[Reply], refs: list[References]
) -> list[ConfigCheck]:
    """4. Each reply judged (judge.checks): the oracle configurations against the oracle (and the
    native module), the finite-difference ones against their differences; not those not run."""
    n = len(configs)
    checks: list[ConfigCheck] = []
    for i, (cfg, reply, ref) in enumerate(zip(configs, replies[:n], refs, strict=True)):
        if reply.status != "not_run":
            checks.extend(oracle_checks(i, cfg, reply, ref))
    for j, (cfg, reply) in enumerate(zip(fd_configs, replies[n:], strict=True)):
        if reply.status != "not_run":
            checks.append(fd_check(n + j, cfg, reply))
    return checks


def _cross_check(
    pool: WorkerPool, spec: str, configs: list[RNNConfig], refs: list[References]
) -> list[ConfigCheck]:
    """5. The thorough profile: manual_bptt's other derivations against the same references
    (judge.crosschecks; none for another target); their notes join the pool's."""
    from .judge.crosschecks import cross_checks

    checks, notes = cross_checks(spec, configs, list(refs), pool.timeout)
    pool.notes.extend(notes)
    return checks


def _probe_checks(bad_probes: list[Probe], first_id: int) -> list[ConfigCheck]:
    """6. The probes in which the target misbehaved, as failing "probe" checks numbered from
    ``first_id`` (after the sweep's)."""
    checks = []
    for k, (feature, cfg, reply) in enumerate(bad_probes):
        _, msg, tb, _ = misbehaviour(reply, f"the probe of {feature}") or ("", "", "", ())
        said = printed(reply)
        checks.append(ConfigCheck(first_id + k, "probe", cfg, "fail", (), msg, (), 0.0, tb, output=said))
    return checks


def _fewer_outputs(checks: list[ConfigCheck]) -> list[ConfigCheck]:
    """The target's output kept on the failing checks of the first OUTPUTS_KEPT configurations
    that printed, left out of the others (a target that prints much and fails everywhere would
    otherwise fill report.json with 64 KiB per check)."""
    ids = sorted({c.id for c in checks if c.output})[:OUTPUTS_KEPT]
    return [c if not c.output or c.id in ids else dataclasses.replace(c, output="") for c in checks]


def _localize(pool: WorkerPool, checks: list[ConfigCheck], limit: int, progress: bool) -> list[Localization]:
    """7. Where the most informative failures sit (judge.localize), the target rerun in the pool."""
    chosen = select(checks, limit)
    localizations: list[Localization] = []
    if chosen:
        bar = _progress(len(chosen), "localizing", progress)
        try:
            with threads.fixed():
                for c in chosen:
                    localizations.append(localize(pool.run, c))
                    bar.update(1)
        finally:
            bar.close()
    return localizations


def replay(target: TargetLike, cfg: RNNConfig, *, timeout: float = DEFAULT_TIMEOUT) -> list[ConfigCheck]:
    """The target on one configuration (in a worker process) against the oracle and nn.RNN:
    the checks, as in the sweep (``manual-bptt report --replay``)."""
    _check_arguments(0, None, 1, 0, timeout)
    with WorkerPool(program(_resolve(target)), workers=1, timeout=float(timeout)) as pool:
        (reply,) = pool.run([Request("call", cfg)])
    with threads.fixed():
        refs = references_batch([cfg])[0]
    return oracle_checks(0, cfg, reply, refs)
