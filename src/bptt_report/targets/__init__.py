"""The implementation under test: what it is, and what runs in its worker processes.

    contract   the target's contract: input forms, options, its declaration, loading it by name,
               calling it, reading its result
    worker     the target's side of a worker process: fresh copies, the input guard, finite
               differences of its own loss, the replies
    methods    manual_bptt's other derivations of the gradient, as targets (the cross-checks)
"""
