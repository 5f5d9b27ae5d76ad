/* Limit for pipe_1mib: memcpy of 1 MiB (or VARIANT bytes when it is a
 * number) between two buffers, ITERS times, in one process. What copying
 * the bytes once costs; a pipe copies them twice (in and out of the
 * kernel). Prints GB/s (1e9 bytes/s). */
#include <string.h>

#include "bench.h"

int main(int argc, char **argv) {
    long iters = bench_iters(argc, argv);
    long size = strtol(argv[1], NULL, 10);
    if (size <= 0)
        size = 1L << 20;
    char *a = malloc(size), *b = malloc(size);
    if (!a || !b) {
        perror("malloc");
        return 1;
    }
    memset(a, 1, size);
    memset(b, 2, size);
    memcpy(b, a, size); /* untimed: pages are mapped */
    double t0 = now_us();
    for (long i = 0; i < iters; i++) {
        a[i % size] = (char)i;
        memcpy(b, a, size);
        __asm__ volatile("" : : "r"(b) : "memory");
    }
    double us = now_us() - t0;
    report(size * (double)iters / us / 1e3);
    return 0;
}
