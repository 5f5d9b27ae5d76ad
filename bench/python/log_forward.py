"""log_forward: what a log record costs when a child's records reach the
parent's logging handlers — the logging cookbook's idiom, a QueueHandler
in the child and a QueueListener in the parent (multiprocessing has no
forwarding of its own).

Usage: python3 log_forward.py METHOD ITERS — prints µs per record: start
to join of a child that logs ITERS records, all handled in the parent,
less the same cycle with none.
"""

import logging
import logging.handlers
import multiprocessing
import time

import bench_common


class Counting(logging.Handler):
    def __init__(self):
        super().__init__()
        self.seen = 0

    def emit(self, record):
        self.seen += 1


def chatter(q, n):
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]
    root.setLevel(logging.INFO)
    log = logging.getLogger("bench")
    for i in range(n):
        log.info("record %d of the child", i)


def main():
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    counting = Counting()
    listener = logging.handlers.QueueListener(q, counting)
    listener.start()

    def cycle(n):
        before = counting.seen
        t0 = time.perf_counter()
        p = ctx.Process(target=chatter, args=(q, n))
        p.start()
        p.join()
        # The listener's thread may still be handling what the child sent.
        while counting.seen - before < n:
            time.sleep(0.0005)
        return time.perf_counter() - t0

    cycle(10)
    empty = cycle(0)
    full = cycle(iters)
    listener.stop()
    bench_common.report(max(full - empty, 0.0) * 1e6 / iters)


if __name__ == "__main__":
    main()
