/* Limit for pipe_small: like socketpair_stream.c, but counts messages of
 * 13 bytes (a 4-byte header and a 9-byte body, about what a small typed
 * message is), one write(2) each. Prints messages per second. */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "bench.h"

#define MSG 13

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
    if (pid == 0) {
        close(sv[0]);
        long want = (long)MSG * iters;
        static char in[1 << 16];
        char ready = 'r';
        if (write(sv[1], &ready, 1) != 1)
            _exit(1);
        while (want > 0) {
            ssize_t n = read(sv[1], in, sizeof in);
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
    char msg[MSG] = {0};
    uint32_t header = htonl(MSG - 4);
    memcpy(msg, &header, 4);
    double t0 = now_us();
    for (long i = 0; i < iters; i++) {
        memcpy(msg + 5, &i, 8);
        if (write(sv[0], msg, MSG) != MSG) {
            perror("write");
            return 1;
        }
    }
    if (read(sv[0], &c, 1) != 1) {
        fprintf(stderr, "child failed\n");
        return 1;
    }
    double us = now_us() - t0;
    int status;
    waitpid(pid, &status, 0);
    report(iters / us * 1e6);
    return 0;
}
