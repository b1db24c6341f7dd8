// Running the bundle's model with TensorFlow Lite Micro instead of the generated anyppg_invoke.
// Documented, not built here (TFLM's sources are not part of this project): add this file to a
// firmware tree that has tflite-micro (and, on Cortex-M, CMSIS-NN) and compile it with the
// bundle's anyppg_dsp.c, anyppg_dsp_tables.c, anyppg_hr.c and anyppg_model_data.c.
//
// Arena: TFLM needs its own working memory; start from the bundle README's figure and let
// interpreter.arena_used_bytes() tell the real need after AllocateTensors().
#include <cstdio>
#include <cstring>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
#include "anyppg_dsp.h"
#include "anyppg_hr.h"
#include "anyppg_model_data.h"
}

namespace {
constexpr int kArenaBytes = 64 * 1024;
alignas(16) uint8_t arena[kArenaBytes];
anyppg_dsp_t dsp;
anyppg_dsp_window_t win;
}  // namespace

extern "C" size_t read_sensor(float *buf, size_t max_samples);  // your PPG driver

int main() {
  const tflite::Model *model = tflite::GetModel(anyppg_model_data);
  // The int8 ops an AnyPPG export uses (edge_runtime/int8_ops.py lists the allowed set).
  static tflite::MicroMutableOpResolver<8> ops;
  ops.AddConv2D();
  ops.AddDepthwiseConv2D();
  ops.AddMaxPool2D();
  ops.AddAveragePool2D();
  ops.AddAdd();
  ops.AddFullyConnected();
  ops.AddReshape();
  ops.AddMean();
  static tflite::MicroInterpreter interpreter(model, ops, arena, kArenaBytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  TfLiteTensor *input = interpreter.input(ANYPPG_INPUT_PPG_POSITION);
  if (anyppg_dsp_init(&dsp, ANYPPG_SENSOR_FS_HZ) != ANYPPG_DSP_OK) return 2;

  float chunk[32];
  for (;;) {
    size_t n = read_sensor(chunk, 32);
    anyppg_dsp_push(&dsp, chunk, n);
    // the preprocessing writes the int8 window straight into the model's input tensor
    while (anyppg_dsp_poll(&dsp, &win, input->data.int8) == 1) {
      if (win.flags & ANYPPG_FLAGS_LOW_QUALITY) continue;  // no number for this window
      // TFLM's planner may reuse the input tensor's memory once its last reader has run, and
      // the HR refinement reads the window after Invoke: keep a copy (ANYPPG_WINDOW_LEN bytes).
      static int8_t window_copy[ANYPPG_WINDOW_LEN];
      std::memcpy(window_copy, input->data.int8, sizeof window_copy);
      if (interpreter.Invoke() != kTfLiteOk) return 3;
      anyppg_shown_t s;  // what to show, decided as edge_runtime's stream decides
      anyppg_hr_show(win.flags, interpreter.output(ANYPPG_OUTPUT_QUALITY_LOGIT_POSITION)->data.int8[0],
                     interpreter.output(ANYPPG_OUTPUT_HR_CONFIDENCE_POSITION)->data.int8[0],
                     interpreter.output(ANYPPG_OUTPUT_HR_POSITION)->data.int8[0],
                     interpreter.output(ANYPPG_OUTPUT_AF_LOGIT_POSITION)->data.int8[0], window_copy,
                     ANYPPG_INPUT_PPG_ZERO_POINT, &s);
      if (s.show & ANYPPG_SHOW_HR) printf("hr %.1f bpm\n", static_cast<double>(s.hr_bpm));
    }
  }
}
