"""The pool_argsize sweep: Pool(2).map, chunksize=1, of a function taking a
SIZE-byte argument and returning its length, forkserver.

Usage: python3 pool_argsize.py SIZE ITERS — prints µs per task.
"""

import time

import bench_common
import pool_common


def main():
    size, iters = bench_common.args()
    arg = b"\x07" * int(size)
    with pool_common.pool("forkserver") as p:
        t0 = time.perf_counter()
        out = p.map(len, [arg] * iters, chunksize=1)
        t = time.perf_counter() - t0
        assert out == [int(size)] * iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
