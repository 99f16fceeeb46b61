"""The catalog: every backend's and format's row, assembled from the backend folders' own rows
(``backends/<name>/__init__.py`` declares ``FORMATS`` and ``BACKENDS``), and the lookups over it.

Everything that lists or picks a backend or a format reads it from here: the CLI's choices and
``--help``, ``convert --to``, which backends a conversion validates and with which tolerance, the
parity tests' parametrisation, and the benchmark's defaults. Targets are ``"module:attribute"``
strings, imported only when used, so ``import encoderkit`` imports none of TensorFlow, JAX or ONNX
Runtime (a test resolves every one of them).

Backends layer: above the backend folders (it imports their rows), below loading.
"""
from __future__ import annotations

from typing import Any

from ..core.contracts import FP32_ATOL, BackendInfo, FormatInfo
from ..core.errors import UnknownNameError
from ..core.extras import extra_installed, import_optional
from . import ctranslate2, flax, onnx, pytorch, tf, torch

REFERENCE = "torch"  # the backend every other is validated against

# Order matters: it is the order of `--to all`, of `--help`, and the preference when a converted
# directory holds several formats.
_FOLDERS = (torch, onnx, tf, flax, ctranslate2, pytorch)
FORMATS: dict[str, FormatInfo] = {f.name: f for folder in _FOLDERS for f in folder.FORMATS}
BACKENDS: dict[str, BackendInfo] = {b.name: b for folder in _FOLDERS for b in folder.BACKENDS}


__all__ = ["BACKENDS", "FORMATS", "FP32_ATOL", "REFERENCE", "backend", "backends_of_format", "converter",
           "format_info", "installed_backends", "installed_formats", "parse_formats", "register_backend",
           "register_format", "resolve", "runs_here", "unregister", "unvalidated_backends",
           "validated_backends"]


def _unknown(kind: str, name: object, known) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}")


def backend(name: str) -> BackendInfo:
    """The row of backend ``name``.

    Raises:
        UnknownNameError: listing the valid names.
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise _unknown("backend", name, BACKENDS)
    return BACKENDS[name]


def format_info(name: str) -> FormatInfo:
    """The row of format ``name``.

    Raises:
        UnknownNameError: listing the valid names.
    """
    if not isinstance(name, str) or name not in FORMATS:
        raise _unknown("format", name, [*FORMATS, "all"])
    return FORMATS[name]


def resolve(target: str, what: str) -> Any:
    """Import ``"module:attribute"``; a missing optional framework names the extra to install."""
    module, attr = target.split(":")
    return getattr(import_optional(module, what), attr)


def installed_backends() -> list[str]:
    """Backends whose framework is importable here, in table order."""
    return [b.name for b in BACKENDS.values() if extra_installed(b.extra)]


def installed_formats(*, all_only: bool = True) -> list[str]:
    """Formats whose framework is importable here (``all_only``: those `--to all` writes)."""
    return [f.name for f in FORMATS.values() if extra_installed(f.extra) and (f.in_all or not all_only)]


def runs_here(info: BackendInfo) -> str | None:
    """None where this machine can run backend ``info`` (its row's ``machine_check``), else why not."""
    return resolve(info.machine_check, f"backend {info.name!r}")() if info.machine_check else None


def backends_of_format(fmt: str) -> list[BackendInfo]:
    return [b for b in BACKENDS.values() if b.fmt == fmt]


def _why_not_validated(info: BackendInfo) -> str | None:
    """None where ``convert`` can validate backend ``info`` here, else why not: its extra is not
    installed (checked first: a machine check may import the framework), or the machine lacks it."""
    if not extra_installed(info.extra):
        return f"needs encoderkit[{info.extra}], not installed"
    return runs_here(info)


def validated_backends(fmt: str, variants: frozenset[str]) -> list[BackendInfo]:
    """The backends that load format ``fmt``, for the artifacts ``variants`` switch on, that are
    installed and that this machine runs (torch-bf16 only on a CPU with bf16 instructions)."""
    return [b for b in backends_of_format(fmt)
            if (b.variant is None or b.variant in variants) and _why_not_validated(b) is None]


def unvalidated_backends(fmt: str, variants: frozenset[str]) -> dict[str, str]:
    """The backends of ``fmt`` (for ``variants``) that ``validated_backends`` leaves out, with why:
    ``convert`` says so and its report lists them, so a skipped check is never read as a pass."""
    return {b.name: why for b in backends_of_format(fmt)
            if (b.variant is None or b.variant in variants) and (why := _why_not_validated(b))}


def converter(name: str) -> type:
    """The converter class of format ``name`` (imported on first use).

    Raises:
        UnknownNameError: listing the valid format names.
        MissingDependencyError: naming the extra to install.
    """
    return resolve(format_info(name).converter, f"format {name!r}")


def parse_formats(text: str) -> list[str]:
    """``"onnx,tf"``, ``"all"`` or ``"all,pytorch"`` -> validated format names (duplicates dropped,
    order kept).

    Raises:
        UnknownNameError: an unknown or empty name, listing the valid ones.
    """
    names = []
    for t in (t.strip() for t in text.split(",")):
        if t == "all":  # every format `--to all` writes, in table order ("all,pytorch" adds the pickle)
            names += [f.name for f in FORMATS.values() if f.in_all]
        elif t:
            names.append(t)
    if not names:
        format_info("")  # raises, listing the valid names
    for n in names:
        format_info(n)
    return list(dict.fromkeys(names))


def register_backend(info: BackendInfo) -> None:
    """Add (or replace) a backend row, e.g. from a plugin; its ``fmt`` must be a known format."""
    if info.fmt not in FORMATS:
        raise _unknown("format", info.fmt, FORMATS)
    BACKENDS[info.name] = info


def register_format(info: FormatInfo) -> None:
    """Add (or replace) a format row, e.g. from a plugin."""
    FORMATS[info.name] = info


def unregister(name: str) -> None:
    """Remove a backend and/or format row of that name (plugins, tests)."""
    BACKENDS.pop(name, None)
    FORMATS.pop(name, None)
