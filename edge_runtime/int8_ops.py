"""The one allow-list of int8 operators: TFLite builtin ops that TensorFlow Lite Micro runs with
int8 kernels. The export's op audit, the student's layer check and the firmware generator all
import it; the generator implements the subset the students use and names any other op."""
from __future__ import annotations

TFLM_INT8_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LEAKY_RELU", "LOGISTIC",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PAD", "PADV2", "RELU", "RELU6",
    "RESHAPE", "SHAPE", "SLICE", "SOFTMAX", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "TANH",
    "PACK", "UNPACK", "SUM", "REDUCE_MAX",
}
