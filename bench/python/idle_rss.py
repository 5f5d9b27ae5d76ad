"""idle_rss: resident memory of an idle multiprocessing child.

Usage: python3 idle_rss.py {fork,spawn,forkserver} ITERS
Starts a child that says it is ready and blocks on its pipe, reads its
VmRSS from /proc, and lets it go; ITERS times. Prints the median in MiB.
idle_uss.py does the same for its private memory.
"""

import multiprocessing
import statistics

import bench_common


def idle(conn):
    conn.send("ready")
    conn.recv()


def main(metric=bench_common.rss_mib):
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)
    values = []
    for _ in range(iters):
        ours, theirs = ctx.Pipe()
        p = ctx.Process(target=idle, args=(theirs,))
        p.start()
        theirs.close()
        assert ours.recv() == "ready"
        values.append(metric(p.pid))
        ours.send("stop")
        p.join()
    bench_common.report(statistics.median(values))


if __name__ == "__main__":
    main()
