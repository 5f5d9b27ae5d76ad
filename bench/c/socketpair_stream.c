/* Limit for pipe_1mib and the pipe size sweep: a forked child reads
 * everything from a Unix socketpair while the parent writes ITERS
 * messages of VARIANT bytes ("-": 1 MiB), each one write(2) of a 4-byte
 * length header plus the body (writev), as a framed pipe must. The child
 * answers one byte once it has read it all. Prints GB/s (1e9 bytes/s of
 * message bodies). */
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef DEFAULT_SIZE
#define DEFAULT_SIZE (1L << 20)
#endif

int main(int argc, char **argv) {
    long iters = bench_iters(argc, argv);
    long size = strcmp(argv[1], "-") == 0 ? DEFAULT_SIZE : strtol(argv[1], NULL, 10);
    if (size <= 0) {
        fprintf(stderr, "bad size %s\n", argv[1]);
        return 2;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        return 1;
    }
    char *buf = malloc(size + 4);
    if (!buf) {
        perror("malloc");
        return 1;
    }
    memset(buf, 7, size + 4);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        long want = (size + 4) * iters;
        long chunk = size + 4 < (1 << 20) ? (1 << 20) : size + 4;
        char *in = malloc(chunk);
        char ready = 'r';
        if (write(sv[1], &ready, 1) != 1)
            _exit(1);
        while (want > 0) {
            ssize_t n = read(sv[1], in, chunk);
            if (n <= 0)
                _exit(1);
            want -= n;
        }
        _exit(write(sv[1], &ready, 1) == 1 ? 0 : 1);
    }
    close(sv[1]);
    char c;
    if (read(sv[0], &c, 1) != 1) {
        fprintf(stderr, "child did not start\n");
        return 1;
    }
    uint32_t header = htonl((uint32_t)size);
    double t0 = now_us();
    for (long i = 0; i < iters; i++) {
        struct iovec iov[2] = {{&header, 4}, {buf, size}};
        int idx = 0;
        while (idx < 2) {
            ssize_t n = writev(sv[0], iov + idx, 2 - idx);
            if (n < 0) {
                perror("writev");
                return 1;
            }
            while (idx < 2 && (size_t)n >= iov[idx].iov_len) {
                n -= iov[idx].iov_len;
                idx++;
            }
            if (idx < 2) {
                iov[idx].iov_base = (char *)iov[idx].iov_base + n;
                iov[idx].iov_len -= n;
            }
        }
    }
    if (read(sv[0], &c, 1) != 1) {
        fprintf(stderr, "child failed\n");
        return 1;
    }
    double us = now_us() - t0;
    int status;
    waitpid(pid, &status, 0);
    report(size * (double)iters / us / 1e3);
    return 0;
}
