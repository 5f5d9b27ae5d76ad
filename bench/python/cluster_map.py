"""cluster_map: items per second of a map of ITERS tiny tasks (x -> x*x
over small ints) on 2 local workers, issue 17's "≥ 1 M items/s".

VARIANT ``2x1`` or ``2x2``: 2 workers of 1 or 2 threads (Dask; multiproc:
2 agents of 1 or 2 processes); RQ has only ``2x1`` (a worker runs one job
at a time).

- dask: ``client.gather(client.map(square, range(n), pure=False))`` on a
  LocalCluster of 2 worker processes (a task per item: Dask does not
  chunk ``client.map``). Dask runs well under a thousand such tasks a
  second here, so it maps ``min(ITERS, DASK_ITEMS)`` items: the rate, not
  the whole 100 000 (which would take minutes per run);
- dask+bag: what a Dask user does about that, batching by hand:
  ``dask.bag.from_sequence(range(n), npartitions=4 * threads in all)
  .map(square).compute()`` on the same cluster (all n items);
- rq, rq+simple: ``queue.enqueue_many`` (one pipelined round trip) of a
  job per item, then every ``job.latest_result``. RQ runs a few hundred
  to a few thousand jobs a second, so it maps ``min(ITERS, RQ_ITEMS)``
  items: the rate, not the whole 100 000.

One untimed warm-up map of 1 000 items first (200 for RQ). Under
``--quick`` (MULTIPROC_BENCH_QUICK) Dask and RQ map 200 items after a
warm-up of 20: the smoke test times nothing.

Usage: python cluster_map.py VARIANT ITERS CONFIG — prints items/s.
"""

import os
import sys
import time

import bench_common
import cluster_peers
from bench_common import square

# Dask's and RQ's maps are cut to this many items (see above).
DASK_ITEMS = 20000
RQ_ITEMS = 2000


def main():
    variant, n = bench_common.args()
    quick = os.environ.get("MULTIPROC_BENCH_QUICK") == "1"
    warm = 20 if quick else None
    if quick:
        n = min(n, 200)
    peer, opt = cluster_peers.parse(sys.argv[3])
    if variant not in ("2x1", "2x2"):
        raise SystemExit(f"cluster_map has no variant {variant!r}")
    if peer in ("dask", "dask+bag"):
        if int(variant[-1]) != opt:
            raise SystemExit(f"{sys.argv[3]} does not match variant {variant}")
        if peer == "dask":
            n = min(n, DASK_ITEMS)
        with cluster_peers.dask_client(opt) as client:

            def run(count):
                if peer == "dask+bag":
                    import dask.bag

                    bag = dask.bag.from_sequence(range(count), npartitions=4 * 2 * opt)
                    out = bag.map(square).compute()
                else:
                    futures = client.map(square, range(count), pure=False)
                    out = client.gather(futures)
                    del futures
                assert out[-1] == (count - 1) ** 2

            run(warm or 1000)
            t0 = time.perf_counter()
            run(n)
            value = n / (time.perf_counter() - t0)
    else:
        if variant != "2x1":
            raise SystemExit("RQ has only the 2x1 variant")
        from rq import Queue

        n = min(n, RQ_ITEMS)
        with cluster_peers.rq_queue(opt) as q:

            def run(count):
                jobs = q.enqueue_many([Queue.prepare_data(square, (i,)) for i in range(count)])
                out = [cluster_peers.rq_result(j) for j in jobs]
                assert out[-1] == (count - 1) ** 2

            run(warm or 200)
            t0 = time.perf_counter()
            run(n)
            value = n / (time.perf_counter() - t0)
    bench_common.report(value)


if __name__ == "__main__":
    main()
