"""pool_time_limit: on a 1-worker pool, a task with a 50 ms limit that
sleeps; value = median ms from the limit (the task's start, stamped by the
task with CLOCK_MONOTONIC, + 50 ms) until the error is reported and a
following task has run.

- pebble: ``schedule(f, timeout=0.05)``: ``TimeoutError`` once the worker
  is killed; the pool starts another;
- mpire: ``apply_async(f, task_timeout=0.05)``: mpire's ``TimeoutError``;
- multiprocessing: Pool has no per-task limit. ``AsyncResult.get(timeout)``
  raises at the limit, but the task goes on and its worker stays busy, so
  the next task never runs: ``hung`` after the bound
  (MULTIPROC_BENCH_HANG_AFTER seconds).

Usage: python3 pool_time_limit.py VARIANT ITERS [CONFIG] — prints ms (or
``hung``). mpire makes a fresh pool per cycle (a timeout stops its pool).
"""

import concurrent.futures
import multiprocessing
import os
import shutil
import tempfile
import threading

import bench_common
import peers

LIMIT = 0.05


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    bound = bench_common.hang_after()
    ctx = multiprocessing.get_context(method)
    tmp = tempfile.mkdtemp(prefix="multiproc-bench-limit-")
    watchdog = threading.Timer(bound + 2 * LIMIT * iters + 30, bench_common.hung, (tmp,))
    watchdog.daemon = True
    watchdog.start()
    times = []
    pool = None
    try:
        for cycle in range(iters):
            path = os.path.join(tmp, f"victim-{cycle}")
            if peer == "pebble":
                import pebble

                if pool is None:
                    pool = pebble.ProcessPool(max_workers=1, context=ctx)
                    pool.schedule(bench_common.noop).result()
                fut = pool.schedule(bench_common.victim, args=(path,), timeout=LIMIT)
                _, started = bench_common.wait_victim(path)
                try:
                    fut.result(timeout=bound)
                    raise SystemExit("pebble: the task returned")
                except concurrent.futures.TimeoutError:
                    pass  # the limit: pebble's TimeoutError
                try:
                    pool.schedule(bench_common.noop).result(timeout=bound)
                except concurrent.futures.TimeoutError:
                    bench_common.hung(tmp)
            elif peer in ("mpire", "mpire+state"):
                import mpire

                with mpire.WorkerPool(n_jobs=1, start_method=method, keep_alive=True) as pool:
                    pool.apply(bench_common.noop)
                    r = pool.apply_async(bench_common.victim, (path,), task_timeout=LIMIT)
                    _, started = bench_common.wait_victim(path)
                    try:
                        r.get(timeout=bound)
                        raise SystemExit("mpire: the task returned")
                    except TimeoutError:
                        pass
                    except multiprocessing.TimeoutError:
                        bench_common.hung(tmp)
                    pool.apply(bench_common.noop)
                    ready = bench_common.monotonic_ns()
                    times.append((ready - started) / 1e6 - LIMIT * 1e3)
                continue
            elif peer == "multiprocessing":
                if pool is None:
                    pool = ctx.Pool(1)
                    pool.apply(bench_common.noop)
                r = pool.apply_async(bench_common.victim, (path,))
                _, started = bench_common.wait_victim(path)
                left = started / 1e9 + LIMIT - bench_common.monotonic_ns() / 1e9
                try:
                    r.get(timeout=max(0.0, left))
                except multiprocessing.TimeoutError:
                    pass  # reported at the limit; the task goes on
                try:
                    pool.apply_async(bench_common.noop).get(timeout=bound)
                except multiprocessing.TimeoutError:
                    bench_common.hung(tmp)
            else:
                raise SystemExit(f"pool_time_limit has no peer {peer!r}")
            ready = bench_common.monotonic_ns()
            times.append((ready - started) / 1e6 - LIMIT * 1e3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if peer == "pebble":
        pool.stop()
        pool.join()
    elif peer == "multiprocessing":
        pool.terminate()
    bench_common.report(sorted(times)[len(times) // 2])


if __name__ == "__main__":
    main()
