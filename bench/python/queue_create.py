"""queue_create: multiprocessing.Queue() created and closed, in one process.

Usage: python3 queue_create.py - ITERS
Prints the median µs per cycle.
"""

import multiprocessing

import bench_common


def cycle():
    q = multiprocessing.Queue()
    q.close()
    q.join_thread()


def main():
    _, iters = bench_common.args()
    bench_common.report(bench_common.median_us(cycle, iters))


if __name__ == "__main__":
    main()
