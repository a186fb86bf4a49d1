"""The sweep on a Dask cluster (bptt_report.run.cluster): the same checks, verdict and numbers as
--jobs 1 (bptt_report.run.threads), a Dask worker killed mid-batch has its batch retried (and the
result says so), and --scheduler without Dask installed says how to install it. One 2-worker
LocalCluster serves the module."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading

import pytest

import bptt_report
import dask_targets
from bptt_report import runner
from bptt_report.cli import EXIT_USAGE, main
from bptt_report.plan.sweep import SweepSize, plan_configs
from bptt_report.run import cluster as executors
from bptt_report.run import threads


def _comparable(result: bptt_report.CheckResult) -> dict:
    """report.json's content without what depends on timing or on where it ran."""
    data = result.to_dict()
    data.pop("environment")
    data["settings"].pop("jobs")
    data["summary"].pop("seconds")
    data.pop("notes")
    for c in data["checks"]:
        c.pop("seconds", None)
    return data


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as c:
        yield c


def test_a_sweep_on_a_local_cluster_gives_the_same_report_as_jobs_1(cluster):
    kw = dict(quick=True, examples=24, max_localized=1, seed=5)
    serial = bptt_report.check("broken_impls:sign_error", jobs=1, **kw)
    on_dask = bptt_report.check("broken_impls:sign_error", scheduler=cluster.scheduler_address, **kw)
    assert on_dask.verdict == serial.verdict == "FAIL"
    assert _comparable(on_dask) == _comparable(serial)
    assert [loc.verdict for loc in on_dask.localizations] == [loc.verdict for loc in serial.localizations]


#: Sizes of the thorough sweep (T up to 128 only, to keep the references cheap).
LONG_AND_WIDE = SweepSize(examples=400, max_T=128, max_B=6, max_D=12, max_H=64, max_K=12, fd_examples=1)


def _long_and_wide(seed, size, caps):
    """Configurations of thorough sizes whose dW sums a product over T * B >= 300 rows at H
    >= 32 (where a BLAS on two threads adds in another order than on one), with cheap
    references (full BPTT or a window of 0 or 1 steps): the first ``size.examples`` of them."""
    drawn = plan_configs(seed, LONG_AND_WIDE, caps)
    big = [c for c in drawn if c.T * (c.B or 1) >= 300 and c.H >= 32 and c.truncate in (None, 0, 1)]
    return big[: size.examples]


def test_long_and_wide_configurations_give_the_same_numbers_on_dask_and_with_jobs_1(cluster, monkeypatch):
    # the Dask nanny starts its workers with one BLAS thread; a shell leaves every CPU to it
    monkeypatch.setattr(runner, "plan_configs", _long_and_wide)
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    kw = dict(examples=24, max_localized=0, seed=0)
    serial = bptt_report.check(jobs=1, **kw)
    on_dask = bptt_report.check(scheduler=cluster.scheduler_address, **kw)
    assert serial.verdict == on_dask.verdict and not serial.failures, serial.summary()  # too few for PASS
    assert {c.config.cell for c in serial.checks} == {"rnn", "gru", "lstm"}
    assert min(c.config.T * (c.config.B or 1) for c in serial.checks if c.kind == "oracle") >= 300
    assert _comparable(on_dask) == _comparable(serial)  # every relative error, to the last bit


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


def test_the_blas_limit_holds_while_any_thread_computes_references():
    import torch

    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with threads.fixed(), threads.fixed():
        assert torch.get_num_threads() == threads.THREADS and set(_blas_threads()) == {threads.THREADS}
    assert (torch.get_num_threads(), _blas_threads()) == (torch_before, blas_before)
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with threads.fixed():
            entered.set()
            leave.wait(10)

    helper = threading.Thread(target=other)
    with threads.fixed():
        helper.start()
        entered.wait(10)
    try:  # out first, while the other thread is still inside: its limit stays
        assert set(_blas_threads()) == {threads.THREADS} and torch.get_num_threads() == torch_before
    finally:
        leave.set()
        helper.join()
    env = threads.environment({"OMP_NUM_THREADS": "8", "PATH": "/bin"})
    assert env["PATH"] == "/bin" and all(env[v] == str(threads.THREADS) for v in threads.THREAD_VARIABLES)


