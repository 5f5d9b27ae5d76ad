"""lock_uncontended: acquire and release a multiprocessing.Lock, one process.

Usage: python3 lock_uncontended.py - ITERS
Prints ns per acquire+release.
"""

import multiprocessing
import time

import bench_common


def main():
    _, iters = bench_common.args()
    lock = multiprocessing.Lock()
    acquire, release = lock.acquire, lock.release
    for _ in range(1000):
        acquire()
        release()
    t0 = time.perf_counter()
    for _ in range(iters):
        acquire()
        release()
    bench_common.report((time.perf_counter() - t0) * 1e9 / iters)


if __name__ == "__main__":
    main()
