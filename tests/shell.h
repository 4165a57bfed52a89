/* shell.h -- what the tests of the program share: running a command line the test built from its own temporary
 * paths, and reading a file back whole. */
#ifndef EVB_TEST_SHELL_H
#define EVB_TEST_SHELL_H
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* The command's exit code, or 128 + the signal that ended it. */
static inline int sh(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The file's bytes with a terminating 0 (malloc'd), an empty string if it cannot be read whole, NULL if it
 * cannot be opened. */
static inline char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (!b || n < 0 || fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}
#endif
