"""Quantisation and conversion: a distilled student -> brevitas QAT -> full-int8 TFLite.

    anyppg qat    --from runs/x/distill --data stores/x --out runs/x/qat      (quantization.qat)
    anyppg export --from runs/x/qat     --data stores/x --out runs/x/export   (quantization.export)

Modules:
    qmodel          BN folding, int8-path op check, the brevitas fake-quant twin of the student
    qat             the QAT stage (fine-tuning against the float student)
    qat_model       the int8 gate, the folded student and its brevitas twin from a distill or QAT run
    onnx_export     plain float ONNX (opset 13) carrying the QAT weights — never QCDQ
    tflite_convert  onnx2tf 1.29.24 as a subprocess, calibrated on store windows, deterministic
    qat_ranges      writes the QAT activation ranges, weights and int32 biases into the .tflite
    op_audit        int8 op audit, Edge TPU rules offline, grouped CONV_2D -> DEPTHWISE_CONV_2D
    parity          float / fake-quant / onnxruntime / LiteRT (XNNPACK, reference) / TFLM
    tflite_edit     flatbuffer editing and writing (reading and running: edge_runtime.tflite_file,
                    edge_runtime.interpreters)
"""
