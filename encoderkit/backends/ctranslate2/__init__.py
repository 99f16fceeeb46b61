"""The CTranslate2 backends: its ``Encoder`` (fp32, int8) gives the last hidden state; the heads
run beside it in torch (``backends/heads.py``), at the rows each head reads.

Files: ``layout.py`` (the on-disk contract), ``export.py`` (CTranslate2's own converter on a
transformers checkpoint written from canonical weights), ``runtime.py``.
"""
from __future__ import annotations

from ...core.contracts import FP32_ATOL, BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("ctranslate2", "encoderkit.backends.ctranslate2.export:CTranslate2Converter", "ctranslate2",
               "CTranslate2 encoder (fp32; int8 with --quantize int8) and the heads as safetensors"),
)
BACKENDS = (
    BackendInfo("ctranslate2", "encoderkit.backends.ctranslate2.runtime:CTranslate2Runtime", "ctranslate2",
                "ctranslate2", Tolerance(atol=FP32_ATOL), "CTranslate2 encoder (last layer only), encoderkit's heads",
                last_layer_only=True),
    # Same thresholds as onnx-int8: the convert gate both int8 backends must pass.
    BackendInfo("ctranslate2-int8", "encoderkit.backends.ctranslate2.runtime:CTranslate2Int8Runtime", "ctranslate2",
                "ctranslate2", Tolerance(min_top1=0.75, min_top5=0.6, min_cosine=0.98),
                "CTranslate2 int8 encoder (int8_float32, last layer only), fp32 heads", variant="int8",
                last_layer_only=True),
)
