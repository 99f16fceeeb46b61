"""Converter base and registry: load -> export -> validate, one small step per format.

A converter only writes its artifact (``export``). Loading the checkpoint, running the exported
model against the torch reference, the report and the manifest happen once, in ``convert``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ..checkpoint import Checkpoint
from ..errors import UnknownNameError, import_optional

# format name -> module that registers it (imported lazily: heavy frameworks stay unimported).
FORMATS = {
    "safetensors": "encoderkit.converters.safetensors",
    "onnx": "encoderkit.converters.onnx",
    "tf": "encoderkit.converters.tf",
    "flax": "encoderkit.converters.flax",
}
_REGISTRY: dict[str, type[Converter]] = {}


class Converter(ABC):
    """One output format.

    Args:
        options: format options from the CLI (e.g. ``quantize``, ``fuse``); unknown ones ignored.
    """

    name: ClassVar[str]
    backends: ClassVar[tuple[str, ...]]  # the runtimes that load this artifact

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        """Write the artifact into the (empty) directory ``out``; return facts for the report."""

    def validated_backends(self) -> tuple[str, ...]:
        """Backends to run against the torch reference after export."""
        return self.backends


def register(cls: type[Converter]) -> type[Converter]:
    _REGISTRY[cls.name] = cls
    return cls


def converter(name: str) -> type[Converter]:
    """The converter class for format ``name``.

    Raises:
        UnknownNameError: listing the valid format names.
    """
    if name not in FORMATS:
        raise UnknownNameError(f"unknown format {name!r}; choose from: {', '.join(FORMATS)}, all")
    if name not in _REGISTRY:
        import_optional(FORMATS[name], f"format {name!r}")
    return _REGISTRY[name]


def parse_formats(text: str) -> list[str]:
    """``"onnx,tf"`` or ``"all"`` -> validated format names, safetensors-first order kept."""
    names = list(FORMATS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UnknownNameError(f"no format given; choose from: {', '.join(FORMATS)}, all")
    for n in names:
        if n not in FORMATS:
            raise UnknownNameError(f"unknown format {n!r}; choose from: {', '.join(FORMATS)}, all")
    return list(dict.fromkeys(names))
