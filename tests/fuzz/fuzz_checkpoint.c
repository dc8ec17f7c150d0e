/* fuzz_checkpoint — libFuzzer harness for the checkpoint readers that run before any model
 * exists: ckpt_verify (every dataset against its XXH64) and ckpt_read_config (the /config
 * text and /vocab_hash). The input gives the config text, a dataset of any of four types and
 * shapes, and for each dataset whether its checksum attribute is right, wrong, missing or of
 * another type (fuzz_input.h). Property: both fail with an error or succeed, never crash;
 * ckpt_verify accepts only files whose checksums are all right. */
#define _GNU_SOURCE
#include "core/checkpoint.h"
#include "core/config.h"
#include "core/model.h"
#include "core/scaler.h"
#include "tests/fuzz/fuzz_input.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

static char path[64];

/* ckpt_save and ckpt_load call into the model and the loss scaler, which this harness does
 * not link (they need the CPU kernels): it never saves or loads weights. */
void scaler_save(const struct scaler *s, double state[SCALER_STATE_LEN]) {
    (void)s, (void)state;
    abort();
}
int scaler_restore(struct scaler *s, const double state[SCALER_STATE_LEN]) {
    (void)s, (void)state;
    abort();
}
void model_sync_weights(struct model *m) {
    (void)m;
    abort();
}
int model_param_hf_name(const struct model *m, int id, int layer, char *buf, size_t len) {
    (void)m, (void)id, (void)layer, (void)buf, (void)len;
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "/tmp/fuzz_ckpt.%ld.h5", (long)getpid());
    return 0;
}

/* mode 0: right checksum, 1: wrong, 2: none, 3: a string attribute. Returns 1 if right. */
static int checksum(hid_t d, const void *buf, size_t bytes, int mode) {
    uint64_t sum = XXH64(buf, bytes, 0) + (mode == 1);
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    if (mode <= 1) {
        a = H5Acreate2(d, "xxh64", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_UINT64, &sum);
    } else if (mode == 3) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 8);
        a = H5Acreate2(d, "xxh64", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "12345678");
        H5Tclose(t);
    }
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return mode == 0;
}

static int dataset(hid_t f, const char *name, hid_t type, int ndim, const hsize_t *dims,
                   const void *buf, size_t bytes, int mode) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (bytes) H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    int ok = checksum(d, buf, bytes, mode);
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(lcpl);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fuzz_in in = {data, size};
    uint8_t modes = fuzz_u8(&in);
    uint16_t cfg_len;
    fuzz_take(&in, &cfg_len, sizeof cfg_len);
    cfg_len %= 4096;
    char *cfg = malloc(cfg_len + 1u);
    fuzz_take(&in, cfg, cfg_len);
    uint64_t vocab_hash = (uint64_t)fuzz_i64(&in);
    static const hid_t *types[] = {&H5T_NATIVE_FLOAT_g, &H5T_NATIVE_UINT8_g, &H5T_NATIVE_INT64_g,
                                   &H5T_NATIVE_DOUBLE_g};
    hid_t wtype = *types[fuzz_u8(&in) & 3];
    int ndim = 1 + fuzz_u8(&in) % 3;
    hsize_t dims[3];
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (dims[i] = fuzz_u8(&in) % 17);
    size_t wbytes = n * H5Tget_size(wtype);
    void *w = malloc(wbytes ? wbytes : 1);
    fuzz_take(&in, w, wbytes);

    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) abort();
    hsize_t cdim = cfg_len, one = 1;
    int all_ok = 1;
    if (!(modes & 0x40))
        all_ok &= dataset(f, "/config", H5T_NATIVE_UINT8, 1, &cdim, cfg, cfg_len, modes & 3);
    all_ok &= dataset(f, "/vocab_hash", H5T_NATIVE_UINT64, 1, &one, &vocab_hash, sizeof vocab_hash,
                      (modes >> 2) & 3);
    all_ok &= dataset(f, "/weights/x", wtype, ndim, dims, w, wbytes, (modes >> 4) & 3);
    H5Fclose(f);

    char why[512];
    int verified = ckpt_verify(path, why, sizeof why) == 0;
    if (verified && !all_ok) {
        fprintf(stderr, "ckpt_verify accepted a file with a bad or missing checksum\n");
        abort();
    }
    struct xlmc_config c;
    uint64_t vh = 0;
    ckpt_read_config(path, &c, &vh);
    free(w);
    free(cfg);
    return 0;
}
