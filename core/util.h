/* util.h — small helpers every folder uses: user-facing errors, checked allocation, timing. */
#ifndef XLMC_UTIL_H
#define XLMC_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Print "xlmc: error: <message>" to stderr. Messages name the file or option, what was wrong
 * and, where it helps, what to do. Returns -1 so `return xlmc_error(...)` reads naturally. */
int xlmc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "xlmc: warning: <message>" to stderr. */
void xlmc_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that cannot return NULL: on failure prints the size and calls the handler of
 * xlmc_set_oom_handler (the xlmc program's exits with status 1), or abort() when none is
 * installed. As in Redis's zmalloc, running out of host memory is not an error a caller can
 * handle, and core/ leaves the decision to end the process to the program. */
void xlmc_set_oom_handler(void (*handler)(size_t bytes));
void *xmalloc(size_t bytes);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t bytes);
char *xstrdup(const char *s);

/* Strict decimal integer: the whole of `text` (no sign for unsigned, no blanks, no trailing
 * characters, no overflow) within [min, max]. 0, or -1 (nothing printed: the caller names
 * the option or key in its message). */
int xlmc_parse_long(const char *text, long min, long max, long *out);
/* The same for an unsigned 64-bit decimal (seeds, hashes): no sign, no overflow. */
int xlmc_parse_u64(const char *text, uint64_t *out);
/* A finite decimal or exponent number, the whole of `text`, within [min, max]. 0 or -1. */
int xlmc_parse_double(const char *text, double min, double max, double *out);
/* The int flavour of xlmc_parse_long. */
int xlmc_parse_int(const char *text, int min, int max, int *out);

/* Paths. Every path the program builds goes through xlmc_path into a buffer of
 * XLMC_PATH_MAX bytes (PATH_MAX on Linux): printf-style, and 0, or -1 after printing an error
 * naming the start of the path when it does not fit, so that a truncated path is never opened
 * or written. */
#define XLMC_PATH_MAX 4096
int xlmc_path(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic wall clock, seconds. */
double now_seconds(void);

#define XLMC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
