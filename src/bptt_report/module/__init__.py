"""``check-module``: a PyTorch recurrent layer (anyone's) against the hand-written float64 reference.

    worker     the module's side of a worker process: build it, one forward and backward
    session    the random cases, the reference and the baseline, the worker processes
    check      check_module and its result
    localize   where a failing layer goes wrong, seen from outside
    report     its files: report.json, report.md, lag_profile.png
"""
