"""Deployment packaging: a `convert` output in, a self-verifying bundle for one target out.

``TARGETS`` maps a target name to the function that writes it (imported lazily, so the heavy
frameworks a target needs are imported only when that target is packaged). Every target function
has the signature ``fn(source: Converted, out: Path, options: PackageOptions, say) -> dict``
and writes into ``out`` (an empty temporary directory that ``package`` renames into place).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import UnknownNameError

# target name -> "module:function"; order is the order `encoderkit package --help` lists them.
TARGETS = {
    "onnx": "encoderkit.deploy.onnx_bundle:package_onnx",
    "node": "encoderkit.deploy.node:package_node",
    "tflite": "encoderkit.deploy.tflite:package_tflite",
    "triton": "encoderkit.deploy.triton:package_triton",
    "tf-serving": "encoderkit.deploy.tf_serving:package_tf_serving",
    "web": "encoderkit.deploy.web:package_web",
}


def target_function(name: str) -> Callable[..., dict[str, Any]]:
    """The packaging function registered as ``name``.

    Raises:
        UnknownNameError: listing the valid target names.
    """
    if name not in TARGETS:
        raise UnknownNameError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    module, fn = TARGETS[name].split(":")
    return getattr(importlib.import_module(module), fn)


def package(converted: str | Path, target: str, out: str | Path, *, quantize: str = "none",
            tasks: str | list[str] | None = None, max_length: int | None = None,
            pooling: str | None = None, normalize: bool = False, ort_format: bool = False,
            name: str | None = None, threads: int | None = None, force: bool = False,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Package a ``encoderkit convert`` output directory for one deployment target.

    Args:
        converted: the converted directory (it must hold the format the target needs, and
            safetensors for the torch reference outputs).
        target: a name from ``TARGETS``.
        out: the bundle directory to write (atomically).
        quantize: ``none``, ``int8`` or ``fp16`` (the converted int8/fp16 ONNX encoder; for
            tflite, TFLite's own dynamic-range int8 or fp16 weights).
        tasks: ``embed``, ``fill-mask``, ``classify``, ``ner``, ``qa`` (comma list); default: every
            task the model supports (classify: a model with a classification head, ONNX-based
            targets; ner / qa: a token-classification / question-answering head, onnx, node, triton).
        max_length: longest input in tokens (specials included); default: the model's.
        pooling: put this pooling (mean, cls, max) into the bundled graph; None keeps pooling in
            the runner (mean by default), except for ``web``, which always pools in the graph (mean).
        normalize: with ``pooling``: L2-normalise inside the graph too.
        ort_format: onnx/node: also write ``model.ort`` for ONNX Runtime Mobile.
        name: model name in serving layouts (default: from the source).
        threads: web: the page's wasm threads (default: the browser's cores, at most 4; one
            thread where the page is not cross-origin isolated).
        force: replace ``out`` if it exists.
    Returns:
        The bundle.json content.
    Raises:
        UnknownNameError: unknown target.
        InputError: bad options; ArtifactError: the converted directory lacks what is needed;
        ParityError: the packaged runner disagrees with the reference on its probes.
    """
    from .common import PackageOptions, package_with

    fn = target_function(target)
    options = PackageOptions.parse(target=target, quantize=quantize, tasks=tasks, max_length=max_length,
                                   pooling=pooling, normalize=normalize, ort_format=ort_format, name=name,
                                   threads=threads)
    return package_with(fn, Path(converted), Path(out), options, force=force, progress=progress)


__all__ = ["TARGETS", "package", "target_function"]
