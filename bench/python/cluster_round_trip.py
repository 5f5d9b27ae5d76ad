"""cluster_round_trip: µs per round trip of one small task, one at a time
(the median of ITERS, after 20 untimed), issue 17's "≤ 300 µs".

- dask: ``client.submit(square, i, pure=False).result()`` on a
  LocalCluster of 2 worker processes, 1 thread each;
- rq, rq+simple: ``queue.enqueue(square, i)`` then
  ``job.latest_result(timeout=...)`` (a blocking XREAD on the job's result
  stream) with 2 RQ workers on a private redis-server (cluster_peers.py).

Usage: python cluster_round_trip.py VARIANT ITERS CONFIG — prints µs.
"""

import sys

import bench_common
import cluster_peers
from bench_common import square


def main():
    _, iters = bench_common.args()
    peer, opt = cluster_peers.parse(sys.argv[3])
    if peer == "dask":
        with cluster_peers.dask_client(opt) as client:
            counter = iter(range(10**9))

            def cycle():
                i = next(counter)
                assert client.submit(square, i, pure=False).result(timeout=30) == i * i

            for _ in range(20):
                cycle()
            value = bench_common.median_us(cycle, iters)
    else:
        with cluster_peers.rq_queue(opt) as q:
            counter = iter(range(10**9))

            def cycle():
                i = next(counter)
                assert cluster_peers.rq_result(q.enqueue(square, i)) == i * i

            for _ in range(20):
                cycle()
            value = bench_common.median_us(cycle, iters)
    bench_common.report(value)


if __name__ == "__main__":
    main()
