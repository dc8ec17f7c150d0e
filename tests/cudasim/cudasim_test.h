/* cudasim_test.h — what the cudasim tests share: EXPECT (counts failures in g_fail and goes
 * on) and reported_in_child (runs a misuse in a forked process, whose report ends it). */
#ifndef XLMC_CUDASIM_TEST_H
#define XLMC_CUDASIM_TEST_H

#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>
#include <unistd.h>

[[maybe_unused]] static int g_fail;
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_fail++;                                                                              \
        }                                                                                          \
    } while (0)

/* Runs child in a forked process; 1 if it did not end cleanly (the bug was reported). */
static inline int reported_in_child(int (*child)(void)) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) _exit(child());
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        exit(1);
    }
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

#endif
