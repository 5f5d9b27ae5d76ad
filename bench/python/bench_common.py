"""Shared by the benchmark scripts in this directory.

The convention (the same for the C programs in ../c): a script is run as
``python3 SCRIPT VARIANT ITERS``, does ITERS iterations of the scenario's
operation and prints a single number on stdout, the run's value in the
scenario's unit. The pool scripts take an optional CONFIG after ITERS: the
peer to run and its start method (peers.py).
"""

import statistics
import sys
import time


def args():
    """(variant, iters) from the command line (a CONFIG may follow)."""
    if len(sys.argv) not in (3, 4):
        sys.exit(f"usage: {sys.argv[0]} VARIANT ITERS [CONFIG]")
    return sys.argv[1], int(sys.argv[2])


def median_us(cycle, iters):
    """Runs cycle() once untimed, then ITERS times; the median in µs."""
    cycle()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        cycle()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def report(value):
    """Prints the run's value, the only thing a script writes to stdout."""
    print(f"{value:.3f}")


def rss_mib(pid):
    """The resident set size of process PID in MiB (VmRSS in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def uss_mib(pid):
    """The private memory of process PID in MiB: Private_Clean +
    Private_Dirty in /proc/PID/smaps_rollup."""
    kib = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kib += int(line.split()[1])
    return kib / 1024
