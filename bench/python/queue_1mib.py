"""queue_1mib: one process puts 1 MiB bytes objects on a
multiprocessing.Queue, another gets them.

Usage: python3 queue_1mib.py {fork,spawn,forkserver} ITERS
Prints GB per second, timed from the first put until the consumer reports
(on a second queue) that it got them all.
"""

import multiprocessing
import time

import bench_common

MIB = 1 << 20


def consume(q, back, n):
    back.put(0)
    total = 0
    for _ in range(n):
        m = q.get()
        total += len(m) + m[-1]
    back.put(total)


def main():
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    back = ctx.Queue()
    p = ctx.Process(target=consume, args=(q, back, iters))
    p.start()
    msg = bytearray(b"\x07" * MIB)
    back.get()
    t0 = time.perf_counter()
    for i in range(iters):
        msg[-1] = i % 2
        q.put(bytes(msg))
    total = back.get()
    secs = time.perf_counter() - t0
    p.join()
    if total != iters * MIB + iters // 2:
        raise SystemExit(f"received {total} bytes")
    bench_common.report(iters * MIB / secs / 1e9)


if __name__ == "__main__":
    main()
