"""Running the code under test, for both products: the worker processes, their messages, where the
work runs. It knows neither product (each gives the pool a Program); numpy only.

    protocol   Program, Request, Reply, Hello: the messages between the checker and a worker
    wire       how a worker's messages travel: JSON and raw arrays, never a pickle; the framing
    worker     the one loop of every worker process: hello, then one reply per request
    supervisor the process between the checker and each worker: it ends the worker and all it
               started (a child subreaper, on Linux), when the checker lets go or the worker exits
    pool       the local worker processes (WorkerPool: started, restarted, timed out, stopped),
               their replies read without blocking, the code under test's output capped
    signals    Ctrl-C and SIGTERM belong to the checker's main thread
    threads    the thread rule of every process that computes for a sweep
    cluster    the sweep on a Dask cluster
"""
