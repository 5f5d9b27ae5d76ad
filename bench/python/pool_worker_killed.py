"""pool_worker_killed: a map (chunksize 1) of 100 items on 2 workers whose
item 0 sleeps; its worker is SIGKILLed; value = median ms from the kill
until the pool reports the lost task (the exception on its result).

- multiprocessing: ``map``: Python's Pool never reports it (it replaces
  the worker and the task is lost): ``hung`` after the bound
  (MULTIPROC_BENCH_HANG_AFTER seconds, a watchdog thread);
- futures, loky: ``map``: ``BrokenProcessPool`` (loky: its subclass
  ``TerminatedWorkerError``); the executor is broken, a new one is made
  for the next cycle (untimed);
- pebble: ``map(...).result()``: ``ProcessExpired`` on the lost item, the
  others go on;
- mpire: ``map``: the ``RuntimeError`` mpire raises when a worker dies
  (it stops the map).

The kill comes from a thread of this script once the victim has written
its pid (the map call blocks the main thread).

Usage: python3 pool_worker_killed.py VARIANT ITERS [CONFIG] — prints ms
(or ``hung``). ITERS cycles, each on a fresh pool.
"""

import os
import shutil
import signal
import tempfile
import threading
import time

import bench_common
import peers

ITEMS = 100


def run_map(peer, p, items):
    """Runs the map to its end; the exception the lost task raised, or
    None; the time it was reported (perf_counter)."""
    f = bench_common.victim_or_echo
    try:
        if peer == "multiprocessing":
            p.pool.map(f, items, chunksize=1)
        elif peer in ("futures", "loky"):
            list(p.ex.map(f, items, chunksize=1))
        elif peer == "pebble":
            results = p.pool.map(f, items, chunksize=1).result()
            lost, when, n = None, None, 0
            while True:
                try:
                    next(results)
                except StopIteration:
                    break
                except Exception as e:  # noqa: BLE001
                    if lost is None:
                        lost, when = e, time.perf_counter()
                n += 1
            assert n == ITEMS, n
            return lost, when
        elif peer in ("mpire", "mpire+state"):
            # mpire unpacks a tuple into arguments: one argument each.
            p.pool.map(f, [(item,) for item in items], chunk_size=1)
        else:
            raise SystemExit(f"pool_worker_killed has no peer {peer!r}")
    except Exception as e:  # noqa: BLE001
        return e, time.perf_counter()
    return None, time.perf_counter()


def close(peer, p):
    if peer in ("futures", "loky"):
        p.ex.shutdown(wait=False)
    else:
        p.close()


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    bound = bench_common.hang_after()
    tmp = tempfile.mkdtemp(prefix="multiproc-bench-killed-")
    times = []
    try:
        for cycle in range(iters):
            p = peers.open_pool(peer, method)
            if peer not in ("mpire", "mpire+state"):
                p.apply(peers.noop)  # started and warm (mpire starts per map)
            path = os.path.join(tmp, f"victim-{cycle}")
            killed = []

            def killer():
                pid, _ = bench_common.wait_victim(path)
                os.kill(pid, signal.SIGKILL)
                killed.append(time.perf_counter())
                watchdog = threading.Timer(bound, bench_common.hung, (tmp,))
                watchdog.daemon = True
                watchdog.start()
                killed.append(watchdog)

            t = threading.Thread(target=killer, daemon=True)
            t.start()
            lost, when = run_map(peer, p, [(i, path) for i in range(ITEMS)])
            t.join()
            if len(killed) < 2:
                raise SystemExit(f"{peer}: the map ended before the kill: {lost!r}")
            killed[1].cancel()
            if lost is None:
                raise SystemExit(f"{peer}: the map returned without reporting the lost task")
            times.append((when - killed[0]) * 1e3)
            close(peer, p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bench_common.report(sorted(times)[len(times) // 2])


if __name__ == "__main__":
    main()
