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
)
