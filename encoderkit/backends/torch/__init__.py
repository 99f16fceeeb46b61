"""The torch backend: transformers' own PyTorch classes (the reference every other backend is
validated against) over the canonical safetensors layout (``--to safetensors``).

Files: ``model.py`` (building transformers' model from canonical weights; the ONNX export
wrapper), ``runtime.py`` (``TorchRuntime``), ``export.py`` (the safetensors converter).
"""
from __future__ import annotations

from ...core.contracts import BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("safetensors", "encoderkit.backends.torch.export:SafetensorsConverter", None,
               "canonical Hugging Face layout, loadable by from_pretrained"),
)
BACKENDS = (
    BackendInfo("torch", "encoderkit.backends.torch.runtime:TorchRuntime", "safetensors", None,
                Tolerance(atol=1e-5), "transformers' PyTorch classes (the reference)",
                cpu_options=(("device", "cpu"),)),
    # bf16 weights and compute, float32 outputs; only on CPUs with bf16 instructions (machine_check).
    # Thresholds from measurements: MiniLM, 81 varied texts (benchmarks/bf16_backend.py): min cosine
    # 0.99984 vs torch fp32, 2.41x its embed texts/s on 1 thread; the parity checkpoints (tiny/small
    # roberta/bert, sharpened heads): top-1 1.00, top-5 >= 0.943, min cosine >= 0.99994; the convert gate
    # on random tiny/small: top-1 1.00, top-5 >= 0.986, cosine >= 0.99997. One top-1 flip in the ~6
    # probes fails 0.9 on purpose: bf16 has not flipped one in any of these.
    BackendInfo("torch-bf16", "encoderkit.backends.torch.runtime:TorchBf16Runtime", "safetensors", None,
                Tolerance(min_top1=0.9, min_top5=0.9, min_cosine=0.9995),
                "transformers' PyTorch classes with bf16 weights (CPUs with avx512_bf16/amx)",
                cpu_options=(("device", "cpu"),), machine_check="encoderkit.backends.torch.runtime:cpu_bf16_missing"),
)
