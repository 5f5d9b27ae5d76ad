"""process_start_preload: start+join of a forkserver child that needs a
table built by a heavy import (heavy_table.py), without (cold) and with
(preloaded: ``set_forkserver_preload(["heavy_table"])``) a preload.

Usage: python3 process_start_preload.py {cold,preloaded} ITERS — prints the
median µs per start+join (after one untimed warm-up cycle, which starts
the fork server).
"""

import multiprocessing
import os

import bench_common


def use_table(i, q):
    import heavy_table

    q.put(heavy_table.TABLE[i % heavy_table.TABLE_LEN])


def main():
    variant, iters = bench_common.args()
    if variant not in ("cold", "preloaded"):
        raise SystemExit(f"unknown variant {variant!r}")
    # The fork server imports preload modules from its own sys.path, which
    # does not hold this directory (and it ignores a module it cannot find).
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p
    )
    ctx = multiprocessing.get_context("forkserver")
    if variant == "preloaded":
        ctx.set_forkserver_preload(["heavy_table"])
    q = ctx.SimpleQueue()
    n = [0]

    def cycle():
        n[0] += 1
        p = ctx.Process(target=use_table, args=(n[0], q))
        p.start()
        q.get()
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"child exited with {p.exitcode}")

    bench_common.report(bench_common.median_us(cycle, iters))


if __name__ == "__main__":
    main()
