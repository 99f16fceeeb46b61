"""encoderkit: one RoBERTa/BERT checkpoint, every runtime, the same answers.

The facade: ``load`` and ``convert``. Nothing inside the package imports this module; the layers
below it are ``core`` < ``storage`` < ``tasks`` < ``backends`` < ``verify`` < ``conversion`` <
the applications (``batch``, ``viewer``, ``deploy``, ``finetune``, ``bench``, ``demo``) < ``cli``
(docs/ARCHITECTURE.md; tests/test_layers.py holds it). ``import encoderkit`` imports neither
TensorFlow, JAX nor ONNX Runtime; backends load lazily.
"""
from __future__ import annotations

from . import _compat
from .core import __version__

_compat.install()


def load(model, backend=None, **options):
    """Load a model on a backend; see ``encoderkit.backends.loading.load``."""
    from .backends.loading import load as _load

    return _load(model, backend, **options)


def convert(model, formats, out, **options):
    """Convert and validate; see ``encoderkit.conversion.convert``."""
    from .conversion import convert as _convert

    if isinstance(formats, str):
        from .backends.catalog import parse_formats

        formats = parse_formats(formats)
    return _convert(model, formats, out, **options)


__all__ = ["__version__", "convert", "load"]
