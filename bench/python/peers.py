"""The Python pools the pool scenarios measure, behind one small interface.

A pool script is run as ``python SCRIPT VARIANT ITERS [CONFIG]``. CONFIG
names the peer, and optionally its start method, as ``PEER`` or
``PEER/METHOD``:

=================  =====================================================
PEER               what runs (default start method)
=================  =====================================================
multiprocessing    ``multiprocessing.Pool(2)`` (fork)
futures            ``concurrent.futures.ProcessPoolExecutor(2)`` (fork)
mpire              ``mpire.WorkerPool(n_jobs=2)`` (fork)
mpire+state        the same with ``use_worker_state=True``: the task takes
                   the worker's state dict first (and counts in it)
loky               ``loky.get_reusable_executor(max_workers=2)`` (loky)
pebble             ``pebble.ProcessPool(max_workers=2)`` (fork); every
                   task is scheduled with a timeout
joblib             ``joblib.Parallel(n_jobs=2)`` (its loky backend)
=================  =====================================================

Without CONFIG, the peer is multiprocessing with VARIANT as its start
method (how the scripts were run before the add-ons came).

Every peer offers the same four operations:

- ``map(f, items, chunksize)``: the results in order; ``chunksize=None`` is
  the peer's default chunking (for the executors, whose default is 1,
  multiprocessing's: ``ceil(len / (4 * workers))``);
- ``unordered(f, items)``: an iterator of results as they arrive, one task
  per item;
- ``submit_all(f, items)``: every task in flight, then every result;
- ``apply(f)``: one call, its result.

The add-ons are imported only when asked for, so that a machine without
them still runs the multiprocessing and futures configurations.
"""

import concurrent.futures
import functools
import math
import multiprocessing
import os
import sys

WORKERS = 2

# Long enough never to fire: pebble is measured with a timeout armed, as
# its users run it, not with one that stops tasks.
PEBBLE_TIMEOUT = 600.0

DEFAULT_METHOD = {
    "multiprocessing": "fork",
    "futures": "fork",
    "mpire": "fork",
    "mpire+state": "fork",
    "loky": "loky",
    "pebble": "fork",
    "joblib": "loky",
}


def square(x):
    return x * x


def noop():
    pass


def parse(variant, argv=None):
    """(peer, method) from the command line's optional CONFIG."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 4:
        return "multiprocessing", variant
    peer, _, method = argv[3].partition("/")
    if peer not in DEFAULT_METHOD:
        sys.exit(f"unknown peer {peer!r}; known: {', '.join(DEFAULT_METHOD)}")
    return peer, method or DEFAULT_METHOD[peer]


def default_chunksize(n):
    """multiprocessing.Pool.map's default chunking, for WORKERS workers."""
    return max(1, math.ceil(n / (4 * WORKERS)))


def _with_state(f, state, x):
    """An mpire task with ``use_worker_state``: touches the state, then f."""
    state["n"] = state.get("n", 0) + 1
    return f(x)


def _call0(f, _):
    return f()


class _Multiprocessing:
    def __init__(self, method):
        self.pool = multiprocessing.get_context(method).Pool(WORKERS)

    def map(self, f, items, chunksize):
        return self.pool.map(f, items, chunksize=chunksize)

    def unordered(self, f, items):
        return self.pool.imap_unordered(f, items, chunksize=1)

    def submit_all(self, f, items):
        results = [self.pool.apply_async(f, (x,)) for x in items]
        return [r.get() for r in results]

    def apply(self, f):
        return self.pool.apply(f)

    def close(self):
        self.pool.terminate()
        self.pool.join()


class _Executor:
    """concurrent.futures.ProcessPoolExecutor and loky's executor."""

    def __init__(self, executor):
        self.ex = executor

    def map(self, f, items, chunksize):
        if chunksize is None:
            chunksize = default_chunksize(len(items))
        return list(self.ex.map(f, items, chunksize=chunksize))

    def unordered(self, f, items):
        futures = [self.ex.submit(f, x) for x in items]
        return (fut.result() for fut in concurrent.futures.as_completed(futures))

    def submit_all(self, f, items):
        futures = [self.ex.submit(f, x) for x in items]
        return [fut.result() for fut in concurrent.futures.as_completed(futures)]

    def apply(self, f):
        return self.ex.submit(f).result()

    def close(self):
        self.ex.shutdown(wait=True)


def _futures(method):
    ctx = multiprocessing.get_context(method)
    return _Executor(concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx))


def _loky(method):
    import loky

    # A fresh executor: the pool scenarios time their own workers.
    ex = loky.get_reusable_executor(max_workers=WORKERS, context=method, reuse=False)
    return _Executor(ex)


