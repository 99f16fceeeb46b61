"""encoderkit: one RoBERTa/BERT checkpoint, every runtime, the same answers.

``import encoderkit`` imports neither TensorFlow, JAX nor ONNX Runtime; backends load lazily.
"""
from __future__ import annotations

__version__ = "0.1.0"


def load(model, backend=None, **options):
    """Load a model on a backend; see ``encoderkit.runtimes.load``."""
    from .runtimes import load as _load

    return _load(model, backend, **options)


def convert(model, formats, out, **options):
    """Convert and validate; see ``encoderkit.pipeline.convert``."""
    from .pipeline import convert as _convert

    if isinstance(formats, str):
        from .converters import parse_formats

        formats = parse_formats(formats)
    return _convert(model, formats, out, **options)


__all__ = ["__version__", "convert", "load"]
