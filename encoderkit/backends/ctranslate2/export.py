"""CTranslate2: the encoder as a CTranslate2 model (fp32, and int8 with ``--quantize int8``).

The canonical weights are written as a transformers checkpoint in a temporary folder (safetensors
+ ``checkpoint.hf_config``) and handed to ``ctranslate2.converters.TransformersConverter``.
CTranslate2 converts encoders by their config class; where the installed version has no loader
for this architecture but has one for a kin architecture with the same layers (older versions
convert RoBERTa only through the XLM-RoBERTa loader), the checkpoint is relabelled as that kin.
The heads stay with encoderkit (``layout.py``): CTranslate2's ``Encoder`` returns the last hidden
state only.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.architectures import ARCHITECTURES, Architecture
from ...core.errors import InputError
from ...core.options import option
from ...storage.checkpoint import Checkpoint
from ...storage.hf import copy_model_files, hf_config, write_safetensors
from ..converter import Converter, NoOptions
from .layout import COMPUTE_TYPES, MODEL_DIRS, head_file, stored_tensors

# --quantize is shared with the onnx format (one flag for `--to onnx,ctranslate2 --quantize int8`);
# these are the names this format writes a variant for. int8_float32 is CTranslate2's own spelling
# of the same thing on a CPU (int8 weights, fp32 activations).
INT8_NAMES = ("int8", "int8_float32")
# Variants of other formats that --quantize may name at the same time; CTranslate2 has no CPU
# kernels for them, so this format writes nothing for them and its report says so.
OTHER_FORMATS_ONLY = ("fp16",)


@dataclass(frozen=True)
class CTranslate2Options(NoOptions):
    quantize: tuple[str, ...] | str | None = option(
        None, "int8 (int8 weights, fp32 activations); fp16 is written by onnx only", type=str)

    def __post_init__(self):
        q = self.quantize or ()
        names = tuple(x.strip() for x in q.split(",") if x.strip()) if isinstance(q, str) else tuple(q)
        for x in names:
            if x not in INT8_NAMES + OTHER_FORMATS_ONLY:
                raise InputError(f"--quantize for ctranslate2 takes int8 (or int8_float32); got {x!r}")
        if names and all(x in OTHER_FORMATS_ONLY for x in names):
            raise InputError(f"ctranslate2 has no {names[0]} variant on the CPU; use --quantize int8, "
                             f"or --to onnx for {names[0]}")
        object.__setattr__(self, "quantize", tuple(dict.fromkeys(names)))

    def variants(self) -> frozenset[str]:
        return frozenset({"int8"} if any(x in INT8_NAMES for x in self.quantize) else ())


def _kin(arch: Architecture) -> list[Architecture]:
    """Architectures with exactly ``arch``'s layers and weight names, under another config class."""
    same = ("prefix", "head_steps", "positions_from_pad", "segment_types")
    return [a for a in ARCHITECTURES.values()
            if a.name != arch.name and all(getattr(a, f) == getattr(arch, f) for f in same)]


def _write_hf_checkpoint(ckpt: Checkpoint, folder: Path, arch: Architecture) -> None:
    """The canonical weights as a transformers checkpoint labelled as ``arch`` (the model's own or kin)."""
    copy_model_files(ckpt.directory, folder, ckpt.spec)
    config = hf_config(ckpt.spec) | {"model_type": arch.name, "architectures": [arch.base_class]}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(ckpt.state, folder)


def _unsupported(e: ValueError) -> bool:
    return "No conversion is registered" in str(e)


class CTranslate2Converter(Converter):
    name = "ctranslate2"
    Options = CTranslate2Options

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        import ctranslate2
        from safetensors.numpy import save_file

        from ..heads import head_tensors

        spec = ckpt.spec
        copy_model_files(ckpt.directory, out, spec)
        for head in spec.heads:  # CTranslate2's Encoder has no task heads: encoderkit runs them
            save_file(stored_tensors(spec, head, head_tensors(spec, head, ckpt.state)), str(out / head_file(head)))
        variants = ["fp32"] + sorted(self.options.variants())
        candidates = [spec.architecture, *_kin(spec.architecture)]
        report: dict[str, Any] = {"ctranslate2": ctranslate2.__version__}
        from transformers.utils import logging as hf_logging

        # transformers' load report (the unused pooler, the MLM head left out of *Model) is noise here
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            report |= self._convert(ckpt, out, variants, candidates)
        finally:
            hf_logging.set_verbosity(verbosity)
        report["encoders"] = ", ".join(f"{MODEL_DIRS[v]} ({COMPUTE_TYPES[v]})" for v in variants)
        skipped = [x for x in self.options.quantize if x in OTHER_FORMATS_ONLY]
        if skipped:
            report["not written"] = f"{', '.join(skipped)} (no CTranslate2 CPU variant; onnx writes it)"
        report["outputs"] = "last hidden state only (inner layers, attentions: another backend)"
        return report

    @staticmethod
    def _convert(ckpt: Checkpoint, out: Path, variants: list[str], candidates: list[Architecture]) -> dict[str, str]:
        import ctranslate2

        spec = ckpt.spec
        with tempfile.TemporaryDirectory(prefix=".ct2-src-", dir=out.parent) as tmp:
            for arch in candidates:
                src = Path(tmp) / arch.name
                _write_hf_checkpoint(ckpt, src, arch)
                conv = ctranslate2.converters.TransformersConverter(str(src))
                try:
                    for v in variants:
                        conv.convert(str(out / MODEL_DIRS[v]),
                                     quantization=None if v == "fp32" else COMPUTE_TYPES[v], force=True)
                except ValueError as e:  # raised before any weight is read: try a kin's loader
                    if not _unsupported(e) or arch is candidates[-1]:
                        raise InputError(f"ctranslate2 {ctranslate2.__version__} cannot convert a "
                                         f"{spec.arch} encoder: {str(e).splitlines()[0]}") from None
                    continue
                return {"converted as": arch.base_class}
        raise AssertionError("unreachable: the last candidate raises")