class _Mpire:
    def __init__(self, method, state):
        import mpire

        self.state = state
        self.pool = mpire.WorkerPool(n_jobs=WORKERS, start_method=method, use_worker_state=state)
        self.pool.__enter__()

    def _f(self, f):
        return functools.partial(_with_state, f) if self.state else f

    def map(self, f, items, chunksize):
        return self.pool.map(self._f(f), items, chunk_size=chunksize)

    def unordered(self, f, items):
        return self.pool.imap_unordered(self._f(f), items, chunk_size=1)

    def submit_all(self, f, items):
        g = self._f(f)
        results = [self.pool.apply_async(g, (x,)) for x in items]
        return [r.get() for r in results]

    def apply(self, f):
        if self.state:
            return self.pool.apply(self._f(functools.partial(_call0, f)), (None,))
        return self.pool.apply(f)

    def close(self):
        self.pool.__exit__(None, None, None)


class _Pebble:
    def __init__(self, method):
        import pebble

        ctx = multiprocessing.get_context(method)
        self.pool = pebble.ProcessPool(max_workers=WORKERS, context=ctx)

    def map(self, f, items, chunksize):
        if chunksize is None:
            chunksize = default_chunksize(len(items))
        future = self.pool.map(f, items, chunksize=chunksize, timeout=PEBBLE_TIMEOUT)
        return list(future.result())

    def _schedule(self, f, items):
        return [self.pool.schedule(f, args=(x,), timeout=PEBBLE_TIMEOUT) for x in items]

    def unordered(self, f, items):
        futures = self._schedule(f, items)
        return (fut.result() for fut in concurrent.futures.as_completed(futures))

    def submit_all(self, f, items):
        futures = self._schedule(f, items)
        return [fut.result() for fut in concurrent.futures.as_completed(futures)]

    def apply(self, f):
        return self.pool.schedule(f, timeout=PEBBLE_TIMEOUT).result()

    def close(self):
        self.pool.close()
        self.pool.join()


class _Joblib:
    def __init__(self, method):
        import joblib

        # joblib's loky backend starts its workers with loky's own method,
        # a fork + exec of a fresh interpreter: spawn, in the harness's rows.
        if method not in ("loky", "spawn"):
            sys.exit(f"joblib runs on its loky backend here, not {method!r}")
        self.joblib = joblib
        self.parallel = joblib.Parallel(n_jobs=WORKERS)
        self.parallel.__enter__()

    def map(self, f, items, chunksize):
        delayed = self.joblib.delayed(f)
        with self.joblib.Parallel(n_jobs=WORKERS, batch_size=chunksize or "auto") as par:
            return par(delayed(x) for x in items)

    def unordered(self, f, items):
        delayed = self.joblib.delayed(f)
        par = self.joblib.Parallel(
            n_jobs=WORKERS, batch_size=1, return_as="generator_unordered"
        )
        return par(delayed(x) for x in items)

    def submit_all(self, f, items):
        return self.map(f, items, 1)

    def apply(self, f):
        return self.parallel([self.joblib.delayed(f)()])[0]

    def close(self):
        self.parallel.__exit__(None, None, None)
        # joblib keeps its loky workers for the next call: stop them, so
        # that the next pool starts afresh.
        from joblib.externals.loky import reusable_executor

        if reusable_executor._executor is not None:
            reusable_executor._executor.shutdown(wait=True)


def open_pool(peer, method):
    """A pool of WORKERS workers (not warmed up); ``close()`` stops it."""
    if peer == "multiprocessing":
        return _Multiprocessing(method)
    if peer == "futures":
        return _futures(method)
    if peer in ("mpire", "mpire+state"):
        return _Mpire(method, peer == "mpire+state")
    if peer == "loky":
        return _loky(method)
    if peer == "pebble":
        return _Pebble(method)
    if peer == "joblib":
        return _Joblib(method)
    raise ValueError(peer)


def warm_tasks():
    """Tasks a pool runs before it is timed: 1 000, or 50 under the
    harness's --quick (MULTIPROC_BENCH_QUICK), a smoke test."""
    return 50 if os.environ.get("MULTIPROC_BENCH_QUICK") else 1000


class warm:
    """``with warm(peer, method) as p``: a pool that has run
    ``warm_tasks()`` tasks."""

    def __init__(self, peer, method):
        self.pool = open_pool(peer, method)

    def __enter__(self):
        n = warm_tasks()
        out = self.pool.map(square, list(range(n)), None)
        assert list(out) == [x * x for x in range(n)]
        return self.pool

    def __exit__(self, *exc):
        self.pool.close()
