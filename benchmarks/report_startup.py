"""Wall time of bptt_report.check for sweeps of several sizes with jobs=1 and jobs=2, with the
small-sweep rule (runner.PARALLEL_FROM) switched off, to find where extra processes pay:

    python benchmarks/report_startup.py [N ...]      (default: 50 300 600 1200)

Prints one line per size: the seconds with 1 and 2 jobs (plots and report writing excluded).
"""

from __future__ import annotations

import sys
import time

import bptt_report.runner as runner


def main(sizes: list[int]) -> None:
    runner.PARALLEL_FROM = 0
    for n in sizes:
        times = []
        for jobs in (1, 2):
            t0 = time.perf_counter()
            r = runner.check(examples=n, jobs=jobs, max_localized=0)
            times.append(time.perf_counter() - t0)
            assert r.ok, r.summary()
        print(f"examples {n:5d}: jobs 1 {times[0]:6.1f} s   jobs 2 {times[1]:6.1f} s", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 300, 600, 1200])
