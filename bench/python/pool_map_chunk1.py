"""pool_map_chunk1: Pool(2).map of a trivial function, chunksize=1.

Usage: python3 pool_map_chunk1.py METHOD ITERS — prints µs per task.
"""

import time

import bench_common
import pool_common


def main():
    method, iters = bench_common.args()
    with pool_common.pool(method) as p:
        t0 = time.perf_counter()
        out = p.map(pool_common.square, range(iters), chunksize=1)
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
