"""The pool_workers sweep: Pool(WORKERS).map of a trivial function,
chunksize=1, forkserver.

Usage: python3 pool_workers.py WORKERS ITERS — prints µs per task.
"""

import multiprocessing
import time

import bench_common
import pool_common


def main():
    workers, iters = bench_common.args()
    with multiprocessing.get_context("forkserver").Pool(int(workers)) as p:
        p.map(pool_common.square, range(1000))
        t0 = time.perf_counter()
        out = p.map(pool_common.square, range(iters), chunksize=1)
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
