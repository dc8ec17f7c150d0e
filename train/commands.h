/* commands.h — the subcommands of the `xlmc` program (train/main.c lists them).
 *
 * Each lives in train/cmd_<name>.c as `int cmd_<name>(int argc, char **argv)`, with argv[0]
 * the subcommand's name; it prints its own --help and returns the process exit status. A
 * command that is declared here but not built is a link error, not a silent gap in --help. */
#ifndef XLMC_COMMANDS_H
#define XLMC_COMMANDS_H

int cmd_train(int argc, char **argv);        /* train/cmd_train.c */
int cmd_eval(int argc, char **argv);         /* train/cmd_eval.c */
int cmd_generate(int argc, char **argv);     /* train/cmd_generate.c */
int cmd_fill_mask(int argc, char **argv);    /* train/cmd_fill_mask.c */
int cmd_plot(int argc, char **argv);         /* train/cmd_plot.c */
int cmd_prep(int argc, char **argv);         /* train/cmd_prep.c */
int cmd_data_info(int argc, char **argv);    /* train/cmd_prep.c */
int cmd_data_convert(int argc, char **argv); /* train/cmd_data.c */
int cmd_bpe_learn(int argc, char **argv);    /* train/cmd_bpe.c */
int cmd_encode(int argc, char **argv);       /* train/cmd_bpe.c */
int cmd_forward(int argc, char **argv);      /* train/cmd_forward.c */
int cmd_import_hf(int argc, char **argv);    /* train/cmd_hf.c */
int cmd_export_hf(int argc, char **argv);    /* train/cmd_hf.c */
int cmd_selftest(int argc, char **argv);     /* train/cmd_selftest.c */

#endif
