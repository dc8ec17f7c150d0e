/* cublas_v2.h — cudasim stand-in: everything lives in ../cudasim.h. */
#include "../cudasim.h"
