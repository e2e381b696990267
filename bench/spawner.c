/* The physical limit for bench/peers.sh: spawn N children of PROG with at most J in
 * flight (posix_spawn, which glibc implements with clone(CLONE_VM|CLONE_VFORK) + exec),
 * reap them with waitpid, nothing else: no log, no output capture, no scheduler.
 *
 *   cc -O2 -o spawner spawner.c && ./spawner 2000 2 /bin/true
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: spawner N J PROG [ARGS...]\n");
        return 2;
    }
    long n = atol(argv[1]), j = atol(argv[2]);
    long started = 0, running = 0, failed = 0;
    while (started < n || running > 0) {
        while (started < n && running < j) {
            pid_t pid;
            if (posix_spawn(&pid, argv[3], NULL, NULL, &argv[3], environ) != 0) {
                perror("posix_spawn");
                return 1;
            }
            started++;
            running++;
        }
        int status;
        if (waitpid(-1, &status, 0) > 0) {
            running--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
        }
    }
    return failed ? 1 : 0;
}
