"""Converter base: one small ``export`` step per format, with its typed options.

A converter only writes its artifact. Loading the checkpoint, validating the export against the
torch reference, the report and the manifest happen once, in ``encoderkit.conversion.convert``
(the fixed load -> export -> validate -> save sequence). A converter module must be cheap to import
(frameworks inside functions): the CLI imports it to build its flags.

Backends layer, shared base (every backend folder may import it).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..storage.checkpoint import Checkpoint


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
