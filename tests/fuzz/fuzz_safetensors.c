/* fuzz_safetensors — libFuzzer harness for the safetensors reader (core/safetensors.c).
 * Property: any bytes either fail validation with an error, or every tensor lies inside the
 * data section and converts to fp32 without reading outside the buffer (ASan checks). */
#include "core/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct safetensors st;
    if (st_parse(&st, data, size, "fuzz.safetensors") == 0) {
        for (size_t i = 0; i < st.n; i++) {
            const struct st_tensor *t = &st.t[i];
            if (t->end > st.data_len || t->begin > t->end) abort();
            if (t->numel > (1u << 20)) continue; /* valid but too big to convert quickly */
            float *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
            st_read_f32(&st, t, out);
            free(out);
            if (st_find(&st, t->name) == NULL) abort();
        }
    }
    st_close(&st);
    return 0;
}
