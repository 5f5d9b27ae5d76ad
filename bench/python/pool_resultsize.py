"""The pool_resultsize sweep: map, chunksize=1, of a function returning a
SIZE-byte result (made in the worker), 2 workers.

Usage: python3 pool_resultsize.py SIZE ITERS [CONFIG] — prints µs per task.
CONFIG names the peer (peers.py); without it, multiprocessing.Pool with
forkserver.
"""

import sys
import time

import bench_common
import peers


def make(n):
    return b"\x07" * n


def main():
    size, iters = bench_common.args()
    size = int(size)
    if len(sys.argv) > 3:
        peer, method = peers.parse(str(size))
    else:
        peer, method = "multiprocessing", "forkserver"
    with peers.warm(peer, method) as p:
        t0 = time.perf_counter()
        out = p.map(make, [size] * iters, 1)
        t = time.perf_counter() - t0
        assert [len(b) for b in out] == [size] * iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
