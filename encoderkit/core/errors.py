"""Typed errors. Every error a user can cause is an ``EncoderkitError`` subclass.

The CLI maps these to exit code 2 with a one-line message; anything else is an internal
failure (exit 1). Core layer: imports nothing of encoderkit.
"""
from __future__ import annotations


class EncoderkitError(Exception):
    """Base class of every error caused by input (files, arguments, texts)."""


class CheckpointError(EncoderkitError):
    """A checkpoint cannot be read: missing, corrupted, unsupported or inconsistent."""


class UnsupportedArchitectureError(CheckpointError):
    """config.json names an architecture encoderkit does not implement."""


class PickleRefusedError(CheckpointError):
    """Weights are only available as a pickle and the caller did not opt in."""


class HubUnavailableError(CheckpointError):
    """A hub id was given but the hub cannot be reached."""


class InputError(EncoderkitError, ValueError):
    """A text or argument is not acceptable (empty, too long, no mask token, ...)."""


class MappingError(CheckpointError):
    """Weights do not map one-to-one onto a framework's parameters (missing, extra, bad shape)."""


class ArtifactError(EncoderkitError):
    """An exported artifact is corrupted, incomplete, or points outside its directory."""


class ParityError(EncoderkitError):
    """An exported model disagrees with the torch reference beyond its tolerance."""


class ResourceError(EncoderkitError):
    """The machine ran short (memory, threads) while loading or running a model: not a bad artifact."""


class UnsupportedHardwareError(ResourceError):
    """This machine lacks what a backend needs (e.g. bf16 instructions for torch-bf16)."""


class UnknownNameError(EncoderkitError, KeyError):
    """A registry lookup (format, backend, size) used a name that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(EncoderkitError):
    """An optional framework needed for this backend/format is not installed."""


class EncoderkitWarning(UserWarning):
    """A warning of ours meant for the user (shown even while third-party warnings are captured)."""

