"""pool_map_auto: map of int -> int over ITERS items, the peer's default
chunking (for the executors, multiprocessing's: see peers.py).

Usage: python3 pool_map_auto.py VARIANT ITERS [CONFIG] — prints µs per
item. CONFIG names the peer (peers.py); without it, multiprocessing.Pool
with VARIANT as start method.
"""

import time

import bench_common
import peers


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    items = list(range(iters))
    with peers.warm(peer, method) as p:
        t0 = time.perf_counter()
        out = p.map(peers.square, items, None)
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
