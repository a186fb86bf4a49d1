"""``check-module``: a PyTorch recurrent layer (anyone's) against the hand-written float64 reference.

    contract   the layer contract: the module's configuration read, what is not checked yet,
               the likely cause of a mismatch (torch-free)
    worker     the module's side of a worker process: build it, call it as the case says
    cases      the random cases and the ways of calling a layer, the float64 reference and the
               baseline (torch's own module)
    session    the worker process, and each case evaluated against the reference and the baseline
    check      check_module and its result
    localize   where a failing layer goes wrong, seen from outside
    report     its files: report.json, report.md, lag_profile.png
"""
