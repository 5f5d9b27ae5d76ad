"""pool_start: Pool(2) created until the first result of apply().

Usage: python3 pool_start.py {fork,spawn,forkserver} ITERS
Prints the median ms (after one untimed warm-up cycle).
"""

import multiprocessing
import time

import bench_common
import pool_common


def main():
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)

    def cycle():
        t0 = time.perf_counter()
        p = ctx.Pool(pool_common.WORKERS)
        p.apply(pool_common.noop)
        t = time.perf_counter() - t0
        p.terminate()
        p.join()
        return t

    cycle()
    times = sorted(cycle() for _ in range(iters))
    n = len(times)
    med = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    bench_common.report(med * 1e3)


if __name__ == "__main__":
    main()
