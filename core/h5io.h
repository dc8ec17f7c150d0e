/* h5io.h — small checked helpers for named datasets and attributes in HDF5 files.
 *
 * Every function prints an "xlmc: error:" naming the file and the object and returns -1 (or a
 * negative hid_t) on failure; nothing is left open on an error path. Dataset names may contain
 * '/' (groups); writers create the missing groups. Arrays are C order, dims in elements. */
#ifndef XLMC_H5IO_H
#define XLMC_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5IO_MAX_DIMS 8

/* Open for reading; create (truncating) for writing. Close with h5io_close. */
hid_t h5io_open_read(const char *path);
hid_t h5io_create(const char *path);
int h5io_close(hid_t file);

/* 1 if the dataset or group exists, 0 if not. */
int h5io_exists(hid_t file, const char *name);

/* Shape of a dataset: *ndim and dims[0..ndim). */
int h5io_shape(hid_t file, const char *name, int *ndim, long long dims[H5IO_MAX_DIMS]);

/* Read a whole dataset, converted to float32 / int32, into a malloc'd array (free()).
 * ndim, dims may be NULL. */
int h5io_read_f32(hid_t file, const char *name, float **data, int *ndim,
                  long long dims[H5IO_MAX_DIMS]);
int h5io_read_i32(hid_t file, const char *name, int32_t **data, int *ndim,
                  long long dims[H5IO_MAX_DIMS]);

/* Write a dataset (ndim 0 = scalar). */
int h5io_write_f32(hid_t file, const char *name, const float *data, int ndim,
                   const long long *dims);
int h5io_write_i32(hid_t file, const char *name, const int32_t *data, int ndim,
                   const long long *dims);

/* ---- checksummed datasets (core/h5io_checksum.c): what checkpoints are made of ----
 * A dataset written with h5io_write_summed carries an attribute "xxh64", the XXH64 of its raw
 * bytes; the readers verify it. These report through `why` (why_len bytes: "dataset NAME
 * ...") rather than printing, so that the caller names the file in its own words. */
void h5io_quiet(void); /* HDF5's own error stack off: our messages name file and cause */
/* Write dataset `name` (groups created) of `type`, ndim dims, nbytes of data, with its sum.
 * 0 or -1. */
int h5io_write_summed(hid_t file, const char *name, hid_t type, int ndim, const hsize_t *dims,
                      const void *data, size_t nbytes);
/* Read dataset `name` of exactly nbytes as mem_type into out, after checking its sum. */
int h5io_read_summed(hid_t file, const char *name, hid_t mem_type, void *out, size_t nbytes,
                     char *why, size_t why_len);
/* Check the sum of the open dataset d (its name for messages). */
int h5io_verify_summed(hid_t d, const char *name, char *why, size_t why_len);
/* Check every dataset of the file at path: readable, summed, at least one. */
int h5io_verify_file(const char *path, char *why, size_t why_len);
/* An unsigned attribute of obj, stored as an integer or as a string of hex digits (how shards
 * carry vocab_hash). 0, or -1 (nothing printed) when absent or unreadable. */
int h5io_read_attr_u64(hid_t obj, const char *name, uint64_t *value);

/* Attributes on the root group. Strings: fixed or variable length on read, a malloc'd copy;
 * written as a variable-length UTF-8 string (what h5py writes for str). */
int h5io_read_attr_str(hid_t file, const char *attr, char **value);
int h5io_write_attr_str(hid_t file, const char *attr, const char *value);
int h5io_read_attr_int(hid_t file, const char *attr, long long *value);
int h5io_write_attr_int(hid_t file, const char *attr, long long value);

#endif
