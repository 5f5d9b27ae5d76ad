"""pipe_small: small objects through a multiprocessing Pipe, parent to child.

Usage: python3 pipe_small.py - ITERS
The parent sends ITERS ints with ``send``; the child receives them all and
answers with the count. Prints messages per second (the child's start is
not timed).
"""

import multiprocessing
import time

import bench_common


def receiver(conn, n):
    conn.send("ready")
    for _ in range(n):
        conn.recv()
    conn.send(n)


def main():
    _, iters = bench_common.args()
    ours, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=receiver, args=(theirs, iters))
    p.start()
    theirs.close()
    assert ours.recv() == "ready"
    t0 = time.perf_counter()
    for i in range(iters):
        ours.send(i)
    assert ours.recv() == iters
    elapsed = time.perf_counter() - t0
    p.join()
    bench_common.report(iters / elapsed)


if __name__ == "__main__":
    main()
