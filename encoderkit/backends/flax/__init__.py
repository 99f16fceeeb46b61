"""The JAX/Flax backend: our own linen encoder (transformers 5 has no Flax classes) over Hugging
Face's Flax parameter tree, jit-compiled over shape buckets.

Files: ``model.py`` (the encoder, heads, the msgpack artifact), ``export.py``, ``runtime.py``.
"""
from __future__ import annotations

from ...core.contracts import FP32_ATOL, BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("flax", "encoderkit.backends.flax.export:FlaxConverter", "flax", "Flax msgpack parameter tree"),
)
BACKENDS = (
    BackendInfo("flax", "encoderkit.backends.flax.runtime:FlaxRuntime", "flax", "flax", Tolerance(atol=FP32_ATOL),
                "JAX/Flax, jit over shape buckets", compiles_per_shape=True),
)
