/* cmd_plot.c — `xlmc plot R`: R/loss.png, train and valid loss against tokens, drawn by
 * gnuplot from R/metrics.jsonl. */
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
               "against training tokens, from RUN_DIR/metrics.jsonl. Needs gnuplot\n"
               "(apt-get install gnuplot-nox).\n");
}

/* The train and valid points of metrics.jsonl as "tokens loss" lines in two files. */
static int extract(const char *metrics, FILE *train, FILE *valid, long *n_train, long *n_valid) {
    FILE *f = fopen(metrics, "r");
    if (!f) return xlmc_error("%s: cannot open it (is this a run directory?)", metrics);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) {
            xlmc_warn("%s:%ld: not JSON (%s), skipped", metrics, lineno, err.text);
            continue;
        }
        const char *type = json_string_value(json_object_get(o, "type"));
        json_t *tok = json_object_get(o, "tokens"), *loss = json_object_get(o, "loss");
        if (type && json_is_number(tok) && json_is_number(loss)) {
            FILE *out = !strcmp(type, "train") ? train : !strcmp(type, "valid") ? valid : NULL;
            if (out) {
                fprintf(out, "%.17g %.17g\n", json_number_value(tok), json_number_value(loss));
                ++*(out == train ? n_train : n_valid);
            }
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return 0;
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
    char metrics[XLMC_PATH_MAX], tdat[XLMC_PATH_MAX], vdat[XLMC_PATH_MAX], png[XLMC_PATH_MAX];
    char tmp_png[XLMC_PATH_MAX];
    if (xlmc_path(metrics, sizeof metrics, "%s/metrics.jsonl", run) ||
        xlmc_path(tdat, sizeof tdat, "%s/.plot-train.dat", run) ||
        xlmc_path(vdat, sizeof vdat, "%s/.plot-valid.dat", run) ||
        xlmc_path(png, sizeof png, "%s/loss.png", run) ||
        xlmc_path(tmp_png, sizeof tmp_png, "%s/.loss.png.tmp", run))
        return 1;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        xlmc_error("plot: gnuplot is not installed (apt-get install gnuplot-nox)");
        return 1;
    }
    FILE *ft = fopen(tdat, "w"), *fv = fopen(vdat, "w");
    long nt = 0, nv = 0;
    int rc = !ft || !fv ? xlmc_error("plot: cannot write in %s", run) : 0;
    if (!rc) rc = extract(metrics, ft, fv, &nt, &nv);
    if (ft) fclose(ft);
    if (fv) fclose(fv);
    if (!rc && nt + nv == 0) rc = xlmc_error("%s: no train or valid loss logged yet", metrics);
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
            if (nt)
                fprintf(gp, "'%s' using 1:2 with lines lw 2 title 'train'%s", tdat, nv ? ", " : "");
            if (nv) fprintf(gp, "'%s' using 1:2 with linespoints pt 7 lw 2 title 'valid'", vdat);
            fprintf(gp, "\n");
            int st = pclose(gp);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || rename(tmp_png, png))
                rc = xlmc_error("plot: gnuplot failed to write %s", png);
        }
    }
    unlink(tdat);
    unlink(vdat);
    unlink(tmp_png);
    if (rc) return 1;
    printf("%s\n", png);
    return 0;
}
