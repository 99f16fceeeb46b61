"""The ONNX backends: a fused fp32 encoder, int8 and fp16 variants, head graphs run at the rows
each head reads, and an unfused analysis graph (inner layers, attention probabilities).

Files: ``export.py`` (dynamo export, fusion, quantization), ``static.py`` (the calibrated
int8 modes: token, the default, and static), ``layout.py`` (the on-disk contract, onnx_info.json),
``runtime.py`` (ONNX Runtime sessions), ``openvino.py`` (the same graphs run by OpenVINO).
"""
from __future__ import annotations

from ...core.contracts import FP32_ATOL, BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("onnx", "encoderkit.backends.onnx.export:OnnxConverter", "onnx",
               "fused encoder, heads at the rows they read, analysis graph; int8/fp16 encoders"),
)
BACKENDS = (
    BackendInfo("onnx", "encoderkit.backends.onnx.runtime:OnnxRuntime", "onnx", "onnx", Tolerance(atol=FP32_ATOL),
                "ONNX Runtime, fused fp32 encoder"),
    # int8 thresholds: measured on random roberta-large and the real MiniLM (see README); random
    # weights give near-uniform vocabularies, so top-5 there is a noise floor, hence 0.6.
    BackendInfo("onnx-int8", "encoderkit.backends.onnx.runtime:OnnxInt8Runtime", "onnx", "onnx",
                Tolerance(min_top1=0.75, min_top5=0.6, min_cosine=0.98),
                "ONNX Runtime, int8 encoder (--int8-mode, default token), fp32 head", variant="int8"),
    BackendInfo("onnx-fp16", "encoderkit.backends.onnx.runtime:OnnxFp16Runtime", "onnx", "onnx",
                Tolerance(min_top1=0.9, min_top5=0.8, min_cosine=0.999),
                "ONNX Runtime, fp16 encoder (for GPUs; runs on CPU)", variant="fp16"),
    # OpenVINO runs the same files (no conversion of its own): fp32 within FP32_ATOL of ONNX Runtime.
    BackendInfo("openvino", "encoderkit.backends.onnx.openvino:OpenVinoRuntime", "onnx", "openvino",
                Tolerance(atol=FP32_ATOL), "OpenVINO (CPU plugin, f32) over the fused fp32 encoder"),
    # bf16 compute of the same graphs where OpenVINO computes bf16 natively; thresholds as torch-bf16's.
    # Measured: every parity checkpoint within them (parity_tests/), the convert gate on random small
    # top-1/top-5/cosine 1.00/1.00/1.0000, random roberta-large in `encoderkit bench` 0.94/0.96/1.0000.
    BackendInfo("openvino-bf16", "encoderkit.backends.onnx.openvino:OpenVinoBf16Runtime", "onnx", "openvino",
                Tolerance(min_top1=0.9, min_top5=0.9, min_cosine=0.9995),
                "OpenVINO (CPU plugin, bf16) over the fused fp32 encoder (CPUs with avx512_bf16/amx)",
                machine_check="encoderkit.backends.onnx.openvino:openvino_bf16_missing"),
)
