"""manual_bptt.environment.describe(): the one description of the environment that results record."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import pytest

import manual_bptt
from manual_bptt import environment
from manual_bptt.environment import NOT_INSTALLED, describe, distribution_version

KEYS = {
    "python",
    "numpy",
    "blas",
    "platform",
    "machine",
    "cpu",
    "cpus",
    "torch",
    "hypothesis",
    "matplotlib",
    "jax",
    "manual_bptt",
}


def test_describe_reports_every_key_as_a_nonempty_string() -> None:
    env = describe()
    assert set(env) == KEYS
    for key, value in env.items():
        assert isinstance(value, str) and value, key


def test_describe_reports_this_interpreter_numpy_platform_and_own_version() -> None:
    env = describe()
    assert env["python"] == platform.python_version()
    assert env["numpy"] == np.__version__
    assert env["platform"] == platform.platform()
    assert env["machine"] == platform.machine()
    assert env["manual_bptt"] == manual_bptt.__version__


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this OS")
def test_cpus_are_the_ones_this_process_may_run_on() -> None:
    assert describe()["cpus"] == str(len(os.sched_getaffinity(0)))


def test_versions_from_metadata_are_the_ones_the_packages_report() -> None:
    import hypothesis
    import matplotlib
    import torch

    env = describe()
    assert env["torch"] == torch.__version__
    assert env["hypothesis"] == hypothesis.__version__
    assert env["matplotlib"] == matplotlib.__version__


def test_a_distribution_that_is_not_installed_reads_not_installed() -> None:
    assert distribution_version("no-such-distribution-for-manual-bptt") == NOT_INSTALLED
    assert distribution_version("numpy") == np.__version__


@pytest.mark.parametrize("package", ["torch", "hypothesis", "matplotlib", "jax"])
def test_describe_works_where_importing_a_reported_package_fails(package: str, monkeypatch) -> None:
    """describe() reads versions from metadata: with `import package` made to raise ImportError
    (a None entry in sys.modules), it still answers, with the installed version."""
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError):
        __import__(package)
    assert describe()[package] == distribution_version(package)


def test_blas_names_the_library_threadpoolctl_sees() -> None:
    from threadpoolctl import threadpool_info

    pools = [d for d in threadpool_info() if d["user_api"] == "blas"]
    assert pools, "numpy has loaded a BLAS"
    text = environment.blas()
    for d in pools:
        assert f"{d['internal_api']} {d['version']}" in text
    assert text.count("thread(s)") == len(pools)


def test_blas_without_threadpoolctl_says_so(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # importing it raises ImportError
    text = environment.blas()
    assert text.endswith("(threadpoolctl not installed)")
    assert describe()["blas"] == text
