#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int xlmc_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("xlmc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

void xlmc_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("xlmc: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int xlmc_path(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < len) return 0;
    return xlmc_error("path too long (%d bytes, at most %zu): %.60s...", n, len ? len - 1 : 0,
                      len ? buf : "");
}

static void (*oom_handler)(size_t bytes);

void xlmc_set_oom_handler(void (*handler)(size_t bytes)) {
    oom_handler = handler;
}

static void out_of_memory(size_t bytes) {
    fprintf(stderr, "xlmc: error: out of memory allocating %zu bytes\n", bytes);
    if (oom_handler) oom_handler(bytes);
    abort();
}

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) out_of_memory(bytes);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n * size);
    return p;
}

void *xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) out_of_memory(bytes);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

int xlmc_parse_long(const char *text, long min, long max, long *out) {
    if (!text || !*text || isspace((unsigned char)*text)) return -1;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno == ERANGE || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int xlmc_parse_int(const char *text, int min, int max, int *out) {
    long v;
    if (xlmc_parse_long(text, min, max, &v)) return -1;
    *out = (int)v;
    return 0;
}

int xlmc_parse_u64(const char *text, uint64_t *out) {
    if (!text || !isdigit((unsigned char)*text)) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno == ERANGE || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

int xlmc_parse_double(const char *text, double min, double max, double *out) {
    if (!text || !*text || isspace((unsigned char)*text)) return -1;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno == ERANGE || *end || !isfinite(v) || v < min || v > max) return -1;
    *out = v;
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
