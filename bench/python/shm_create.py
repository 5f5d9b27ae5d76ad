"""shm_create: create a named 4 KiB SharedMemory, attach it by name, close
both, unlink.

Usage: python3 shm_create.py named ITERS
Prints the median µs per cycle.
"""

from multiprocessing import shared_memory

import bench_common


def cycle():
    owner = shared_memory.SharedMemory(create=True, size=4096)
    other = shared_memory.SharedMemory(name=owner.name)
    other.buf[0] = 1
    other.close()
    owner.close()
    owner.unlink()


def main():
    _, iters = bench_common.args()
    bench_common.report(bench_common.median_us(cycle, iters))


if __name__ == "__main__":
    main()
