"""pipe_1mib and the pipe size sweep: send_bytes through a multiprocessing
Pipe, parent to child.

Usage: python3 pipe_bytes.py SIZE ITERS   (SIZE in bytes; "-" means 1 MiB)
The parent sends ITERS messages of SIZE bytes with ``send_bytes``; the child
receives them with ``recv_bytes`` and answers once it has them all. Prints
GB/s (1e9 bytes of message bodies per second; the child's start is not
timed).
"""

import multiprocessing
import time

import bench_common


def receiver(conn, n):
    conn.send_bytes(b"ready")
    for _ in range(n):
        conn.recv_bytes()
    conn.send_bytes(b"done")


def main():
    variant, iters = bench_common.args()
    size = 1 << 20 if variant == "-" else int(variant)
    payload = b"\x07" * size
    ours, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=receiver, args=(theirs, iters))
    p.start()
    theirs.close()
    assert ours.recv_bytes() == b"ready"
    t0 = time.perf_counter()
    for _ in range(iters):
        ours.send_bytes(payload)
    assert ours.recv_bytes() == b"done"
    elapsed = time.perf_counter() - t0
    p.join()
    bench_common.report(size * iters / elapsed / 1e9)


if __name__ == "__main__":
    main()
