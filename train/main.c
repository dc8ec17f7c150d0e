/* main.c — the `xlmc` program: one binary, one subcommand per task.
 *
 * Each subcommand lives in train/cmd_<name>.c as `int cmd_<name>(int argc, char **argv)`,
 * with argv[0] the subcommand's name; it prints its own --help and returns the exit status.
 * The declarations are weak so that a build without one of the files (a trimmed tool build)
 * still links and simply does not list that command. */
#include <stdio.h>
#include <string.h>

#define XLMC_VERSION "0.1.0"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

int cmd_forward(int argc, char **argv) __attribute__((weak));
int cmd_train(int argc, char **argv) __attribute__((weak));
int cmd_eval(int argc, char **argv) __attribute__((weak));
int cmd_generate(int argc, char **argv) __attribute__((weak));
int cmd_plot(int argc, char **argv) __attribute__((weak));
int cmd_prep(int argc, char **argv) __attribute__((weak));
int cmd_data_info(int argc, char **argv) __attribute__((weak));
int cmd_data_convert(int argc, char **argv) __attribute__((weak));
int cmd_bpe_learn(int argc, char **argv) __attribute__((weak));
int cmd_encode(int argc, char **argv) __attribute__((weak));
int cmd_import_hf(int argc, char **argv) __attribute__((weak));
int cmd_export_hf(int argc, char **argv) __attribute__((weak));
int cmd_selftest(int argc, char **argv) __attribute__((weak));

static const struct command COMMANDS[] = {
    {"train", cmd_train, "train or fine-tune a model (mpirun -np N for data parallel)"},
    {"eval", cmd_eval, "loss, perplexity and accuracy of a checkpoint on a data directory"},
    {"generate", cmd_generate, "sample text from a checkpoint"},
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

static void usage(FILE *f)
{
    fprintf(f, "xlmc %s — pretrain, resume and fine-tune XLM causal language models\n\n"
               "usage: xlmc <command> [options]   (xlmc <command> --help for its options)\n\n"
               "commands:\n",
            XLMC_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (COMMANDS[i].run) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv)
{
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
        if (COMMANDS[i].run && !strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "xlmc: error: unknown command '%s' (xlmc --help lists them)\n", argv[1]);
    return 2;
}
