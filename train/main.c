/* main.c — the `xlmc` program: one binary, one subcommand per task.
 *
 * The subcommands are declared in train/commands.h; this file only dispatches. */
#include "core/util.h"
#include "train/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XLMC_VERSION "0.1.0"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command COMMANDS[] = {
    {"train", cmd_train, "train or fine-tune a model (mpirun -np N for data parallel)"},
    {"eval", cmd_eval, "loss, perplexity and accuracy of a checkpoint on a data directory"},
    {"generate", cmd_generate, "sample text from a checkpoint"},
    {"fill-mask", cmd_fill_mask, "the words a masked LM predicts for <mask> in a text"},
    {"plot", cmd_plot, "plot train/valid loss of a run directory with gnuplot"},
    {"prep", cmd_prep, "tokenize raw text into HDF5 token shards"},
    {"data-info", cmd_data_info, "summarize a directory of shards"},
    {"data-convert", cmd_data_convert, "upgrade version-1 shards to version 2 in place"},
    {"bpe-learn", cmd_bpe_learn, "learn BPE codes and a vocabulary from text (fastBPE format)"},
    {"encode", cmd_encode, "tokenize text to BPE pieces or ids"},
    {"forward", cmd_forward, "run the model on a batch file: logits, loss, gradients"},
    {"import-hf", cmd_import_hf, "import a Hugging Face XLM model directory"},
    {"export-hf", cmd_export_hf, "export a checkpoint as a Hugging Face model directory"},
    {"selftest", cmd_selftest, "check a compute backend against the CPU reference"},
};

static void usage(FILE *f) {
    fprintf(f,
            "xlmc %s — pretrain, resume and fine-tune XLM causal language models\n\n"
            "usage: xlmc <command> [options]   (xlmc <command> --help for its options)\n\n"
            "commands:\n",
            XLMC_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

/* xmalloc's out-of-memory path (core/util.h): the size is printed already. */
static void exit_out_of_memory(size_t bytes) {
    (void)bytes;
    exit(1);
}

int main(int argc, char **argv) {
    xlmc_set_oom_handler(exit_out_of_memory);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("xlmc %s\n", XLMC_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "xlmc: error: unknown command '%s' (xlmc --help lists them)\n", argv[1]);
    return 2;
}
