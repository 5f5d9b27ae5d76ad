"""queue_small: one process puts small objects (ints) on a
multiprocessing.Queue, another gets them.

Usage: python3 queue_small.py {fork,spawn,forkserver} ITERS
Prints messages per second, timed from the first put until the consumer
reports (on a second queue) that it got them all.
"""

import multiprocessing
import time

import bench_common


def consume(q, back, n):
    back.put(0)
    total = 0
    for _ in range(n):
        total += q.get()
    back.put(total)


def main():
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    back = ctx.Queue()
    p = ctx.Process(target=consume, args=(q, back, iters))
    p.start()
    back.get()
    t0 = time.perf_counter()
    for i in range(iters):
        q.put(i)
    total = back.get()
    secs = time.perf_counter() - t0
    p.join()
    if total != iters * (iters - 1) // 2:
        raise SystemExit(f"checksum {total} is wrong")
    bench_common.report(iters / secs)


if __name__ == "__main__":
    main()
