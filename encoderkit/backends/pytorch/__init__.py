"""The legacy ``pytorch_model.bin`` format (``--to pytorch``): a plain tensor dict that
``torch.load(weights_only=True)`` and transformers' ``from_pretrained`` read, for deployment tools
that still read only it. Loaded back by the torch runtime, only with the caller's consent to read a
pickle (``--allow-pickle``): the ``pytorch`` backend below.

Files: ``export.py`` (the converter). Not part of ``--to all``: a pickle is written when asked for.
"""
from __future__ import annotations

from ...core.contracts import BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("pytorch", "encoderkit.backends.pytorch.export:PytorchConverter", None,
               "legacy pytorch_model.bin (a tensor dict; loading it needs --allow-pickle)", in_all=False),
)
BACKENDS = (
    BackendInfo("pytorch", "encoderkit.backends.torch.runtime:TorchRuntime", "pytorch", None,
                Tolerance(atol=1e-5), "transformers' PyTorch classes over pytorch_model.bin (needs --allow-pickle)",
                cpu_options=(("device", "cpu"),), pickle=True),
)
