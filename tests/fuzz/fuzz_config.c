/* fuzz_config — libFuzzer harness for the INI config reader (core/config.c).
 * Property: any text either fails with an error, or parses into a config whose
 * config_to_string form parses again into the same text (what checkpoints rely on). */
#include "core/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    struct xlmc_config a, b;
    if (config_parse_string(text, "fuzz.ini", &a) == 0) {
        char *s1 = config_to_string(&a);
        if (config_parse_string(s1, "fuzz.ini:written", &b)) {
            fprintf(stderr, "a parsed config does not read back:\n%s\n", s1);
            abort();
        }
        char *s2 = config_to_string(&b);
        if (strcmp(s1, s2)) {
            fprintf(stderr, "config round trip differs:\n%s\n---\n%s\n", s1, s2);
            abort();
        }
        free(s2);
        free(s1);
    }
    free(text);
    return 0;
}
