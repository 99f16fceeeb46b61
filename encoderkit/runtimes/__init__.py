"""Backend registry and the one loader: ``encoderkit.runtimes.load(model, backend)``.

Backends are imported lazily by name, so ``import encoderkit`` needs none of TensorFlow, JAX or
ONNX Runtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import resolve_model
from ..errors import ArtifactError, UnknownNameError, import_optional
from ..io import read_manifest, verify_manifest
from .base import EncoderOutput, Runtime

# name -> (format subdirectory it loads, "module:Class"); order is the preference when a
# converted directory holds several formats.
BACKENDS = {
    "torch": ("safetensors", "encoderkit.runtimes.torch:TorchRuntime"),
    "onnx": ("onnx", "encoderkit.runtimes.onnx:OnnxRuntime"),
    "onnx-int8": ("onnx", "encoderkit.runtimes.onnx:OnnxInt8Runtime"),
    "onnx-fp16": ("onnx", "encoderkit.runtimes.onnx:OnnxFp16Runtime"),
    "tf": ("tf", "encoderkit.runtimes.tf:TFRuntime"),
    "flax": ("flax", "encoderkit.runtimes.flax:FlaxRuntime"),
}


def backend_class(name: str) -> type[Runtime]:
    """The Runtime class registered as ``name``.

    Raises:
        UnknownNameError: listing the valid names.
        MissingDependencyError: the backend's framework is not installed.
    """
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name][1].split(":")
    return getattr(import_optional(module, f"backend {name!r}"), cls)


def load(model: str | Path, backend: str | None = None, **options: Any) -> Runtime:
    """Load ``model`` (checkpoint dir, hub id, packaged name, or `convert` output) on a backend.

    Args:
        backend: a name from ``BACKENDS``; default: torch for a checkpoint, else the first
            format present in a converted directory.
        options: backend options (``threads``, ``max_tokens``, ...).
    Raises:
        ArtifactError: the converted directory lacks the backend's format or fails its manifest.
    """
    path = resolve_model(model)
    manifest = read_manifest(path)
    if manifest is None or manifest.get("kind") != "convert":
        cls = backend_class(backend or "torch")
        if cls.fmt != "safetensors":
            raise ArtifactError(f"{path} is a checkpoint; backend {backend!r} needs a converted model: "
                                f"encoderkit convert {model} --to {cls.fmt} --out DIR")
        return cls.load(path, **options)
    formats = manifest.get("formats", [])
    if backend is None:
        backend = next((b for b, (fmt, _) in BACKENDS.items() if fmt in formats), None)
        if backend is None:
            raise ArtifactError(f"{path}: manifest lists no format this version can load")
    cls = backend_class(backend)
    if cls.fmt not in formats:
        raise ArtifactError(f"{path} has no {cls.fmt!r} export (it has: {', '.join(formats) or 'none'}); "
                            f"run encoderkit convert --to {cls.fmt}")
    verify_manifest(path, cls.fmt)
    return cls.load(path / cls.fmt, **options)


__all__ = ["BACKENDS", "EncoderOutput", "Runtime", "backend_class", "load"]
