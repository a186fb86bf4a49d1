"""The implementation under test (the *target* of ``manual-bptt report``): what it is, what runs in
its worker processes, what it supports. numpy only: none of it imports torch or the oracle.

    contract   what a target is: input forms, options, its declaration, loading it by name,
               calling it, reading its result; a configuration's arrays
    worker     its side of a worker process: fresh copies, the result read twice, the inputs
               sent back, finite differences of its own loss, the replies
    replies    its reply read in the checker: the arrays, or what it did instead; what came
               back judged there (the inputs against the checker's own, the two reads)
    probe      what it supports, per cell: declared, in the signature, or probed
    methods    manual_bptt's other derivations of the gradient, as targets (the cross-checks)
"""
