"""value_incr: two processes increment a Value("q") under its own lock.

Usage: python3 value_incr.py - ITERS
Prints increments per second (see lock_contended.py).
"""

import bench_common
import lock_contended

if __name__ == "__main__":
    _, iters = bench_common.args()
    lock_contended.run("value", iters)
