"""The benchmark runner's pieces (benchmarks/run.py is the command line over them).

    config       sizes and run settings (FULL, QUICK)
    harness      Contender, calibrate, round_robin, stats, paired_ratio: timing that knows no model
    names        the contenders' names
    contenders   who is timed: the model contenders of each cell, the GEMMs, the FLOP count (LINEUP)
    jaxpeer      JAX's losses (Elman, GRU, LSTM) over lax.scan, XLA's threads, ahead-of-time compiling
    gated        the gated cells' contenders: nn.GRU / nn.LSTM, JAX, ours once manual_bptt has them
    floor        products_alone: the matrix products of one bptt call, and nothing else
    groups       one (cell, size, dtype): build the lineup, check the losses, time, summarise
    scaling      time against T (bptt, decompose, rtrl) and peak memory of bptt
    targets      the issue's targets, checked against the results
    environment  manual_bptt.environment.describe() plus what only a benchmark knows
    machine      what the numbers owe to the machine: CPU, vector extensions, both BLAS, the floor
    tables       results.md; plots: scaling.png

A new contender (another library, another cell's modules) is a factory in contenders.LINEUP[cell]
that returns Contender objects with a role (and peer=True for another library's implementation
of the same outputs): groups checks the loss of every MODEL contender against OURS (without
OURS, against the first of them), reports ours / theirs for every MODEL and FLOOR contender and
ours / the fastest peer, and the tables list whatever the groups hold. The harness and the
tables need no change.
"""
