/* test_mlm_mask: XLM's mask_out as mlm_mask and batch_mlm_from_windows do it.
 *
 * Statistics (expected values from the definition, not from the code): over ROWS x T positions
 * with random lengths and pad ids inside rows,
 *   - no padding (t >= length, or a pad input) is predicted or changed;
 *   - the predicted count among real positions is Binomial(n, word_pred);
 *   - among predicted positions, the input is the mask word with probability
 *     p_mask + p_rand / V (a random word may be the mask word), unchanged with p_keep + p_rand / V
 *     (inputs here are never the mask word), another word with p_rand (V - 2) / V;
 *   - the random words are uniform over [0, V): every word's count is Binomial;
 * each count within SIGMAS standard deviations of its mean (5 sigma: a false alarm has
 * probability below 6e-7 per check, so the ~60 checks fail by chance less than once in 10^4 runs).
 * Invariance: the masks of a step's global rows are identical when built as 1 block, as the
 * blocks of 1, 2 and 4 ranks (rank r takes blocks r, r + world, ...: its accumulation steps),
 * and they change with the step and the seed. word_pred 0 and 1 predict nothing and everything. */
#include "train/batch.h"
#include "train/mlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEQ 64
#define ROWS 8192
#define NV 50
#define PAD 2
#define MASK 5
#define SIGMAS 5.0

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* k successes out of n at probability p: within SIGMAS standard deviations of n p. */
static void check_binomial(const char *what, long k, long n, double p) {
    double mean = (double)n * p, sd = sqrt((double)n * p * (1.0 - p));
    double z = sd > 0 ? ((double)k - mean) / sd : ((double)k == mean ? 0.0 : INFINITY);
    printf("%-28s %8ld / %8ld  expected %10.1f  z = %+.2f\n", what, k, n, mean, z);
    CHECK(fabs(z) <= SIGMAS, "%s: %ld of %ld, expected %.1f (z = %.2f)", what, k, n, mean, z);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void statistics(const struct mlm_opts *o) {
    int32_t *in = malloc(sizeof(int32_t) * ROWS * SEQ), *ids = malloc(sizeof(int32_t) * ROWS * SEQ);
    int32_t *tg = malloc(sizeof(int32_t) * ROWS * SEQ), *len = malloc(sizeof(int32_t) * ROWS);
    uint64_t s = 42;
    for (int r = 0; r < ROWS; r++) {
        len[r] = r % 4 == 0 ? (int)(1 + lcg(&s) % SEQ) : SEQ; // a quarter of the rows padded
        for (int t = 0; t < SEQ; t++) {
            int w = 6 + (int)(lcg(&s) % (NV - 6));         // a real word, never the mask word
            if (t >= len[r] || lcg(&s) % 50 == 0) w = PAD; // padding, and pads inside rows
            in[r * SEQ + t] = w;
        }
    }
    memcpy(ids, in, sizeof(int32_t) * ROWS * SEQ);
    mlm_mask(o, 1234, 77, 0, ROWS, SEQ, len, ids, tg);
    long real = 0, pred = 0, masked = 0, kept = 0, other = 0, bad = 0;
    long hist[NV] = {0};
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < SEQ; t++) {
            int i = r * SEQ + t;
            if (t >= len[r] || in[i] == PAD) { // never predicted, never changed
                if (tg[i] != -1 || ids[i] != in[i]) bad++;
                continue;
            }
            real++;
            if (tg[i] == -1) {
                if (ids[i] != in[i]) bad++;
                continue;
            }
            if (tg[i] != in[i]) bad++;
            pred++;
            if (ids[i] < 0 || ids[i] >= NV) {
                bad++;
                continue;
            }
            if (ids[i] == MASK)
                masked++;
            else if (ids[i] == in[i])
                kept++;
            else
                other++;
        }
    CHECK(bad == 0, "%ld positions with wrong targets, changed padding or ids outside [0, NV)",
          bad);
    check_binomial("predicted / real", pred, real, o->word_pred);
    check_binomial("mask word / predicted", masked, pred, o->p_mask + o->p_rand / NV);
    check_binomial("unchanged / predicted", kept, pred, o->p_keep + o->p_rand / NV);
    check_binomial("other word / predicted", other, pred, o->p_rand * (NV - 2) / NV);

    // Random words alone: p_rand = 1 and word_pred = 1, every word of [0, NV) equally likely.
    struct mlm_opts ro = *o;
    ro.word_pred = 1.0f;
    ro.p_mask = ro.p_keep = 0.0f;
    ro.p_rand = 1.0f;
    memcpy(ids, in, sizeof(int32_t) * ROWS * SEQ);
    mlm_mask(&ro, 99, 3, 0, ROWS, SEQ, len, ids, tg);
    long n = 0;
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < len[r]; t++)
            if (in[r * SEQ + t] != PAD) {
                CHECK(ids[r * SEQ + t] >= 0 && ids[r * SEQ + t] < NV, "random word %d",
                      ids[r * SEQ + t]);
                if (ids[r * SEQ + t] >= 0 && ids[r * SEQ + t] < NV) hist[ids[r * SEQ + t]]++;
                n++;
            }
    CHECK(n == real, "word_pred = 1 predicted %ld of %ld real positions", n, real);
    for (int w = 0; w < NV; w++) {
        char what[40];
        snprintf(what, sizeof what, "random word %d", w);
        check_binomial(what, hist[w], n, 1.0 / NV);
    }

    // word_pred = 0: nothing predicted, nothing changed.
    ro = *o;
    ro.word_pred = 0.0f;
    memcpy(ids, in, sizeof(int32_t) * ROWS * SEQ);
    mlm_mask(&ro, 1234, 77, 0, ROWS, SEQ, len, ids, tg);
    long any = 0;
    for (int i = 0; i < ROWS * SEQ; i++)
        any += tg[i] != -1 || ids[i] != in[i];
    CHECK(any == 0, "word_pred = 0 changed %ld positions", any);
    free(in), free(ids), free(tg), free(len);
}

