/* watchdog.c — the hung-rank watchdog (see watchdog.h). */
#define _GNU_SOURCE
#include "train/watchdog.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WD_HISTORY 64
#define WD_MEDIAN_FACTOR 20.0
#define WD_LINE 96   /* bytes of one rank's heartbeat line */
#define WD_STALE 5.0 /* seconds without a heartbeat write: that rank's process is not running */

struct watchdog {
    struct comm *c;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    double floor_s, deadline_s;
    double last_mark; /* monotonic seconds */
    const char *phase;
    long step;
    double hist[WD_HISTORY];
    int n_hist;
    int hb_fd;        /* heartbeat file or -1 */
    char fired[4300]; /* the file fire() writes, or "" */
};

static double mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This rank's line: its step, the collectives it entered, the wall time of the write. */
static void heartbeat_write(struct watchdog *w, long step) {
    if (w->hb_fd < 0) return;
    char line[WD_LINE + 1];
    unsigned long entered = comm_mpi_entered(NULL);
    int n = snprintf(line, sizeof line, "rank %d step %ld entered %lu wall %.3f", w->c->rank, step,
                     entered, wall_seconds());
    if (n < 0 || n >= WD_LINE) return;
    memset(line + n, ' ', (size_t)(WD_LINE - 1 - n));
    line[WD_LINE - 1] = '\n';
    if (pwrite(w->hb_fd, line, WD_LINE, (off_t)w->c->rank * WD_LINE) != WD_LINE) {
        /* a heartbeat is a diagnosis aid: a failing write only costs the "who" in the message */
    }
}

/* Names the ranks that did not arrive: fewer collectives entered than this rank, or a
 * heartbeat older than WD_STALE seconds (the process is stopped or gone). */
static void report_laggards(struct watchdog *w) {
    if (w->hb_fd < 0) return;
    unsigned long mine = comm_mpi_entered(NULL);
    double now = wall_seconds();
    int named = 0;
    for (int r = 0; r < w->c->world; r++) {
        if (r == w->c->rank) continue;
        char line[WD_LINE + 1];
        ssize_t got = pread(w->hb_fd, line, WD_LINE, (off_t)r * WD_LINE);
        int rr;
        long step;
        unsigned long entered;
        double wall;
        if (got != WD_LINE) continue;
        line[WD_LINE] = 0;
        if (sscanf(line, "rank %d step %ld entered %lu wall %lf", &rr, &step, &entered, &wall) !=
                4 ||
            rr != r)
            continue;
        if (entered < mine || now - wall > WD_STALE) {
            fprintf(stderr,
                    "xlmc: watchdog: rank %d did not arrive: it entered %lu collectives "
                    "(rank %d: %lu), at step %ld; its last heartbeat is %.0f s old%s\n",
                    r, entered, w->c->rank, mine, step, now - wall,
                    now - wall > WD_STALE ? " (its process is stopped or gone)" : "");
            named = 1;
        }
    }
    if (!named)
        fprintf(stderr, "xlmc: watchdog: the heartbeats do not show which rank is behind\n");
}

static void fire(struct watchdog *w, double waited) {
    const char *inside = NULL;
    comm_mpi_entered(&inside);
    char msg[1024];
    snprintf(msg, sizeof msg,
             "xlmc: watchdog: rank %d made no progress for %.0f s (deadline %.0f s) at step "
             "%ld, in %s%s%s; ending the job on all ranks with exit %d (requeue to resume from "
             "the last checkpoint)\n",
             w->c->rank, waited, w->deadline_s, w->step, w->phase, inside ? ", waiting in " : "",
             inside ? inside : "", XLMC_EXIT_HUNG);
    fputs(msg, stderr);
    if (w->fired[0]) {
        FILE *f = fopen(w->fired, "w");
        if (f) {
            fputs(msg, f);
            fclose(f);
        }
    }
    report_laggards(w);
    fflush(stderr);
    fflush(stdout);
    /* Should the abort itself hang, SIGALRM's default action ends this process anyway. */
    alarm(30);
    w->c->abort(w->c, XLMC_EXIT_HUNG);
}

static void *watchdog_main(void *arg) {
    struct watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->quit) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        if (w->quit) break;
        heartbeat_write(w, w->step);
        double waited = mono_seconds() - w->last_mark;
        if (waited > w->deadline_s) fire(w, waited);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct watchdog *watchdog_start(struct comm *c, double floor_seconds, const char *heartbeat,
                                const char *fired) {
    if (floor_seconds <= 0) return NULL;
    struct watchdog *w = xcalloc(1, sizeof *w);
    if (fired) snprintf(w->fired, sizeof w->fired, "%s", fired);
    w->c = c;
    w->floor_s = w->deadline_s = floor_seconds;
    w->last_mark = mono_seconds();
    w->phase = "setup";
    w->hb_fd = -1;
    if (heartbeat && c->world > 1) {
        w->hb_fd = open(heartbeat, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (w->hb_fd < 0)
            xlmc_warn("watchdog: cannot open %s (%s): a hang will not name the late rank",
                      heartbeat, strerror(errno));
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    heartbeat_write(w, 0);
    if (pthread_create(&w->thread, NULL, watchdog_main, w)) {
        xlmc_warn("watchdog: cannot start its thread: a hung rank will not end the job");
        if (w->hb_fd >= 0) close(w->hb_fd);
        free(w);
        return NULL;
    }
    return w;
}

void watchdog_mark(struct watchdog *w, const char *phase, long step) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->phase = phase;
    w->step = step;
    w->last_mark = mono_seconds();
    pthread_mutex_unlock(&w->mu);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void watchdog_step_time(struct watchdog *w, double seconds) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->hist[w->n_hist++ % WD_HISTORY] = seconds;
    int n = w->n_hist < WD_HISTORY ? w->n_hist : WD_HISTORY;
    double s[WD_HISTORY];
    memcpy(s, w->hist, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double d = WD_MEDIAN_FACTOR * s[n / 2];
    w->deadline_s = d > w->floor_s ? d : w->floor_s;
    pthread_mutex_unlock(&w->mu);
}

double watchdog_deadline(const struct watchdog *w) {
    return w ? w->deadline_s : 0;
}

void watchdog_stop(struct watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    if (w->hb_fd >= 0) close(w->hb_fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
