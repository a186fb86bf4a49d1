"""bptt_report.check: run the sweep (optionally in parallel processes) and localize what fails.

    result = bptt_report.check("mypackage.rnn:bptt", quick=True)
    assert result.ok, result.summary()

Worker processes are started with "spawn" (safe with torch), each with one torch thread
(and so does the calling process while it checks); the target travels to them as its
"module:function" name.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from manual_bptt.testing import RNNConfig

from .checks import run_fd_check, run_oracle_checks
from .localize import localize
from .results import CheckResult, ConfigCheck, Localization
from .sweep import plan_configs, plan_fd_configs, sweep_size
from .targets import DEFAULT_TARGET, load_target, spec_of

#: A unit of work: ("oracle" or "finite_differences", id, configuration).
Task = tuple[str, int, RNNConfig]
#: A target as accepted by check(): a "module:function" name or the callable itself.
TargetLike = str | Callable[..., Any] | None


def usable_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    """Versions of python, numpy, torch and the other packages involved, and the platform."""
    import manual_bptt

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "manual_bptt": manual_bptt.__version__,
        "hypothesis": _version("hypothesis"),
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": str(usable_cpus()),
    }


def _resolve(target: TargetLike) -> tuple[str, Callable[..., Any], str | None]:
    """(description, callable, importable name or None) of a target."""
    if target is None:
        target = DEFAULT_TARGET
    if isinstance(target, str):
        return target, load_target(target), target
    if not callable(target):
        raise TypeError(f"target: expected a callable or 'module:function', got {type(target).__name__}")
    spec = spec_of(target)
    name = spec or f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    return name, target, spec


def run_tasks(target: str | Callable[..., Any], tasks: Sequence[Task]) -> list[ConfigCheck]:
    """Run a chunk of tasks in this process (the unit of work of a worker)."""
    fn = load_target(target) if isinstance(target, str) else target
    out: list[ConfigCheck] = []
    for kind, check_id, cfg in tasks:
        if kind == "oracle":
            out.extend(run_oracle_checks(fn, cfg, check_id))
        else:
            out.append(run_fd_check(fn, cfg, check_id))
    return out


def localize_task(target: str | Callable[..., Any], check: ConfigCheck) -> Localization:
    """Localize one failing check in this process (the unit of work of a worker)."""
    fn = load_target(target) if isinstance(target, str) else target
    return localize(fn, check)


def _init_worker() -> None:
    torch.set_num_threads(1)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one thread meanwhile (restored after): on these tiny matrices extra threads
    only add synchronization, about 10x slower on 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or a silent stand-in when disabled or tqdm is missing."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, unit="config", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    class _Silent:
        def update(self, n: int = 1) -> None:
            pass

        def close(self) -> None:
            pass

    return _Silent()


@contextmanager
def _pool(jobs: int) -> Iterator[Executor | None]:
    """A spawn-based process pool for jobs > 1 (None for 1); cancelled on interrupt."""
    if jobs <= 1:
        yield None
        return
    ex = ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    )
    try:
        yield ex
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _chunks(tasks: list[Task], jobs: int) -> list[list[Task]]:
    """Chunks of similar cost: about 8 per worker, interleaved so each mixes long and short T."""
    n = max(1, min(len(tasks), 8 * jobs))
    return [tasks[i::n] for i in range(n) if tasks[i::n]]


def _select(checks: list[ConfigCheck], limit: int) -> list[ConfigCheck]:
    """Failing checks to localize: the most informative first (oracle checks, most disagreeing
    arrays, then the smallest configuration), each adding an array not already covered."""
    failing = [c for c in checks if c.status == "fail"]
    failing.sort(key=lambda c: (c.kind != "oracle", -len(c.failing), c.size_key(), c.id))
    chosen: list[ConfigCheck] = []
    covered: set[str] = set()
    for c in failing:
        if len(chosen) >= limit:
            break
        names = set(c.failing) or {c.message}
        if not names <= covered:
            covered |= names
            chosen.append(c)
    return chosen


def check(
    target: TargetLike = None,
    *,
    seed: int = 0,
    examples: int | None = None,
    quick: bool = False,
    jobs: int = 1,
    progress: bool = False,
    max_localized: int = 3,
) -> CheckResult:
    """Check an implementation of BPTT against the PyTorch oracle, nn.RNN and finite differences.

    Args:
        target: the implementation: a callable with manual_bptt.bptt's signature, or its name
            "module:function"; None checks manual_bptt.bptt. It must return an object with
            .loss and .grads (U, W, V, b, c); .ds0 and .dxs are checked when present.
        seed: seeds the sweep (the configurations and their arrays).
        examples: number of oracle configurations (default: 3000, or 32 with ``quick``).
        quick: a small sweep of short sequences (a few seconds).
        jobs: worker processes (1: run here). With jobs > 1 the target must be importable
            by name (a module-level function).
        progress: show a progress bar on stderr.
        max_localized: how many disagreements (with distinct sets of arrays) to localize.

    Returns:
        CheckResult: ``.ok``, ``.summary()``, ``.assert_ok()``, ``.failures``, ``.localizations``.

    Raises:
        bptt_report.TargetError when a named target cannot be loaded; ValueError for bad
        arguments (including jobs > 1 with a target that cannot be imported by name).
    """
    for name, value, least in (("seed", seed, 0), ("jobs", jobs, 1), ("max_localized", max_localized, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
    if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int) or examples < 1):
        raise ValueError(f"examples: expected a positive integer, got {examples!r}")
    t0 = time.perf_counter()
    description, fn, spec = _resolve(target)
    if jobs > 1 and spec is None:
        raise ValueError(
            f"jobs={jobs}: the target {description} cannot be imported by name in worker processes; "
            "pass a module-level function (or its 'module:function' name), or jobs=1"
        )
    size = sweep_size(quick=quick, examples=examples)
    configs = plan_configs(seed, size)
    fd_configs = plan_fd_configs(seed, size)
    tasks: list[Task] = [("oracle", i, c) for i, c in enumerate(configs)]
    tasks += [("finite_differences", len(configs) + i, c) for i, c in enumerate(fd_configs)]
    carried: str | Callable[..., Any] = spec if jobs > 1 and spec is not None else fn

    checks: list[ConfigCheck] = []
    localizations: list[Localization] = []
    with _one_torch_thread(), _pool(jobs) as ex:
        bar = _progress(len(tasks), "checking", progress)
        try:
            if ex is None:
                for task in tasks:
                    checks.extend(run_tasks(carried, [task]))
                    bar.update(1)
            else:
                futures: dict[Future[list[ConfigCheck]], int] = {
                    ex.submit(run_tasks, carried, chunk): len(chunk) for chunk in _chunks(tasks, jobs)
                }
                for fut in as_completed(futures):
                    checks.extend(fut.result())
                    bar.update(futures[fut])
        finally:
            bar.close()
        checks.sort(key=lambda c: (c.id, c.kind))

        chosen = _select(checks, max_localized)
        if chosen:
            bar = _progress(len(chosen), "localizing", progress)
            try:
                if ex is None:
                    for c in chosen:
                        localizations.append(localize_task(carried, c))
                        bar.update(1)
                else:
                    loc_futures = [ex.submit(localize_task, carried, c) for c in chosen]
                    for fut in loc_futures:
                        localizations.append(fut.result())
                        bar.update(1)
            finally:
                bar.close()

    return CheckResult(
        target=description,
        seed=seed,
        size=size,
        jobs=jobs,
        checks=tuple(checks),
        localizations=tuple(localizations),
        environment=environment(),
        seconds=time.perf_counter() - t0,
    )
