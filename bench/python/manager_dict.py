"""manager_dict: a shared dict served by a multiprocessing Manager.

Usage: python3 manager_dict.py {op_from_child,batched,start} ITERS
Prints µs: per `d[k] = v` from a child (op_from_child), per write when a
child sends 100 per `d.update(...)` (batched), or the median
Manager() start until its first dict is made (start). The default start
method (forkserver on 3.14, fork before) is used, as by multiproc.
"""

import multiprocessing
import time

import bench_common

BATCH = 100


def writes(d, n, batched, out):
    d[0] = 0
    t0 = time.perf_counter()
    if batched:
        done = 0
        while done < n:
            d.update({i % 1000: i for i in range(done, done + BATCH)})
            done += BATCH
    else:
        for i in range(n):
            d[i % 1000] = i
    out.put((time.perf_counter() - t0) * 1e6 / n)


def main():
    variant, iters = bench_common.args()
    if variant == "start":
        def cycle():
            m = multiprocessing.Manager()
            m.dict()
            m.shutdown()

        # Warm up once; then time only the start and the first dict.
        cycle()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            m = multiprocessing.Manager()
            m.dict()
            times.append(time.perf_counter() - t0)
            m.shutdown()
        times.sort()
        bench_common.report(times[len(times) // 2] * 1e6)
        return
    if variant not in ("op_from_child", "batched"):
        raise SystemExit(f"no variant {variant}")
    with multiprocessing.Manager() as m:
        d = m.dict()
        out = multiprocessing.Queue()
        p = multiprocessing.Process(
            target=writes, args=(d, iters, variant == "batched", out)
        )
        p.start()
        value = out.get()
        p.join()
    bench_common.report(value)


if __name__ == "__main__":
    main()
