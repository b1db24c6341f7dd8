/* Host driver for the generated inference (tests and benchmarks, not the watch):
 * reads windows of int8 inputs (each input port in order, ANYPPG_MODEL_INPUT lengths) from
 * argv[1], runs anyppg_invoke on each, writes the outputs (ports in order) to argv[2]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anyppg_model.h"
#include "anyppg_model_host_ports.h"   /* generated: ANYPPG_HOST_IN_LENS, ANYPPG_HOST_BIND(in, buf) */

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: %s inputs.bin outputs.bin\n", argv[0]); return 2; }
    FILE *fi = fopen(argv[1], "rb"), *fo = fopen(argv[2], "wb");
    if (!fi || !fo) { fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]); return 2; }
    static const int lens[] = ANYPPG_HOST_IN_LENS;
    int total = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; ++i) total += lens[i];
    int8_t *buf = malloc((size_t)total);
    anyppg_model_outputs out;
    while (fread(buf, 1, (size_t)total, fi) == (size_t)total) {
        anyppg_model_inputs in;
        ANYPPG_HOST_BIND(in, buf);
        memset(&out, 0x55, sizeof out);
        anyppg_invoke(&in, &out);
        for (int k = 0; k < ANYPPG_MODEL_N_OUTPUTS; ++k) {
            const anyppg_model_port *p = &anyppg_model_output_ports[k];
            fwrite((const char *)&out + p->offset, 1, (size_t)p->len, fo);
        }
    }
    free(buf);
    fclose(fi);
    fclose(fo);
    return 0;
}
