/* process_start limit for fork (and forkserver): fork, _exit(0) in the
 * child, waitpid in the parent. Prints the median µs per cycle. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static void cycle(void) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0)
        _exit(0);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed\n");
        exit(1);
    }
}

int main(int argc, char **argv) {
    report(median_us(cycle, bench_iters(argc, argv)));
    return 0;
}
