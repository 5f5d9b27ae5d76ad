"""The pool_argsize sweep: map, chunksize=1, of a function taking a
SIZE-byte argument and returning its length, 2 workers.

Usage: python3 pool_argsize.py SIZE ITERS [CONFIG] — prints µs per task.
CONFIG names the peer (peers.py); without it, multiprocessing.Pool with
forkserver.
"""

import sys
import time

import bench_common
import peers


def main():
    size, iters = bench_common.args()
    if len(sys.argv) > 3:
        peer, method = peers.parse(size)
    else:
        peer, method = "multiprocessing", "forkserver"
    arg = b"\x07" * int(size)
    with peers.warm(peer, method) as p:
        t0 = time.perf_counter()
        out = p.map(len, [arg] * iters, 1)
        t = time.perf_counter() - t0
        assert list(out) == [int(size)] * iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
