"""pipe_pingpong: a small object bounced through a multiprocessing Pipe.

Usage: python3 pipe_pingpong.py - ITERS
The parent sends an int and waits for the child to send it back, ITERS
times (after one untimed round trip). Prints the mean µs per round trip.
"""

import multiprocessing
import time

import bench_common


def echo(conn):
    while (x := conn.recv()) is not None:
        conn.send(x)


def main():
    _, iters = bench_common.args()
    ours, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=echo, args=(theirs,))
    p.start()
    theirs.close()
    ours.send(0)
    ours.recv()
    t0 = time.perf_counter()
    for i in range(iters):
        ours.send(i)
        ours.recv()
    elapsed = time.perf_counter() - t0
    ours.send(None)
    p.join()
    bench_common.report(elapsed / iters * 1e6)


if __name__ == "__main__":
    main()
