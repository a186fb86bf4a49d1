"""Running the code under test: the worker processes, their messages, and where the work runs.

    wire       the messages a worker sends back: JSON and raw arrays, never a pickle
    pool       the local worker processes (started, restarted, timed out, stopped)
    cluster    the sweep on a Dask cluster
    threads    the thread rule of every process that computes for a sweep
"""
