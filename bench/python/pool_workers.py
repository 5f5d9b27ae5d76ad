"""The pool_workers sweep: Pool(WORKERS).map of a trivial function,
chunksize=1.

Usage: python3 pool_workers.py WORKERS ITERS [multiprocessing/METHOD] —
prints µs per task; the start method is forkserver if not given.
"""

import multiprocessing
import sys
import time

import bench_common
import peers


def main():
    workers, iters = bench_common.args()
    method = "forkserver"
    if len(sys.argv) > 3:
        peer, method = peers.parse(workers)
        if peer != "multiprocessing":
            sys.exit(f"pool_workers measures multiprocessing only, not {peer}")
    with multiprocessing.get_context(method).Pool(int(workers)) as p:
        p.map(peers.square, range(1000))
        t0 = time.perf_counter()
        out = p.map(peers.square, range(iters), chunksize=1)
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