def test_a_dask_worker_killed_mid_batch_has_its_batch_retried(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("BPTT_TEST_KILL_MARKER", str(tmp_path / "killed"))
    monkeypatch.setenv("BPTT_TEST_CHECKER_PID", str(os.getpid()))
    # the Dask workers started before the variables were set: hand them over
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        client.run(
            dask_targets.set_environ,
            {k: os.environ[k] for k in ("BPTT_TEST_KILL_MARKER", "BPTT_TEST_CHECKER_PID")},
        )
    result = bptt_report.check("dask_targets:kills_its_dask_worker_once", quick=True, examples=24,
                               scheduler=cluster.scheduler_address)  # fmt: skip
    assert (tmp_path / "killed").exists()  # a Dask worker really was killed
    assert result.verdict == "PASS", result.summary()
    assert len(result.checked) == 24
    assert any("was retried" in n and "lost mid-batch" in n for n in result.notes), result.notes
    assert "was retried" in result.summary()


def test_a_target_the_dask_workers_cannot_import_is_a_usage_error(cluster, tmp_path, monkeypatch):
    # importable by the checker's own worker (the probes) but not under a Dask worker
    (tmp_path / "only_here_xyz.py").write_text(
        "import os\n"
        "from dask_targets import pool_process\n"
        f"if pool_process() != {os.getpid()}:\n"
        "    raise ModuleNotFoundError('only_here_xyz is on the checker machine only')\n"
        "from manual_bptt import bptt\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        bptt_report.TargetError, match=r"on the Dask worker .*importable on every worker"
    ) as exc:
        bptt_report.check("only_here_xyz:bptt", quick=True, examples=4, scheduler=cluster.scheduler_address)
    assert "on the checker machine only" in str(exc.value)


def test_batches_are_sized_to_the_workers_and_cover_every_request():
    assert executors.batch_size(3040, 2) == executors.MAX_BATCH
    assert executors.batch_size(45, 2) == executors.MIN_BATCH
    assert executors.batch_size(3, 2) == 3
    assert executors.batch_size(1000, 8) == 32
    parts = executors.batches(45, 8)
    assert [i for p in parts for i in p] == list(range(45)) and len(parts[-1]) == 5


def test_retry_notes_name_the_lost_worker_and_where_the_batch_ran_again():
    parts = executors.batches(20, 8)
    starts = {0: ["tcp://a"], 1: ["tcp://a", "tcp://b"], 2: ["tcp://b"]}
    (note,) = executors.retry_notes(starts, parts, {0: "tcp://a", 1: "tcp://b", 2: "tcp://b"})
    assert note == (
        "Dask batch 1 (configurations 8..15) was retried: its worker tcp://a was lost mid-batch; "
        "it ran again on tcp://b"
    )
    assert executors.retry_notes({0: ["tcp://a"]}, parts, {0: "tcp://a"}) == []


@pytest.fixture
def without_dask(monkeypatch):
    for name in ("distributed", "dask"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_scheduler_without_dask_says_how_to_install_it(without_dask, tmp_path, capsys):
    code = main(["report", "--quick", "--no-progress", "--scheduler", "local", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "--scheduler needs Dask: pip install 'manual-bptt[dist]'" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(executors.DaskMissing, match=r"manual-bptt\[dist\]"):
        bptt_report.check(quick=True, scheduler="local")


def test_check_without_a_scheduler_needs_no_dask(without_dask):
    result = bptt_report.check(quick=True, examples=4)
    assert dataclasses.asdict(result.size)["examples"] == 4 and not result.failures
