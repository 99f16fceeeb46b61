"""The one loader over every backend: ``encoderkit.runtimes.load(model, backend)``.

Which backends exist, which format directory each loads and which class implements it is
``encoderkit.registry.BACKENDS``; backends are imported lazily, so ``import encoderkit`` needs
none of TensorFlow, JAX or ONNX Runtime. Runtimes import ``models/`` (the framework models and
artifact layouts), never ``converters/``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checkpoint import resolve_model
from ..errors import ArtifactError, InputError
from ..artifacts import check_directory, check_origin
from ..io import read_manifest
from ..registry import BACKENDS, REFERENCE, resolve
from ..registry import backend as backend_info
from .base import EncoderOutput, Runtime

MAX_THREADS = 8 * (os.cpu_count() or 1)  # beyond this a thread pool only hurts (and torch hangs on 1e5)


def backend_class(name: str) -> type[Runtime]:
    """The Runtime class registered as ``name``.

    Raises:
        UnknownNameError: listing the valid names.
        MissingDependencyError: the backend's framework is not installed.
    """
    return resolve(backend_info(name).runtime, f"backend {name!r}")


def check_options(options: dict[str, Any]) -> None:
    """The options every backend shares, validated the same way for all.

    Raises:
        InputError: ``threads`` or ``max_tokens`` not a positive integer (threads at most MAX_THREADS).
    """
    for key in ("threads", "max_tokens"):
        v = options.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{key} must be a positive integer, got {v!r}")
    if (options.get("threads") or 0) > MAX_THREADS:
        raise InputError(f"threads {options['threads']} is more than {MAX_THREADS} "
                         f"(8 per core of this machine's {os.cpu_count()})")


def available_backends(model: str | Path, *, installed_only: bool = True) -> list[str]:
    """Backends that can load ``model``: torch for a checkpoint; for a `convert` output, every
    backend whose format (and variant, e.g. int8) it holds, in table order."""
    from ..registry import extra_installed

    path = resolve_model(model)
    manifest = read_manifest(path)
    if manifest is None or manifest.get("kind") != "convert":
        return [REFERENCE]
    formats = manifest.get("formats") or []
    variants = manifest.get("variants")
    out = []
    for b in BACKENDS.values():
        if b.fmt not in formats or (installed_only and not extra_installed(b.extra)):
            continue
        # a variant (int8, fp16) counts only where the manifest lists it (manifests before 0.2 did not)
        if b.variant is not None and not (isinstance(variants, dict) and b.variant in (variants.get(b.fmt) or [])):
            continue
        out.append(b.name)
    return out


def load(model: str | Path, backend: str | None = None, **options: Any) -> Runtime:
    """Load ``model`` (checkpoint dir, hub id, packaged name, or `convert` output) on a backend.

    Args:
        backend: a name from ``registry.BACKENDS``; default: torch for a checkpoint, else the
            first backend (in table order) whose format the converted directory holds.
        options: backend options (``threads``, ``max_tokens``, ...), and ``trust_artifact``: load
            a format that runs code (a SavedModel) even when it is not provably this package's export.
    Raises:
        ArtifactError: the converted directory lacks the backend's format, fails its manifest (schema,
            unlisted/missing/changed files, symlinks, paths outside), or holds a foreign program.
        UnknownNameError: unknown backend, listing the valid ones.
        InputError: bad ``threads`` / ``max_tokens``.
    """
    check_options(options)
    trust = bool(options.pop("trust_artifact", False))
    info = backend_info(backend) if backend is not None else None
    path = resolve_model(model)
    manifest = read_manifest(path)
    if isinstance(manifest, dict) and manifest.get("kind") == "convert":
        manifest = check_directory(path)  # schema, completeness, no symlinks, before anything is opened
    if not isinstance(manifest, dict) or manifest.get("kind") != "convert":
        info = info or BACKENDS[REFERENCE]
        if info.fmt != "safetensors":
            raise ArtifactError(f"{path} is a checkpoint; backend {info.name!r} needs a converted model: "
                                f"encoderkit convert {model} --to {info.fmt} --out DIR")
        return backend_class(info.name).load(path, **options)
    formats = manifest.get("formats", [])
    if not isinstance(formats, list):
        raise ArtifactError(f"{path}: manifest.json 'formats' is not a list; re-run `encoderkit convert`")
    if info is None:
        info = next((b for b in BACKENDS.values() if b.fmt in formats), None)
        if info is None:
            raise ArtifactError(f"{path}: manifest lists no format this version can load")
    if info.fmt not in formats:
        raise ArtifactError(f"{path} has no {info.fmt!r} export (it has: {', '.join(formats) or 'none'}); "
                            f"run encoderkit convert --to {info.fmt}")
    check_directory(path, info.fmt)  # sizes and sha256 of the format's files
    check_origin(path / info.fmt, info.fmt, trust=trust)
    return backend_class(info.name).load(path / info.fmt, **options)


__all__ = ["EncoderOutput", "Runtime", "available_backends", "backend_class", "check_options", "load"]
