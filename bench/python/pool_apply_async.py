"""pool_apply_async: ITERS apply_async calls in flight, then every get().

Usage: python3 pool_apply_async.py METHOD ITERS — prints µs per task.
"""

import time

import bench_common
import pool_common


def main():
    method, iters = bench_common.args()
    with pool_common.pool(method) as p:
        t0 = time.perf_counter()
        results = [p.apply_async(pool_common.square, (i,)) for i in range(iters)]
        for r in results:
            r.get()
        t = time.perf_counter() - t0
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
