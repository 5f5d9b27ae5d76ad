/* process_start limit for spawn: posix_spawn /bin/true and waitpid it.
 * Prints the median µs per cycle. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

static void cycle(void) {
    pid_t pid;
    char *argv[] = {"/bin/true", NULL};
    int err = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (err) {
        fprintf(stderr, "posix_spawn /bin/true: error %d\n", err);
        exit(1);
    }
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
