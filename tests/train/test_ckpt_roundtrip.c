/* test_ckpt_roundtrip — checkpoints store what training needs and detect damage.
 *
 *  1. A weights-only checkpoint of the reference model (tests/ref/model/weights.h5, written
 *     by transformers) holds every HF state-dict tensor under /weights/<name>, equal to the
 *     reference.
 *  2. Save after two Adam steps, load into a fresh model and trainer: weights, moments, step,
 *     scaler, loader state and config come back bit for bit, and the next step of both is
 *     bit-identical.
 *  3. One flipped byte inside a dataset fails verification; ckpt_find_latest skips it and a
 *     partial .tmp with a message and returns the older valid one, deleting nothing.
 *  4. keep_last prunes only the oldest.
 * usage: test_ckpt_roundtrip REF_MODEL_DIR WORK_DIR */
#include "core/checkpoint.h"
#include "core/comm.h"
#include "core/trainer.h"
#include "tests/ref/fixture.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

/* Flip one byte in the middle of dataset `name`'s raw data. */
static int flip_byte_in(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    if (off == HADDR_UNDEF || size == 0) return -1;
    FILE *fp = fopen(path, "r+b");
    if (!fp) return -1;
    fseek(fp, (long)(off + size / 2), SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)(off + size / 2), SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    return 0;
}

