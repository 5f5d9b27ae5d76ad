"""pool_apply_async: ITERS tasks in flight, then every result
(multiprocessing: apply_async + get; the executors and pebble: submit or
schedule + as_completed; mpire: apply_async + get).

Usage: python3 pool_apply_async.py VARIANT ITERS [CONFIG] — prints µs per
task. CONFIG names the peer (peers.py); without it, multiprocessing.Pool
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
        out = p.submit_all(peers.square, items)
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e6 / iters)


if __name__ == "__main__":
    main()
