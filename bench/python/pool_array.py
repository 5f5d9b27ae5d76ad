"""The pool_array scenario: a 1 GiB array of float64 (VARIANT, e.g. 1gib)
reaches 2 workers, each of which reads one row (1024 values); prints the
median ms per handover.

Python's best way without numpy: the array in
``multiprocessing.shared_memory``, the workers attach by name and read
through a memoryview. With CONFIG ``joblib``: a numpy array given to
``joblib.Parallel``, which memory-maps large arrays for its workers (its
automatic memmapping).

Usage: python3 pool_array.py VARIANT ITERS [CONFIG]
"""

import statistics
import sys
import time

import bench_common
import peers

COLS = 1024


def touch_shm(args):
    from multiprocessing import shared_memory

    name, row = args
    shm = shared_memory.SharedMemory(name=name)
    view = shm.buf.cast("d")
    total = sum(view[row * COLS:(row + 1) * COLS])
    view.release()
    shm.close()
    return total


def touch_array(arr, row):
    return float(arr[row].sum())


def main():
    variant, iters = bench_common.args()
    size = int(variant.removesuffix("gib")) << 30
    if len(sys.argv) > 3:
        peer, method = peers.parse(variant)
    else:
        peer, method = "multiprocessing", "forkserver"
    times = []
    if peer == "joblib":
        import joblib
        import numpy

        arr = numpy.ones((size // 8 // COLS, COLS))
        with joblib.Parallel(n_jobs=2) as par:
            for i in range(iters + 1):
                t0 = time.perf_counter()
                out = par(joblib.delayed(touch_array)(arr, r) for r in (2 * i, 2 * i + 1))
                times.append(time.perf_counter() - t0)
                assert out == [float(COLS)] * 2
    else:
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=size)
        try:
            view = shm.buf.cast("d")
            # Fill only the rows read (the rest stays zero pages): the
            # handover is what is measured, not the fill.
            for r in range(2 * iters + 2):
                for c in range(COLS):
                    view[r * COLS + c] = 1.0
            view.release()
            with peers.warm(peer, method) as p:
                for i in range(iters + 1):
                    items = [(shm.name, 2 * i), (shm.name, 2 * i + 1)]
                    t0 = time.perf_counter()
                    out = list(p.map(touch_shm, items, 1))
                    times.append(time.perf_counter() - t0)
                    assert out == [float(COLS)] * 2, out
        finally:
            shm.close()
            shm.unlink()
    bench_common.report(statistics.median(times[1:]) * 1e3)


if __name__ == "__main__":
    main()