static int same_bits(const void *a, const void *b, size_t bytes) {
    return memcmp(a, b, bytes) == 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return fprintf(stderr, "usage: %s REF_MODEL_DIR WORK_DIR\n", argv[0]), 2;
    char weights[4096], batchf[4096], run[4096], ckdir[4200], path[4400], p2[4400];
    snprintf(weights, sizeof weights, "%s/weights.h5", argv[1]);
    snprintf(batchf, sizeof batchf, "%s/batch.h5", argv[1]);
    snprintf(run, sizeof run, "%s/run", argv[2]);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
    char clean[4200];
    snprintf(clean, sizeof clean, "rm -rf '%s'", argv[2]); /* a fresh directory every run */
    if (system(clean) != 0) return 1;
    mkdir(argv[2], 0777);
    mkdir(run, 0777);

    struct xlmc_config cfg;
    if (fixture_load_config(weights, &cfg)) return 1;
    cfg.train.lr = 1e-3f;
    cfg.train.schedule = SCHEDULE_CONSTANT;
    cfg.train.warmup = 0;
    cfg.train.keep_last = 2;
    const struct ops *ops = ops_cpu(OPS_FP32);
    struct comm *c = comm_local_create();
    struct model a, b;
    if (model_create(&a, &cfg, ops) || model_create(&b, &cfg, ops)) return 1;
    if (fixture_load_params(&a, weights, "/")) return 1;
    struct fixture_batch fb;
    if (fixture_load_batch(batchf, &fb)) return 1;

    /* 1. weights-only checkpoint against the reference state dict */
    snprintf(path, sizeof path, "%s/weights-only.h5", argv[2]);
    CHECK(ckpt_save(path, &a, NULL, NULL, 0x1234) == 0, "weights-only save");
    int checked = 0;
    for (int id = 0; id < P_COUNT; id++) {
        const struct param_tensor *p = &a.params[id];
        for (int l = 0; l < p->layers && p->numel; l++) {
            char hf[256], ds[300];
            model_param_hf_name(&a, id, l, hf, sizeof hf);
            snprintf(ds, sizeof ds, "/weights/%s", hf);
            size_t n1 = 0, n2 = 0;
            float *ref = fixture_read_f32(weights, hf, &n1), *got = fixture_read_f32(path, ds, &n2);
            CHECK(ref && got && n1 == n2 && same_bits(ref, got, n1 * sizeof(float)),
                  "%s differs from the reference state dict", hf);
            free(ref);
            free(got);
            checked++;
        }
    }
    CHECK(checked > 10, "only %d tensors checked", checked);
    struct trainer tw;
    trainer_init(&tw, &b, c);
    CHECK(ckpt_load(path, &b, &tw, NULL) != 0, "a weights-only checkpoint must not resume a run");
    trainer_free(&tw);

    /* 2. save after two steps, load, compare, step both */
    struct trainer ta, tb;
    if (trainer_init(&ta, &a, c) || trainer_init(&tb, &b, c)) return 1;
    struct step_stats st;
    for (int i = 0; i < 2; i++)
        CHECK(trainer_step(&ta, &fb.batch, 1, &st) == 0, "step %d", i);
    struct loader_state ls = {.step = 2, .epoch = {1, 3}, .cursor = {17, 5}, .reserved = 9};
    CHECK(ckpt_save_run(run, &a, &ta, &ls, 0xfeedbeefcafe1234ull, cfg.train.keep_last, path,
                        sizeof path) == 0,
          "save_run");
    snprintf(p2, sizeof p2, "%s/step-0000002.h5", ckdir);
    CHECK(!strcmp(path, p2), "checkpoint named %s, expected %s", path, p2);
    struct loader_state lb;
    memset(&lb, 0, sizeof lb);
    CHECK(ckpt_load(path, &b, &tb, &lb) == 0, "load");
    size_t bytes = a.num_params * sizeof(float);
    CHECK(same_bits(a.master, b.master, bytes), "master weights differ after load");
    CHECK(same_bits(ta.adam_m, tb.adam_m, bytes), "Adam m differs after load");
    CHECK(same_bits(ta.adam_v, tb.adam_v, bytes), "Adam v differs after load");
    CHECK(tb.step == 2 && tb.skipped == 0, "step %ld skipped %ld", tb.step, tb.skipped);
    CHECK(tb.scaler.scale == ta.scaler.scale && tb.scaler.clean_steps == ta.scaler.clean_steps,
          "scaler state");
    CHECK(same_bits(&ls, &lb, sizeof ls), "loader state differs");
    /* a one-stream checkpoint read for three objective streams: the first restored, the
     * others at their start (zero), and the count says so */
    struct loader_state l3[3];
    memset(l3, 0xff, sizeof l3);
    int n_found = -1;
    CHECK(ckpt_load_states(path, &b, &tb, l3, 3, &n_found) == 0 && n_found == 1, "load 1 of 3");
    struct loader_state zero;
    memset(&zero, 0, sizeof zero);
    CHECK(same_bits(&l3[0], &ls, sizeof ls) && same_bits(&l3[1], &zero, sizeof zero) &&
              same_bits(&l3[2], &zero, sizeof zero),
          "one-stream checkpoint read as three streams");
    /* three streams written, read back; ckpt_load (one stream) gets the first */
    struct loader_state w3[3] = {ls,
                                 {.step = 7, .epoch = {2}, .cursor = {4, 1}},
                                 {.step = 8, .cursor = {0, 0, 3}, .reserved = 1}};
    char p3[4400];
    snprintf(p3, sizeof p3, "%s/three-streams.h5", argv[2]);
    CHECK(ckpt_save_states(p3, &a, &ta, w3, 3, 0xfeedbeefcafe1234ull) == 0, "save 3 streams");
    memset(l3, 0, sizeof l3);
    CHECK(ckpt_load_states(p3, &b, &tb, l3, 3, &n_found) == 0 && n_found == 3 &&
              same_bits(l3, w3, sizeof w3),
          "three loader states did not round-trip");
    memset(&lb, 0, sizeof lb);
    CHECK(ckpt_load(p3, &b, &tb, &lb) == 0 && same_bits(&lb, &w3[0], sizeof lb),
          "the first of three states through ckpt_load");
    unlink(p3);
    struct xlmc_config rc;
    uint64_t vh = 0;
    CHECK(ckpt_read_config(path, &rc, &vh) == 0 && vh == 0xfeedbeefcafe1234ull &&
              rc.model.dim == cfg.model.dim && rc.model.vocab_size == cfg.model.vocab_size &&
              rc.train.lr == cfg.train.lr,
          "config or vocabulary hash did not round-trip");
    struct step_stats sa, sb;
    trainer_step(&ta, &fb.batch, 1, &sa);
    trainer_step(&tb, &fb.batch, 1, &sb);
    CHECK(sa.loss == sb.loss, "loss after resume %.17g vs %.17g", sb.loss, sa.loss);
    CHECK(same_bits(a.master, b.master, bytes), "weights differ one step after resume");

    /* 3. damage: step 4 flipped, step 6 partial -> latest valid is step 2 */
    char p4[4400], p6[4400], found[4400];
    snprintf(p4, sizeof p4, "%s/step-0000004.h5", ckdir);
    snprintf(p6, sizeof p6, "%s/step-0000006.h5.tmp", ckdir);
    copy_file(path, p4);
    copy_file(path, p6);
    if (truncate(p6, 3000)) CHECK(0, "truncate");
    char why[512] = "";
    CHECK(ckpt_verify(p4, why, sizeof why) == 0, "the copy verifies before damage: %s", why);
    CHECK(flip_byte_in(p4, "/adam_v/transformer.ffns.1.lin2.weight") == 0, "flip");
    CHECK(ckpt_verify(p4, why, sizeof why) != 0, "a flipped byte went unnoticed");
    fprintf(stderr, "flipped byte: %s\n", why);
    CHECK(ckpt_find_latest(run, found, sizeof found) == 0 && !strcmp(found, path),
          "latest valid is %s, expected %s", found, path);
    CHECK(file_exists(p4) && file_exists(p6), "a damaged checkpoint was deleted");
    CHECK(ckpt_load(p4, &b, &tb, NULL) != 0, "loading the damaged checkpoint succeeded");

    /* 4. keep_last = 2 after saves of steps 4 and 5: those two remain, step 2 goes */
    unlink(p4);
    for (int i = 0; i < 2; i++) {
        trainer_step(&ta, &fb.batch, 1, &sa);
        CHECK(ckpt_save_run(run, &a, &ta, &ls, 1, 2, NULL, 0) == 0, "save step %ld", ta.step);
    }
    char p5[4400];
    snprintf(p5, sizeof p5, "%s/step-0000005.h5", ckdir);
    CHECK(file_exists(p5) && file_exists(p4) && !file_exists(path), "keep_last pruning");
    struct xlmc_config none;
    snprintf(p2, sizeof p2, "%s/missing.h5", argv[2]);
    CHECK(ckpt_read_config(p2, &none, NULL) != 0, "a missing checkpoint was read");

    trainer_free(&ta);
    trainer_free(&tb);
    fixture_free_batch(&fb);
    model_destroy(&a);
    model_destroy(&b);
    comm_destroy(c);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("checkpoint round trip, naming, damage detection and pruning: ok\n");
    return failures ? 1 : 0;
}
