"""The queue_size sweep: SIZE-byte bytes objects through a
multiprocessing.Queue from the parent to a forkserver child.

Usage: python3 queue_bytes.py SIZE ITERS — prints GB per second of message
bodies, timed from the first put until the child reports (on a second
queue) that it got them all.
"""

import multiprocessing
import time

import bench_common


def consume(q, back, n):
    back.put(0)
    total = 0
    for _ in range(n):
        total += len(q.get())
    back.put(total)


def main():
    size, iters = bench_common.args()
    size = int(size)
    ctx = multiprocessing.get_context("forkserver")
    q = ctx.Queue()
    back = ctx.Queue()
    p = ctx.Process(target=consume, args=(q, back, iters))
    p.start()
    msg = b"\x07" * size
    back.get()
    t0 = time.perf_counter()
    for _ in range(iters):
        q.put(msg)
    total = back.get()
    secs = time.perf_counter() - t0
    p.join()
    if total != iters * size:
        raise SystemExit(f"received {total} bytes")
    bench_common.report(iters * size / secs / 1e9)


if __name__ == "__main__":
    main()
