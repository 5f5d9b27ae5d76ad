"""pool_as_completed: ITERS tasks submitted and all finished, then
collected as they completed, minus collecting the same number in order;
value = µs of overhead per result.

- futures, loky, pebble: ``concurrent.futures.as_completed`` over the
  futures vs ``result()`` of each in order;
- multiprocessing: Pool has no as_completed; the usual idiom,
  ``apply_async(callback=queue.put)`` drained from a
  ``queue.SimpleQueue``, vs ``get()`` of each in order.

Usage: python3 pool_as_completed.py VARIANT ITERS [CONFIG] — prints µs.
"""

import concurrent.futures
import queue
import time

import bench_common
import peers


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    items = list(range(iters))
    f = bench_common.square
    with peers.warm(peer, method) as p:
        if peer == "multiprocessing":
            q = queue.SimpleQueue()
            rs = [p.pool.apply_async(f, (x,), callback=q.put) for x in items]
            while not all(r.ready() for r in rs):
                time.sleep(0.001)
            t0 = time.perf_counter()
            n = sum(1 for _ in range(iters) if q.get() is not None)
            t_ac = time.perf_counter() - t0
            rs = [p.pool.apply_async(f, (x,)) for x in items]
            while not all(r.ready() for r in rs):
                time.sleep(0.001)
            t0 = time.perf_counter()
            for r in rs:
                r.get()
            t_get = time.perf_counter() - t0
        else:
            if peer in ("futures", "loky"):
                submit = p.ex.submit
            elif peer == "pebble":
                submit = p.pool.schedule
            else:
                raise SystemExit(f"pool_as_completed has no peer {peer!r}")
            futs = [submit(f, x) if peer != "pebble" else submit(f, args=(x,)) for x in items]
            concurrent.futures.wait(futs)
            t0 = time.perf_counter()
            n = sum(1 for fut in concurrent.futures.as_completed(futs) if fut.result() is not None)
            t_ac = time.perf_counter() - t0
            futs = [submit(f, x) if peer != "pebble" else submit(f, args=(x,)) for x in items]
            concurrent.futures.wait(futs)
            t0 = time.perf_counter()
            for fut in futs:
                fut.result()
            t_get = time.perf_counter() - t0
        assert n == iters, n
    bench_common.report(max(0.0, (t_ac - t_get) * 1e6 / iters))


if __name__ == "__main__":
    main()
