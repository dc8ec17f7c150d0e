/* run_guard.c — run-directory lock, resume policy, language ids (see run_guard.h). */
#define _GNU_SOURCE
#define RG_TEXT 512 /* a line, section, key or value of config_to_string's output */
#include "train/run_guard.h"
#include "core/util.h"
#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the run-directory lock ---- */

int run_lock_acquire(const char *run_dir, int *created) {
    char path[4200];
    *created = 0;
    if (mkdir(run_dir, 0777) == 0)
        *created = 1;
    else if (errno != EEXIST)
        return xlmc_error("cannot create run directory %s: %s", run_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        xlmc_error("cannot open the run lock %s: %s", path, strerror(errno));
        run_lock_release(-1, run_dir, *created, 1);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        if (errno != EWOULDBLOCK) {
            /* e.g. ENOLCK on an NFS mount without lockd: nothing can be enforced here */
            xlmc_warn("%s: this file system does not lock (%s): two runs on this directory "
                      "will not be refused",
                      path, strerror(errno));
        } else {
            char holder[512] = "";
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = 0;
            holder[strcspn(holder, "\n")] = 0;
            close(fd);
            return xlmc_error("run directory %s is in use by another xlmc train (%s holds %s): "
                              "wait for it to end, or use another --run-dir",
                              run_dir, holder[0] ? holder : "a process", path);
        }
    }
    char host[256] = "?", line[600];
    gethostname(host, sizeof host - 1);
    const char *job = getenv("SLURM_JOB_ID");
    time_t now = time(NULL);
    struct tm tm;
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int len = snprintf(line, sizeof line, "host %s pid %ld slurm_job %s since %s\n", host,
                       (long)getpid(), job && *job ? job : "-", when);
    if (ftruncate(fd, 0) || pwrite(fd, line, (size_t)len, 0) != len)
        xlmc_warn("%s: cannot record the holder: %s", path, strerror(errno));
    return fd;
}

void run_lock_release(int fd, const char *run_dir, int created, int remove) {
    if (remove && created) {
        char path[4200];
        snprintf(path, sizeof path, "%s/lock", run_dir);
        unlink(path);
        rmdir(run_dir); /* fails, harmlessly, when something else was put there */
    }
    if (fd >= 0) close(fd);
}

/* ---- resume policy ---- */

/* Settings that only say how often to log, evaluate and save: free to change on resume. */
static int is_bookkeeping(const char *key) {
    static const char *const keys[] = {"log_every", "eval_every",   "checkpoint_every",
                                       "keep_last", "eval_batches", "watchdog_seconds"};
    for (size_t i = 0; i < XLMC_ARRAY_LEN(keys); i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

/* The next "key = value" line of an INI text from config_to_string, with its section. */
static const char *next_setting(const char *p, char *section, char *key, char *value) {
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[RG_TEXT];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        p += n + (eol != NULL);
        if (line[0] == '[') {
            snprintf(section, RG_TEXT, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq) continue;
        *eq = 0;
        snprintf(key, RG_TEXT, "%s", line);
        snprintf(value, RG_TEXT, "%s", eq + 3);
        return p;
    }
    return NULL;
}

int resume_policy(const struct xlmc_config *ck, const struct xlmc_config *user, int accept,
                  int print, json_t *changes) {
    char *a = config_to_string(ck), *b = config_to_string(user);
    const char *pa = a, *pb = b;
    char sa[RG_TEXT] = "", sb[RG_TEXT] = "", ka[RG_TEXT], kb[RG_TEXT], va[RG_TEXT], vb[RG_TEXT];
    int refused = 0;
    while ((pa = next_setting(pa, sa, ka, va)) && (pb = next_setting(pb, sb, kb, vb))) {
        if (strcmp(sa, sb) || strcmp(ka, kb)) break; /* same table, same order: cannot happen */
        if (!strcmp(va, vb)) continue;
        int book = is_bookkeeping(ka);
        if (!book && !accept) refused++;
        if (print)
            fprintf(stderr, "xlmc: resume: [%s] %s changes from %s to %s (%s)\n", sa, ka, va, vb,
                    book     ? "bookkeeping, accepted"
                    : accept ? "changes the run, accepted by --accept-changes"
                             : "changes the run: refused");
        char name[2 * RG_TEXT];
        snprintf(name, sizeof name, "%s.%s", sa, ka);
        json_array_append_new(changes,
                              json_pack("{s:s, s:s, s:s, s:s}", "key", name, "from", va, "to", vb,
                                        "kind", book ? "bookkeeping" : "trajectory"));
    }
    free(a);
    free(b);
    if (refused)
        return xlmc_error("%s changes %d setting(s) of the run being resumed (listed above): the "
                          "run could no longer be what it was. Resume with the checkpoint's "
                          "settings, use a new --run-dir, or pass --accept-changes to continue "
                          "with the new ones (recorded in metrics.jsonl)",
                          user->path, refused);
    return 0;
}

/* ---- language ids ---- */

int check_lang_ids(const struct model_config *m, const char *what) {
    for (int k = 0; k < m->n_langs; k++) {
        if (!strcmp(m->langs[k], shard_lang_code(k))) continue;
        char want[XLMC_MAX_LANGS * XLMC_LANG_LEN + 8] = "", got[sizeof want] = "";
        for (int j = 0; j < m->n_langs; j++) {
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", j ? "," : "",
                     shard_lang_code(j));
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", j ? "," : "",
                     m->langs[j]);
        }
        return xlmc_error("%s: [model] langs = %s, but the shards number their languages %s "
                          "(language id %d is '%s', not '%s'): write langs = %s, or every "
                          "sentence would train and be scored as another language",
                          what, got, want, k, shard_lang_code(k), m->langs[k], want);
    }
    return 0;
}
