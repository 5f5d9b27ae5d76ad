"""pool_map_auto: Pool(2).map of int -> int with the default chunksize.

Usage: python3 pool_map_auto.py METHOD ITERS — prints µs per item.
"""

import time

import bench_common
import pool_common


def main():
    method, iters = bench_common.args()
    with pool_common.pool(method) as p:
        t0 = time.perf_counter()
        out = p.map(pool_common.square, range(iters))
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