/* The global batch of one step built by `world` ranks, each doing its blocks one by one as
 * accumulation steps, through batch_mlm_from_windows; rows gathered in global order. */
#define BR 4      /* block_rows */
#define BLOCKS 16 /* per step */
static void build_step(const struct mlm_opts *o, const int32_t *windows, int world, uint64_t seed,
                       uint64_t step, int32_t *ids, int32_t *tg) {
    struct batch_buf buf = {0};
    int32_t langs[BR] = {0, 1, 0, 1};
    for (int rank = 0; rank < world; rank++)
        for (int j = rank; j < BLOCKS; j += world) {
            struct batch b;
            uint32_t row0 = (uint32_t)(j * BR);
            batch_mlm_from_windows(&buf, &b, windows + (size_t)row0 * (SEQ + 1), langs, BR, SEQ,
                                   row0, o, seed, step);
            CHECK(b.bidirectional == 1 && b.B == BR && b.T == SEQ && b.row0 == row0,
                  "batch fields: bidirectional %d B %d SEQ %d row0 %u", b.bidirectional, b.B, b.T,
                  b.row0);
            for (int r = 0; r < BR; r++)
                CHECK(b.lengths[r] == SEQ, "length %d", b.lengths[r]);
            memcpy(ids + (size_t)row0 * SEQ, b.ids, sizeof(int32_t) * BR * SEQ);
            memcpy(tg + (size_t)row0 * SEQ, b.targets, sizeof(int32_t) * BR * SEQ);
        }
    batch_buf_free(&buf);
}

static void invariance(const struct mlm_opts *o) {
    enum { N = BR * BLOCKS };
    static int32_t windows[N * (SEQ + 1)], ids1[N * SEQ], tg1[N * SEQ], ids[N * SEQ], tg[N * SEQ];
    static int32_t ref_ids[N * SEQ], ref_tg[N * SEQ], lens[N];
    uint64_t s = 7;
    for (int i = 0; i < N * (SEQ + 1); i++)
        windows[i] = 6 + (int)(lcg(&s) % (NV - 6));
    // Reference: the whole step as one call of mlm_mask on window[0..SEQ-1].
    for (int r = 0; r < N; r++) {
        memcpy(ref_ids + r * SEQ, windows + r * (SEQ + 1), sizeof(int32_t) * SEQ);
        lens[r] = SEQ;
    }
    mlm_mask(o, 5, 11, 0, N, SEQ, lens, ref_ids, ref_tg);
    long pred = 0;
    for (int i = 0; i < N * SEQ; i++)
        pred += ref_tg[i] != -1;
    CHECK(pred > 0, "no position predicted in the invariance batch");
    const int worlds[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        build_step(o, windows, worlds[k], 5, 11, ids, tg);
        CHECK(!memcmp(ids, ref_ids, sizeof ids) && !memcmp(tg, ref_tg, sizeof tg),
              "world %d: masks differ from the one-block step", worlds[k]);
    }
    build_step(o, windows, 1, 5, 12, ids1, tg1);
    CHECK(memcmp(tg1, ref_tg, sizeof tg1), "step 12 gave the mask of step 11");
    build_step(o, windows, 1, 6, 11, ids1, tg1);
    CHECK(memcmp(tg1, ref_tg, sizeof tg1), "seed 6 gave the mask of seed 5");
}

int main(void) {
    struct mlm_opts o = {.word_pred = 0.15f,
                         .p_mask = 0.8f,
                         .p_keep = 0.1f,
                         .p_rand = 0.1f,
                         .mask_index = MASK,
                         .pad_index = PAD,
                         .vocab_size = NV};
    CHECK(!mlm_opts_check(&o, "test"), "default options refused");
    struct mlm_opts bado = o;
    bado.p_rand = 0.3f;
    fprintf(stderr, "(an error about word_mask_keep_rand is expected next)\n");
    CHECK(mlm_opts_check(&bado, "test") == -1, "probabilities summing to 1.2 accepted");
    statistics(&o);
    invariance(&o);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_mlm_mask: ok\n");
    return 0;
}
