/* A complete watch loop on the bundle: sensor samples -> anyppg_dsp -> anyppg_invoke -> numbers.
 *
 * The "sensor" here is a recording file (golden/raw.f32 by default; on the simulated board it
 * is read over semihosting), pushed in chunks of EXAMPLE_CHUNK samples like a FIFO drain.
 * On a watch, replace read_sensor() with the PPG driver. Per window it prints
 *     window <k> start <sample> flags <bits> <output>=<q>,<q>,... (int8, by name)
 *     show=<ANYPPG_SHOW_* bits> withheld=<ANYPPG_WITHHELD_* bits> [hr_bpm=<bpm, to 0.01>]
 * as anyppg_hr_show decides: the numbers a watch shows, withheld where edge_runtime's stream
 * withholds them, hr refined where the sidecar has an hr_refine block.
 * Build: cc -std=c11 -ffp-contract=off *.c examples/anyppg_example.c -lm (see README.md).
 */
#include <stdio.h>

#include "anyppg_dsp.h"
#include "anyppg_hr.h"
#include "anyppg_model.h"

#ifndef EXAMPLE_RAW
#define EXAMPLE_RAW "golden/raw.f32"
#endif
#ifndef EXAMPLE_CHUNK
#define EXAMPLE_CHUNK 25
#endif
#ifdef ANYPPG_OUTPUT_QUALITY_LOGIT_SCALE
#define EXAMPLE_QUALITY_Q out.quality_logit[0]
#else
#define EXAMPLE_QUALITY_Q 0 /* no such output: its threshold is -128 */
#endif
#ifdef ANYPPG_OUTPUT_HR_CONFIDENCE_SCALE
#define EXAMPLE_CONFIDENCE_Q out.hr_confidence[0]
#else
#define EXAMPLE_CONFIDENCE_Q 0
#endif
#ifdef ANYPPG_OUTPUT_AF_LOGIT_SCALE
#define EXAMPLE_AF_Q out.af_logit[0]
#else
#define EXAMPLE_AF_Q 0 /* read only where the sidecar has an af_beats block, which needs af_logit */
#endif

static anyppg_dsp_t dsp;          /* all preprocessing state: static, no heap */
static anyppg_dsp_window_t win;   /* start, flags and drops of the latest window */
static int8_t model_in[ANYPPG_WINDOW_LEN]; /* poll() writes the model's int8 input here */
static anyppg_model_outputs out;

static size_t read_sensor(FILE *f, float *buf, size_t n)
{
    return fread(buf, sizeof(float), n, f);
}

static void report(long k)
{
    printf("window %ld start %ld flags %u", k, (long)win.start, (unsigned)win.flags);
    for (int p = 0; p < ANYPPG_MODEL_N_OUTPUTS; p++) {
        const anyppg_model_port *port = &anyppg_model_output_ports[p];
        const int8_t *q = (const int8_t *)&out + port->offset;
        printf(" %s=", port->name);
        for (int i = 0; i < port->len; i++) {
            printf(i ? ",%d" : "%d", q[i]);
        }
    }
#ifdef ANYPPG_OUTPUT_HR_SCALE
    anyppg_shown_t s; /* what a watch shows, decided as edge_runtime's stream decides */
    anyppg_hr_show(win.flags, EXAMPLE_QUALITY_Q, EXAMPLE_CONFIDENCE_Q, out.hr[0], EXAMPLE_AF_Q,
                   model_in, ANYPPG_INPUT_PPG_ZERO_POINT, &s);
    printf(" show=%u withheld=%u", (unsigned)s.show, (unsigned)s.withheld);
    if (s.show & ANYPPG_SHOW_HR) {
        const float hr = s.hr_bpm;
        const long c = (long)(hr * 100.0f + (hr < 0.0f ? -0.5f : 0.5f)); /* no float printf */
        printf(" hr_bpm=%s%ld.%02ld", c < 0 ? "-" : "", (c < 0 ? -c : c) / 100, (c < 0 ? -c : c) % 100);
    }
#endif
    printf("\n");
}

static long drain(long k)
{
    while (anyppg_dsp_poll(&dsp, &win, model_in) == 1) {
        anyppg_model_inputs in = {.ppg = model_in};
        anyppg_invoke(&in, &out); /* every window, flagged or not, so all can be checked */
        report(k++);
    }
    return k;
}

int main(void)
{
    float chunk[EXAMPLE_CHUNK];
    FILE *f = fopen(EXAMPLE_RAW, "rb");
    if (f == NULL) {
        printf("cannot open %s\n", EXAMPLE_RAW);
        return 2;
    }
    if (anyppg_dsp_init(&dsp, ANYPPG_SENSOR_FS_HZ) != ANYPPG_DSP_OK) {
        printf("this build is for a %g Hz sensor\n", (double)ANYPPG_SENSOR_FS_HZ);
        return 3;
    }
    long k = 0;
    size_t n;
    while ((n = read_sensor(f, chunk, EXAMPLE_CHUNK)) > 0) {
        anyppg_dsp_push(&dsp, chunk, n);
        k = drain(k);
    }
    fclose(f);
    anyppg_dsp_finish(&dsp, 0); /* a recording ends; a live sensor never calls this */
    k = drain(k);
    printf("windows %ld dropped %lu\n", k, (unsigned long)dsp.windows_dropped);
    return 0;
}
