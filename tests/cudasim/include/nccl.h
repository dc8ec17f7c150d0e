/* nccl.h — cudasim stand-in: everything lives in ../cudasim.h, except what the non-blocking
 * communicator needs (below, implemented in ../cudasim_libs.cpp). */
#include "../cudasim.h"

#ifndef CUDASIM_NCCL_NONBLOCKING
#define CUDASIM_NCCL_NONBLOCKING
/* A non-blocking communicator (config.blocking = 0): collectives return at once and complete
 * when the last rank has arrived; until then cudaStreamQuery of their stream says
 * cudaErrorNotReady. A rank that never arrives leaves them pending: only ncclCommAbort (or
 * the arrival) ends them. Only the NCCL stand-in ever makes a stream "not ready", which is
 * why the query lives here. */
static const ncclResult_t ncclInProgress = (ncclResult_t)7;
static const ncclResult_t ncclRemoteError = (ncclResult_t)6;
static const cudaError_t cudaErrorNotReady = (cudaError_t)600;
typedef struct {
    int blocking;
} ncclConfig_t;
#define NCCL_CONFIG_INITIALIZER                                                                    \
    { 1 }
ncclResult_t ncclCommInitRankConfig(ncclComm_t *c, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t *config);
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *state);
ncclResult_t ncclCommAbort(ncclComm_t c);
ncclResult_t ncclCommFinalize(ncclComm_t c);
cudaError_t cudaStreamQuery(cudaStream_t s);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
/* outermost ncclGroupStart/ncclGroupEnd pairs closed so far, over all threads */
extern "C" int cudasim_nccl_groups(void);
/* ncclCommAbort calls so far (tests check that a timeout aborted the communicator). */
extern "C" int cudasim_nccl_aborts(void);
#endif
