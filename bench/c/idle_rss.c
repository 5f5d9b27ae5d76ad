/* Limit for idle_rss (every start method): the smallest idle child, a
 * forked C process blocked in read(2) on a pipe. Reads its VmRSS from
 * /proc/PID/status (idle_uss.c: Private_Clean + Private_Dirty from
 * /proc/PID/smaps_rollup), ITERS children one after the other. Prints the
 * median in MiB. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static double rss_mib(pid_t pid) {
    char path[64], line[256];
#ifdef IDLE_USS
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
#else
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
#endif
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    double kib = -1;
    while (fgets(line, sizeof line, f)) {
#ifdef IDLE_USS
        if (strncmp(line, "Private_Clean:", 14) == 0 || strncmp(line, "Private_Dirty:", 14) == 0)
            kib = (kib < 0 ? 0 : kib) + strtod(line + 14, NULL);
#else
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtod(line + 6, NULL);
#endif
    }
    fclose(f);
    if (kib < 0) {
        fprintf(stderr, "%s has no memory figure\n", path);
        exit(1);
    }
    return kib / 1024;
}

int main(int argc, char **argv) {
    long iters = bench_iters(argc, argv);
    double *values = malloc(iters * sizeof *values);
    for (long i = 0; i < iters; i++) {
        int to_child[2], to_parent[2];
        if (pipe(to_child) < 0 || pipe(to_parent) < 0) {
            perror("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        char c = 'r';
        if (pid == 0) {
            if (write(to_parent[1], &c, 1) != 1)
                _exit(1);
            _exit(read(to_child[0], &c, 1) == 1 ? 0 : 1);
        }
        if (read(to_parent[0], &c, 1) != 1) {
            fprintf(stderr, "child did not start\n");
            return 1;
        }
        values[i] = rss_mib(pid);
        if (write(to_child[1], &c, 1) != 1) {
            perror("write");
            return 1;
        }
        int status;
        waitpid(pid, &status, 0);
        close(to_child[0]);
        close(to_child[1]);
        close(to_parent[0]);
        close(to_parent[1]);
    }
    qsort(values, iters, sizeof *values, cmp_double);
    report(iters % 2 ? values[iters / 2] : (values[iters / 2 - 1] + values[iters / 2]) / 2);
    return 0;
}
