"""Import paths of encoderkit 0.1 (before the layered package), kept for one release: importing one
warns (DeprecationWarning) and gives the module at its new path. Removed in 0.3.

``install`` puts one finder on ``sys.meta_path``; it answers only for the names in ``MOVED``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module -> new module
MOVED = {
    "encoderkit.runtimes": "encoderkit.backends.loading",
    "encoderkit.runtimes.base": "encoderkit.backends.base",
    "encoderkit.runtimes.torch": "encoderkit.backends.torch.runtime",
    "encoderkit.runtimes.onnx": "encoderkit.backends.onnx.runtime",
    "encoderkit.runtimes.tf": "encoderkit.backends.tf.runtime",
    "encoderkit.runtimes.flax": "encoderkit.backends.flax.runtime",
    "encoderkit.runtimes.ctranslate2": "encoderkit.backends.ctranslate2.runtime",
    "encoderkit.converters": "encoderkit.backends.catalog",
    "encoderkit.converters.base": "encoderkit.backends.converter",
    "encoderkit.converters.safetensors": "encoderkit.backends.torch.export",
    "encoderkit.converters.onnx": "encoderkit.backends.onnx.export",
    "encoderkit.converters.onnx_static": "encoderkit.backends.onnx.static",
    "encoderkit.converters.tf": "encoderkit.backends.tf.export",
    "encoderkit.converters.flax": "encoderkit.backends.flax.export",
    "encoderkit.converters.ctranslate2": "encoderkit.backends.ctranslate2.export",
    "encoderkit.models": "encoderkit.backends",
    "encoderkit.models.torch_model": "encoderkit.backends.transformers_model",
    "encoderkit.models.onnx_graphs": "encoderkit.backends.onnx.layout",
    "encoderkit.models.tf_model": "encoderkit.backends.tf.model",
    "encoderkit.models.tf_check": "encoderkit.backends.tf.check",
    "encoderkit.models.flax_model": "encoderkit.backends.flax.model",
    "encoderkit.models.ct2_layout": "encoderkit.backends.ctranslate2.layout",
    "encoderkit.pipeline": "encoderkit.conversion",
    "encoderkit.registry": "encoderkit.backends.catalog",
    "encoderkit.validate": "encoderkit.verify.gate",
    "encoderkit.parity": "encoderkit.verify.parity",
    "encoderkit.errors": "encoderkit.core.errors",
    "encoderkit.spec": "encoderkit.core.spec",
    "encoderkit.architectures": "encoderkit.core.architectures",
    "encoderkit.tokenization": "encoderkit.core.tokenization",
    "encoderkit.checkpoint": "encoderkit.storage.checkpoint",
    "encoderkit.random_init": "encoderkit.storage.random_init",
    "encoderkit.io": "encoderkit.storage.files",
    "encoderkit.artifacts": "encoderkit.storage.manifest",
    "encoderkit.mapping": "encoderkit.storage.mapping",
}


class _Alias(importlib.abc.Loader):
    """The module at its new path; an old name that was a package (``encoderkit.runtimes``) is a
    forwarding module with an empty ``__path__``, so its old submodules import through the finder."""

    def __init__(self, new: str, package: bool):
        self.new, self.package = new, package

    def create_module(self, spec):
        target = importlib.import_module(self.new)
        if not self.package:
            return target
        shim = types.ModuleType(spec.name, target.__doc__)
        shim.__path__ = []
        shim.__getattr__ = lambda attr: getattr(target, attr)  # module-level __getattr__ (PEP 562)
        return shim

    def exec_module(self, module) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        new = MOVED.get(name)
        if new is None:
            return None
        warnings.warn(f"{name} moved to {new} in encoderkit 0.2; the old path goes away in 0.3",
                      DeprecationWarning, stacklevel=3)
        package = any(k.startswith(name + ".") for k in MOVED)
        return importlib.util.spec_from_loader(name, _Alias(new, package), is_package=package)


_FINDER = _Finder()


def install() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
