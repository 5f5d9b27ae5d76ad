/* Limit for pipe_pingpong: a parent and a forked child bounce a 13-byte
 * message (4-byte header, 9-byte body) over a Unix socketpair, blocking
 * reads on both sides. Prints the mean µs per round trip. */
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MSG 13

/* Reads exactly MSG bytes; 0 at end of file. */
static int read_msg(int fd, char *buf) {
    size_t got = 0;
    while (got < MSG) {
        ssize_t n = read(fd, buf + got, MSG - got);
        if (n <= 0)
            return 0;
        got += n;
    }
    return 1;
}

int main(int argc, char **argv) {
    long iters = bench_iters(argc, argv);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    char msg[MSG] = {0, 0, 0, MSG - 4};
    if (pid == 0) {
        close(sv[0]);
        while (read_msg(sv[1], msg))
            if (write(sv[1], msg, MSG) != MSG)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    /* One untimed round trip: the child is running. */
    if (write(sv[0], msg, MSG) != MSG || !read_msg(sv[0], msg)) {
        fprintf(stderr, "child failed\n");
        return 1;
    }
    double t0 = now_us();
    for (long i = 0; i < iters; i++) {
        if (write(sv[0], msg, MSG) != MSG || !read_msg(sv[0], msg)) {
            fprintf(stderr, "child failed\n");
            return 1;
        }
    }
    double us = now_us() - t0;
    close(sv[0]);
    int status;
    waitpid(pid, &status, 0);
    report(us / iters);
    return 0;
}
