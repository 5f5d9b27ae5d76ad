"""lock_contended: two processes increment a shared integer under one Lock
(a RawValue); value_incr.py reuses this with a Value and its own lock.

Usage: python3 lock_contended.py - ITERS
Each child times from a common Barrier to its last increment;
prints increments per second (total / slowest child).
"""

import multiprocessing
import time

import bench_common


def contend(kind, lock, value, start, n, out):
    start.wait()
    t0 = time.perf_counter()
    if kind == "lock":
        for _ in range(n):
            with lock:
                value.value += 1
    else:
        for _ in range(n):
            with value.get_lock():
                value.value += 1
    out.put(time.perf_counter() - t0)


def run(kind, iters):
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock()
    value = ctx.RawValue("q", 0) if kind == "lock" else ctx.Value("q", 0)
    start = ctx.Barrier(2)
    out = ctx.Queue()
    half = iters // 2
    procs = [
        ctx.Process(target=contend, args=(kind, lock, value, start, half, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    slowest = max(out.get() for _ in procs)
    for p in procs:
        p.join()
    if value.value != 2 * half:
        raise SystemExit(f"lost updates: {value.value}")
    bench_common.report(2 * half / slowest)


if __name__ == "__main__":
    _, iters = bench_common.args()
    run("lock", iters)
