/* cmd_plot.c — `xlmc plot R`: R/loss.png, train and valid loss against tokens (a line per
 * objective), drawn by gnuplot from R/metrics.jsonl. */
#include "train/commands.h"

#include "core/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: xlmc plot RUN_DIR\n\n"
               "Writes RUN_DIR/loss.png: training loss and validation loss (nats per token)\n"
               "against training tokens, from RUN_DIR/metrics.jsonl, one line per objective\n"
               "when the run alternates objectives (clm, mlm:de, tlm:de-en, ...). Prints each\n"
               "line's number of points on stderr and the picture's path on stdout. Needs gnuplot\n"
               "(apt-get install gnuplot-nox).\n");
}

/* One line of the plot: the train or valid points of one objective, as "tokens loss" lines. */
#define PLOT_MAX_SERIES 32
struct series {
    int valid;    /* 0 train, 1 valid */
    char obj[32]; /* the record's objective ("" in logs written before objectives) */
    char *text;   /* "tokens loss\n" lines */
    size_t len, cap;
    long n;
};

static struct series *series_of(struct series *s, int *n, int valid, const char *obj) {
    for (int i = 0; i < *n; i++)
        if (s[i].valid == valid && !strcmp(s[i].obj, obj)) return &s[i];
    if (*n == PLOT_MAX_SERIES) return NULL;
    struct series *x = &s[(*n)++];
    memset(x, 0, sizeof *x);
    x->valid = valid;
    snprintf(x->obj, sizeof x->obj, "%s", obj);
    return x;
}

static void series_add(struct series *x, double tokens, double loss) {
    char line[64];
    int k = snprintf(line, sizeof line, "%.17g %.17g\n", tokens, loss);
    if (x->len + (size_t)k + 1 > x->cap) {
        x->cap = 2 * (x->len + (size_t)k + 1) + 256;
        x->text = xrealloc(x->text, x->cap);
    }
    memcpy(x->text + x->len, line, (size_t)k + 1);
    x->len += (size_t)k;
    x->n++;
}

/* The train and valid points of metrics.jsonl, one series per record type and objective (a
 * run that alternates objectives logs each step's loss under its own objective: one line of
 * them all would zigzag between CLM and MLM losses). */
static int extract(const char *metrics, struct series *s, int *n) {
    FILE *f = fopen(metrics, "r");
    if (!f) return xlmc_error("%s: cannot open it (is this a run directory?)", metrics);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int full = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) {
            xlmc_warn("%s:%ld: not JSON (%s), skipped", metrics, lineno, err.text);
            continue;
        }
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *obj = json_string_value(json_object_get(o, "objective"));
        json_t *tok = json_object_get(o, "tokens"), *loss = json_object_get(o, "loss");
        int valid = type && !strcmp(type, "valid");
        if (type && (valid || !strcmp(type, "train")) && json_is_number(tok) &&
            json_is_number(loss)) {
            struct series *x = series_of(s, n, valid, obj ? obj : "");
            if (x)
                series_add(x, json_number_value(tok), json_number_value(loss));
            else if (!full++)
                xlmc_warn("%s: more than %d series; objective '%s' left out", metrics,
                          PLOT_MAX_SERIES, obj ? obj : "");
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return 0;
}

/* "train", or "train clm" when the run logged more than one objective */
static void series_title(const struct series *x, int objectives, char *out, size_t len) {
    snprintf(out, len, "%s%s%s", x->valid ? "valid" : "train", objectives > 1 ? " " : "",
             objectives > 1 ? x->obj : "");
}

int cmd_plot(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    const char *run = argv[1];
    char metrics[XLMC_PATH_MAX], dat[XLMC_PATH_MAX], png[XLMC_PATH_MAX];
    char tmp_png[XLMC_PATH_MAX];
    if (xlmc_path(metrics, sizeof metrics, "%s/metrics.jsonl", run) ||
        xlmc_path(dat, sizeof dat, "%s/.plot.dat", run) ||
        xlmc_path(png, sizeof png, "%s/loss.png", run) ||
        xlmc_path(tmp_png, sizeof tmp_png, "%s/.loss.png.tmp", run))
        return 1;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        xlmc_error("plot: gnuplot is not installed (apt-get install gnuplot-nox)");
        return 1;
    }
    struct series s[PLOT_MAX_SERIES];
    int n = 0, objectives = 0;
    int rc = extract(metrics, s, &n);
    if (!rc && n == 0) rc = xlmc_error("%s: no train or valid loss logged yet", metrics);
    for (int i = 0; i < n; i++) { /* distinct objectives */
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= !strcmp(s[j].obj, s[i].obj);
        objectives += !seen;
    }
    /* one data file, a block per series (gnuplot's `index`) */
    FILE *fd = rc ? NULL : fopen(dat, "w");
    if (!rc && !fd) rc = xlmc_error("plot: cannot write in %s", run);
    for (int i = 0; fd && i < n; i++)
        fprintf(fd, "%s%s", i ? "\n\n" : "", s[i].text);
    if (fd && fclose(fd)) rc = xlmc_error("plot: cannot write %s", dat);
    if (!rc) {
        FILE *gp = popen("gnuplot 2>&1", "w");
        if (!gp) {
            rc = xlmc_error("plot: cannot start gnuplot");
        } else {
            /* pngcairo draws nicer lines; the plain png terminal is the fallback */
            fprintf(gp,
                    "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                    "  set terminal pngcairo size 900,560\n"
                    "} else { set terminal png size 900,560 }\n"
                    "set output '%s'\n"
                    "set title 'xlmc: %s'\nset xlabel 'training tokens'\n"
                    "set ylabel 'loss (nats per token)'\nset grid\nset key top right\n"
                    "plot ",
                    tmp_png, run);
            for (int i = 0; i < n; i++) {
                char title[48];
                series_title(&s[i], objectives, title, sizeof title);
                fprintf(gp, "%s'%s' index %d using 1:2 with %s lw 2 title '%s'", i ? ", " : "", dat,
                        i, s[i].valid ? "linespoints pt 7" : "lines", title);
            }
            fprintf(gp, "\n");
            int st = pclose(gp);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || rename(tmp_png, png))
                rc = xlmc_error("plot: gnuplot failed to write %s", png);
        }
    }
    unlink(dat);
    unlink(tmp_png);
    if (!rc) { /* what was drawn on stderr; stdout keeps the picture's path alone */
        for (int i = 0; i < n; i++) {
            char title[48];
            series_title(&s[i], objectives, title, sizeof title);
            fprintf(stderr, "plot: %s, %ld points\n", title, s[i].n);
        }
    }
    for (int i = 0; i < n; i++)
        free(s[i].text);
    if (rc) return 1;
    printf("%s\n", png);
    return 0;
}
