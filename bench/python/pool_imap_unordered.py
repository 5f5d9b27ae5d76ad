"""pool_imap_unordered: one task per item, results consumed as they arrive
(multiprocessing and mpire: imap_unordered, chunksize 1; the executors and
pebble: submit + as_completed; joblib: return_as="generator_unordered",
batch_size=1).

Usage: python3 pool_imap_unordered.py VARIANT ITERS [CONFIG] — prints µs
per item. CONFIG names the peer (peers.py); without it,
multiprocessing.Pool with VARIANT as start method.
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
        n = sum(1 for _ in p.unordered(peers.square, items))
        t = time.perf_counter() - t0
        assert n == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
