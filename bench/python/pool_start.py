"""pool_start: a pool of 2 workers created until the first result of one
call, then stopped; VARIANT is the start method.

Usage: python3 pool_start.py {fork,spawn,forkserver,loky} ITERS [PEER]
Prints the median ms (after one untimed warm-up cycle). PEER names the
pool (peers.py; any /METHOD is ignored: VARIANT is the method);
multiprocessing if absent.
"""

import statistics
import sys
import time

import bench_common
import peers


def main():
    method, iters = bench_common.args()
    peer = sys.argv[3].partition("/")[0] if len(sys.argv) > 3 else "multiprocessing"

    def cycle():
        t0 = time.perf_counter()
        p = peers.open_pool(peer, method)
        p.apply(peers.noop)
        t = time.perf_counter() - t0
        p.close()
        return t

    cycle()
    bench_common.report(statistics.median(cycle() for _ in range(iters)) * 1e3)


if __name__ == "__main__":
    main()
