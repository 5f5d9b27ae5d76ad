"""pool_map_async_busy: a map of ITERS × 100 µs spin tasks started in the
background while the caller sleeps (its own work) for 75 µs × ITERS (1.5
s for 20 000), then waits for the result; value = ms from the caller's
return to having the result.

- multiprocessing: ``map_async`` (default chunking) + ``get``;
- futures, loky: ``map`` (submits every chunk at once; multiprocessing's
  default chunking) + ``list``;
- pebble: ``map`` (a future; the same chunking) + ``result``.

Usage: python3 pool_map_async_busy.py VARIANT ITERS [CONFIG] — prints ms.
"""

import time

import bench_common
import peers


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    items = list(range(iters))
    chunk = peers.default_chunksize(iters)
    f = bench_common.spin_100us
    with peers.warm(peer, method) as p:
        if peer == "multiprocessing":
            r = p.pool.map_async(f, items)
            wait = r.get
        elif peer in ("futures", "loky"):
            it = p.ex.map(f, items, chunksize=chunk)
            wait = lambda: list(it)  # noqa: E731
        elif peer == "pebble":
            fut = p.pool.map(f, items, chunksize=chunk)
            wait = lambda: list(fut.result())  # noqa: E731
        else:
            raise SystemExit(f"pool_map_async_busy has no peer {peer!r}")
        time.sleep(75e-6 * iters)
        t0 = time.perf_counter()
        out = wait()
        t = time.perf_counter() - t0
        assert len(out) == iters
    bench_common.report(t * 1e3)


if __name__ == "__main__":
    main()
