/* Shared by the benchmark programs in this directory.
 *
 * The convention (the same for the Python scripts in ../python): a program
 * is run as `PROGRAM VARIANT ITERS`, does ITERS iterations of the scenario's
 * operation and prints a single number on stdout, the run's value in the
 * scenario's unit. */
#ifndef MULTIPROC_BENCH_H
#define MULTIPROC_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Monotonic time in microseconds. */
static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* ITERS from the command line; exits with a usage message if absent. */
static long bench_iters(int argc, char **argv) {
    long iters = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s VARIANT ITERS\n", argv[0]);
        exit(2);
    }
    return iters;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs cycle() once untimed, then ITERS times; the median in µs. */
static inline double median_us(void (*cycle)(void), long iters) {
    double *times = malloc(iters * sizeof *times);
    if (!times) {
        perror("malloc");
        exit(1);
    }
    cycle();
    for (long i = 0; i < iters; i++) {
        double t0 = now_us();
        cycle();
        times[i] = now_us() - t0;
    }
    qsort(times, iters, sizeof *times, cmp_double);
    double m = iters % 2 ? times[iters / 2] : (times[iters / 2 - 1] + times[iters / 2]) / 2;
    free(times);
    return m;
}

/* Prints the run's value, the only thing a program writes to stdout. */
static void report(double value) { printf("%.3f\n", value); }

#endif
