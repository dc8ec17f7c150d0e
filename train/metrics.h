/* metrics.h — throughput, model FLOPs utilization and the run's metrics.jsonl. */
#ifndef XLMC_METRICS_H
#define XLMC_METRICS_H

#include "core/model.h"

#include <jansson.h>
#include <stdio.h>

/* Model FLOPs per trained token: 6 * parameters (forward 2, backward 4 per weight) plus
 * attention scores and values, 12 * L * C * T (PaLM's appendix B accounting), every position
 * predicted (CLM). */
double metrics_flops_per_token(const struct model *m);

/* The model FLOPs of one step of `positions` positions (all ranks) of which `classified` went
 * through the output layer: every position for CLM; only the predicted ones for MLM and TLM,
 * whose output layer runs on the gathered rows. The output layer (the tied (V,C) embedding
 * and its bias) is counted per classified row, everything else per position. */
double metrics_step_flops(const struct model *m, double positions, double classified);

/* Peak FLOP/s of one rank's device, what MFU is measured against:
 *   XLMC_PEAK_TFLOPS in the environment, when set, wins;
 *   cuda: the dense tensor-core peak of the GPU (fp16) or its fp32 peak, by device name;
 *   cpu: the measured rate of a 512x512x512 fp32 GEMM of the backend (best of 5) — the peak
 *   this machine's BLAS reaches, not a datasheet number.
 * *source describes where it came from. */
double metrics_peak_flops(const struct ops *ops, int local_rank, const char **source);

/* Append one JSON object as a line to f and flush it (consumes obj). 0 or -1. */
int metrics_append(FILE *f, json_t *obj);

#endif
