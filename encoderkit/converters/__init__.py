"""Format converters: one module per format, each an ``export`` step with typed options.

The pipeline that runs them (load -> export -> validate -> save) is ``encoderkit.pipeline``.
"""
from __future__ import annotations

from .base import Converter, NoOptions, converter, parse_formats

__all__ = ["Converter", "NoOptions", "converter", "parse_formats"]
