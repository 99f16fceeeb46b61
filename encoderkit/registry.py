"""The one table of backends, formats and tasks.

Everything that lists or picks a backend or a format reads it from here: the CLI's choices and
``--help``, ``convert --to``, which backends a conversion validates and with which tolerance,
the parity tests' parametrisation, and the benchmark's defaults. Adding a backend is one
converter module, one runtime module and one row here (or a ``register_backend`` call from a
plugin); nothing else changes.

Targets are ``"module:attribute"`` strings, imported only when used, so ``import encoderkit``
imports none of TensorFlow, JAX or ONNX Runtime. Ground floor: no framework imports.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from .errors import UnknownNameError, import_optional


@dataclass(frozen=True)
class Tolerance:
    """How close a backend must be to the torch reference.

    fp32 backends: ``atol``, the max |difference| of hidden states, mask logits, embeddings and
    attention probabilities. Quantized backends: minimum accuracy against the reference on the
    probes (fill-mask top-1 agreement, top-5 overlap, min cosine of mean-pooled embeddings).
    """

    atol: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None
    min_cosine: float | None = None

    @property
    def quantized(self) -> bool:
        return self.atol is None

    def thresholds(self) -> dict[str, float]:
        """{"top1": .., "top5": .., "cosine": ..} for a quantized backend (the ones that are set)."""
        return {k: v for k, v in (("top1", self.min_top1), ("top5", self.min_top5),
                                  ("cosine", self.min_cosine)) if v is not None}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    runtime: str  # "module:Class" of its Runtime
    fmt: str  # the subdirectory of a `convert` output it loads (a FORMATS key)
    extra: str | None  # the pip extra that installs its framework (None: core dependencies)
    tolerance: Tolerance
    summary: str
    # The converter option value that must be on for this backend's artifact to exist (e.g. the
    # int8 encoder exists only with quantize=int8); None: always written by its format.
    variant: str | None = None
    # Compiles per input shape (XLA): the benchmark warms it up on the whole workload.
    compiles_per_shape: bool = False
    # Load options that keep it on the CPU (the benchmark's peers run there).
    cpu_options: tuple[tuple[str, Any], ...] = ()

    @property
    def quantized(self) -> bool:
        return self.tolerance.quantized


@dataclass(frozen=True)
class FormatInfo:
    name: str
    converter: str  # "module:Class" of its Converter
    extra: str | None
    summary: str


# extra -> the modules it installs (to tell which backends this environment can run)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxscript", "onnxruntime", "onnx_ir"),
    "tf": ("tensorflow",),
    "flax": ("jax", "flax"),
}

REFERENCE = "torch"  # the backend every other is validated against
FP32_ATOL = 1e-4  # every fp32 export against torch: hidden states, logits, embeddings, attentions

FORMATS: dict[str, FormatInfo] = {f.name: f for f in (
    FormatInfo("safetensors", "encoderkit.converters.safetensors:SafetensorsConverter", None,
               "canonical Hugging Face layout, loadable by from_pretrained"),
    FormatInfo("onnx", "encoderkit.converters.onnx:OnnxConverter", "onnx",
               "fused encoder, head at mask positions, analysis graph; int8/fp16 encoders"),
    FormatInfo("tf", "encoderkit.converters.tf:TFConverter", "tf", "TensorFlow SavedModel with signatures"),
    FormatInfo("flax", "encoderkit.converters.flax:FlaxConverter", "flax", "Flax msgpack parameter tree"),
)}

# Order matters: it is the preference when a converted directory holds several formats.
BACKENDS: dict[str, BackendInfo] = {b.name: b for b in (
    BackendInfo("torch", "encoderkit.runtimes.torch:TorchRuntime", "safetensors", None,
                Tolerance(atol=1e-5), "transformers' PyTorch classes (the reference)",
                cpu_options=(("device", "cpu"),)),
    BackendInfo("onnx", "encoderkit.runtimes.onnx:OnnxRuntime", "onnx", "onnx", Tolerance(atol=FP32_ATOL),
                "ONNX Runtime, fused fp32 encoder"),
    # int8 thresholds: measured on random roberta-large and the real MiniLM (see README); random
    # weights give near-uniform vocabularies, so top-5 there is a noise floor, hence 0.6.
    BackendInfo("onnx-int8", "encoderkit.runtimes.onnx:OnnxInt8Runtime", "onnx", "onnx",
                Tolerance(min_top1=0.75, min_top5=0.6, min_cosine=0.98),
                "ONNX Runtime, dynamic int8 encoder, fp32 head", variant="int8"),
    BackendInfo("onnx-fp16", "encoderkit.runtimes.onnx:OnnxFp16Runtime", "onnx", "onnx",
                Tolerance(min_top1=0.9, min_top5=0.8, min_cosine=0.999),
                "ONNX Runtime, fp16 encoder (for GPUs; runs on CPU)", variant="fp16"),
    BackendInfo("tf", "encoderkit.runtimes.tf:TFRuntime", "tf", "tf", Tolerance(atol=FP32_ATOL),
                "TensorFlow SavedModel signatures"),
    BackendInfo("flax", "encoderkit.runtimes.flax:FlaxRuntime", "flax", "flax", Tolerance(atol=FP32_ATOL),
                "JAX/Flax, jit over shape buckets", compiles_per_shape=True),
)}

# task name (as the CLI spells it) -> "module:function(runtime, ...)"
TASKS: dict[str, str] = {
    "fill-mask": "encoderkit.tasks.fill_mask:fill_mask",
    "embed": "encoderkit.tasks.embed:embed",
    "attentions": "encoderkit.tasks.attentions:attentions",
    "classify": "encoderkit.tasks.classify:classify",
}


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


def extra_installed(extra: str | None) -> bool:
    return extra is None or all(importlib.util.find_spec(m) for m in EXTRA_MODULES.get(extra, ()))


def installed_backends() -> list[str]:
    """Backends whose framework is importable here, in table order."""
    return [b.name for b in BACKENDS.values() if extra_installed(b.extra)]


def installed_formats() -> list[str]:
    return [f.name for f in FORMATS.values() if extra_installed(f.extra)]


def backends_of_format(fmt: str) -> list[BackendInfo]:
    return [b for b in BACKENDS.values() if b.fmt == fmt]


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
