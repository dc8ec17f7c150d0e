/* cuda_runtime.h — cudasim stand-in: everything lives in ../cudasim.h. */
#include "../cudasim.h"
