"""process_start: start a no-op multiprocessing.Process and join it.

Usage: python3 process_start.py {fork,spawn,forkserver} ITERS
Prints the median µs per start+join (after one untimed warm-up cycle,
which under forkserver starts the fork server).
"""

import multiprocessing

import bench_common


def noop():
    pass


def main():
    method, iters = bench_common.args()
    ctx = multiprocessing.get_context(method)

    def cycle():
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")

    bench_common.report(bench_common.median_us(cycle, iters))


if __name__ == "__main__":
    main()
