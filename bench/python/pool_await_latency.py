"""pool_await_latency: one task at a time awaited in an asyncio loop; the
task spins 1 ms and returns the time it finished (CLOCK_MONOTONIC, shared
by every process); value = median µs from then to the awaiting coroutine
running again.

- multiprocessing: ``apply_async(callback=...)`` that hands the value to
  the loop with ``loop.call_soon_threadsafe`` (Pool results are not
  asyncio futures); mpire the same;
- futures, loky: ``await loop.run_in_executor(executor, f)``;
- pebble: ``await asyncio.wrap_future(pool.schedule(f))``.

Usage: python3 pool_await_latency.py VARIANT ITERS [CONFIG] — prints µs.
"""

import asyncio

import bench_common
import peers


async def measure(peer, p, iters):
    loop = asyncio.get_running_loop()
    f = bench_common.stamp_after_1ms
    times = []
    for _ in range(iters):
        if peer in ("multiprocessing", "mpire", "mpire+state"):
            fut = loop.create_future()
            p.pool.apply_async(f, callback=lambda v, fut=fut: loop.call_soon_threadsafe(fut.set_result, v))
            finished = await fut
        elif peer in ("futures", "loky"):
            finished = await loop.run_in_executor(p.ex, f)
        elif peer == "pebble":
            finished = await asyncio.wrap_future(p.pool.schedule(f))
        else:
            raise SystemExit(f"pool_await_latency has no peer {peer!r}")
        times.append((bench_common.monotonic_ns() - finished) / 1e3)
    return sorted(times)[len(times) // 2]


def main():
    variant, iters = bench_common.args()
    peer, method = peers.parse(variant)
    with peers.warm(peer, method) as p:
        value = asyncio.run(measure(peer, p, iters))
    bench_common.report(value)


if __name__ == "__main__":
    main()
