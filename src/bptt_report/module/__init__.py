"""``check-module``: a PyTorch recurrent layer (anyone's) against the hand-written float64 reference.

    contract   the layer contract: the module's configuration read, its shape (layers,
               directions, projection, how it takes variable lengths), what is not checked, the
               likely cause of a mismatch (torch-free)
    worker     the module's side of a worker process: build it, describe it, call it as the case says
    cases      the random cases and the ways of calling a layer, the float64 reference and the
               baseline (torch's own module of the same shape)
    session    the worker process, the module's shape per size, and each case evaluated against
               the reference and the baseline
    layers     a stack's arrays by layer and direction
    check      check_module and its result
    localize   where a failing layer goes wrong, seen from outside
    report     its files: report.json, report.md, lag_profile.png
"""
