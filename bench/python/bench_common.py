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


# --- The fault scenarios (pool_cancel_replace, pool_worker_killed,
# pool_time_limit) and the latency one (pool_await_latency).

import os  # noqa: E402

# Longest a victim task sleeps if nothing stops it.
VICTIM_SLEEP = 30.0


def hang_after():
    """Seconds after which a pool that has not reported a fault counts as
    hung (the harness sets MULTIPROC_BENCH_HANG_AFTER)."""
    return float(os.environ.get("MULTIPROC_BENCH_HANG_AFTER", "5"))


def monotonic_ns():
    """CLOCK_MONOTONIC in ns: one clock for every process on the machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def victim(path):
    """A task that writes ``PID NS`` (its start) to PATH, then sleeps."""
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {monotonic_ns()}")
    os.rename(path + ".tmp", path)
    time.sleep(VICTIM_SLEEP)
    return 0


def victim_or_echo(item):
    """Item (0, path) is the victim; (i, path) returns i at once."""
    i, path = item
    return victim(path) if i == 0 else i


def wait_victim(path, bound=10.0):
    """(pid, start ns) of the victim once it runs; exits if it never does."""
    t0 = time.monotonic()
    while True:
        try:
            with open(path) as f:
                pid, ns = f.read().split()
                return int(pid), int(ns)
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() - t0 > bound:
            sys.exit(f"the victim task did not start within {bound} s")
        time.sleep(0.0002)


def hung(scratch=None):
    """Reports the run as hung and exits at once, leaving the pool as it
    is: the harness kills this script's whole process group. SCRATCH, a
    directory, is removed first."""
    if scratch:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print("hung", flush=True)
    os._exit(0)


def stamp_after_1ms():
    """Spins 1 ms, then returns the time it finished (CLOCK_MONOTONIC)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1e-3:
        pass
    return monotonic_ns()


def spin_100us(x):
    """Spins 100 µs and returns its input."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 100e-6:
        pass
    return x


def noop():
    pass


def square(x):
    return x * x
