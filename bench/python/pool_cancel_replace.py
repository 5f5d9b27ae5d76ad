"""pool_cancel_replace: on a 1-worker pool, cancel of a running task (it
sleeps) until a following task has returned (on the replacement worker);
value = median ms per cycle.

Only pebble stops a running task: ``future.cancel()`` on a running
future kills its worker, and the pool starts another. Python's Pool has
no cancel; ``concurrent.futures`` (and loky's) ``cancel()`` returns False
for a running task; mpire has no cancel. The harness has no entry for
those.

Usage: python3 pool_cancel_replace.py VARIANT ITERS pebble — prints ms.
"""

import concurrent.futures
import multiprocessing
import os
import shutil
import tempfile
import time

import bench_common
import peers


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    if peer != "pebble":
        raise SystemExit(f"only pebble can cancel a running task, not {peer!r}")
    import pebble

    bound = bench_common.hang_after()
    pool = pebble.ProcessPool(max_workers=1, context=multiprocessing.get_context(method))
    pool.schedule(bench_common.noop).result()
    tmp = tempfile.mkdtemp(prefix="multiproc-bench-cancel-")
    times = []
    try:
        for cycle in range(iters):
            path = os.path.join(tmp, f"victim-{cycle}")
            fut = pool.schedule(bench_common.victim, args=(path,))
            bench_common.wait_victim(path)
            t0 = time.perf_counter()
            if not fut.cancel():
                raise SystemExit("pebble: cancel of a running task returned False")
            try:
                pool.schedule(bench_common.noop).result(timeout=bound)
            except concurrent.futures.TimeoutError:
                bench_common.hung(tmp)
            times.append((time.perf_counter() - t0) * 1e3)
            assert fut.cancelled()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pool.stop()
    pool.join()
    bench_common.report(sorted(times)[len(times) // 2])


if __name__ == "__main__":
    main()
