"""Converter base: one small ``export`` step per format, with its typed options.

A converter only writes its artifact. Loading the checkpoint, validating the export against the
torch reference, the report and the manifest happen once, in ``encoderkit.pipeline.convert``
(the fixed load -> export -> validate -> save sequence). Converters import ``models/`` (each
framework's model and artifact layout), never ``runtimes/``. A converter module must be cheap
to import (frameworks inside functions): the CLI imports it to build its flags.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..checkpoint import Checkpoint
from ..registry import BackendInfo, backends_of_format, format_info, resolve


@dataclass(frozen=True)
class NoOptions:
    """A format without options."""

    def variants(self) -> frozenset[str]:
        """Optional artifacts switched on (e.g. {"int8"}): selects the backends to validate."""
        return frozenset()


class Converter(ABC):
    """One output format.

    Args:
        options: an instance of the class's ``Options`` dataclass (defaults when None).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        """Write the artifact into the (empty) directory ``out``; return facts for the report."""

    def validated_backends(self) -> list[BackendInfo]:
        """The registry's backends that load this format, for the artifacts these options write."""
        on = self.options.variants()
        return [b for b in backends_of_format(self.name) if b.variant is None or b.variant in on]


def converter(name: str) -> type[Converter]:
    """The converter class of format ``name`` (imported on first use).

    Raises:
        UnknownNameError: listing the valid format names.
        MissingDependencyError: naming the extra to install.
    """
    info = format_info(name)
    return resolve(info.converter, f"format {name!r}")


def parse_formats(text: str) -> list[str]:
    """``"onnx,tf"`` or ``"all"`` -> validated format names (duplicates dropped, order kept).

    Raises:
        UnknownNameError: an unknown or empty name, listing the valid ones.
    """
    from ..registry import FORMATS

    names = list(FORMATS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        format_info("")  # raises, listing the valid names
    for n in names:
        format_info(n)
    return list(dict.fromkeys(names))
