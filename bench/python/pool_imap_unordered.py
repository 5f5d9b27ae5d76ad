"""pool_imap_unordered: Pool(2).imap_unordered, chunksize=1, consumed fully.

Usage: python3 pool_imap_unordered.py METHOD ITERS — prints µs per item.
"""

import time

import bench_common
import pool_common


def main():
    method, iters = bench_common.args()
    with pool_common.pool(method) as p:
        t0 = time.perf_counter()
        n = sum(1 for _ in p.imap_unordered(pool_common.square, range(iters), chunksize=1))
        t = time.perf_counter() - t0
        assert n == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
