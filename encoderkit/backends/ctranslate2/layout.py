"""The CTranslate2 artifact's on-disk layout, and the heads it runs outside CTranslate2.

Shared by the CTranslate2 converter (writes it) and runtime (reads it). ``ctranslate2/`` holds:

- ``encoder/``       a CTranslate2 encoder model (its own ``config.json``, ``model.bin``,
  vocabulary): input ids -> last hidden state, fp32.
- ``encoder.int8/``  the same with int8 weights (``--quantize int8``); computed as int8_float32.
- one safetensors file per head the model carries (``head_file``: ``mlm_head.safetensors``,
  ``classifier_head.safetensors``, ``<name>_head.safetensors``), the tensors under per-step names
  (``dense``, ``norm``, ``decoder``, ...), run by the runtime at the rows the head reads:
  CTranslate2's ``Encoder`` has no heads.
- the model's tokenizer files, HF ``config.json`` and ``encoderkit_spec.json`` at the top, as
  every format has (CTranslate2's own ``config.json`` sits inside the model folders).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import ArtifactError
from ...core.heads import Act, Decoder, Linear, Norm
from ...core.spec import ModelSpec
from ..heads import WORD_EMBEDDINGS

MODEL_DIRS = {"fp32": "encoder", "int8": "encoder.int8"}  # variant -> folder
# How each variant is computed on the CPU: int8 weights with fp32 activations between layers.
COMPUTE_TYPES = {"fp32": "float32", "int8": "int8_float32"}
HEAD_FILE = "mlm_head.safetensors"
CLASSIFIER_FILE = "classifier_head.safetensors"


# File and tensor names of the two heads earlier versions wrote (kept: directories stay loadable):
# per step of the head, the name its tensors are stored under (None: a step without tensors).
_LEGACY = {"mlm": (HEAD_FILE, ("dense", None, "norm", "decoder")),
           "classification": (CLASSIFIER_FILE, ("dense", None, "out"))}


def head_file(head: str) -> str:
    """The safetensors file holding head ``head``'s tensors."""
    return _LEGACY[head][0] if head in _LEGACY else f"{head.replace('-', '_')}_head.safetensors"


def _step_names(spec: ModelSpec, head: str) -> list[str | None]:
    steps = spec.architecture.steps(head)
    if head in _LEGACY:
        return list(_LEGACY[head][1])
    return ["decoder" if isinstance(s, Decoder) else None if isinstance(s, Act) else f"step{i}"
            for i, s in enumerate(steps)]


def stored_tensors(spec: ModelSpec, head: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``backends.heads.head_tensors`` (canonical names) -> the names the head's file stores."""
    out = {}
    for step, name in zip(spec.architecture.steps(head), _step_names(spec, head)):
        if isinstance(step, (Linear, Norm)):
            out[f"{name}.weight"] = tensors[f"{step.path}.weight"]
            out[f"{name}.bias"] = tensors[f"{step.path}.bias"]
        elif isinstance(step, Decoder):
            out[f"{name}.weight"] = tensors[WORD_EMBEDDINGS]
            out[f"{name}.bias"] = tensors[f"{step.path}.bias"]
    return out


def canonical_tensors(spec: ModelSpec, head: str, stored: dict, where: Path) -> dict:
    """The inverse of ``stored_tensors``: a head file's tensors under canonical names.

    Raises:
        ArtifactError: a tensor the head needs is not in the file.
    """
    out = {}
    for step, name in zip(spec.architecture.steps(head), _step_names(spec, head)):
        if name is None:
            continue
        for part in ("weight", "bias"):
            if f"{name}.{part}" not in stored:
                raise ArtifactError(f"{where} lacks {name}.{part}; re-run `encoderkit convert --to ctranslate2`")
        if isinstance(step, Decoder):
            out[WORD_EMBEDDINGS] = stored[f"{name}.weight"]
            out[f"{step.path}.bias"] = stored[f"{name}.bias"]
        else:
            out[f"{step.path}.weight"] = stored[f"{name}.weight"]
            out[f"{step.path}.bias"] = stored[f"{name}.bias"]
    return out


def model_dir(directory: Path, variant: str) -> Path:
    """The CTranslate2 model folder of ``variant`` inside a ``ctranslate2/`` export.

    Raises:
        ArtifactError: the folder (or its model.bin) is missing, naming the convert flag that writes it.
    """
    path = Path(directory) / MODEL_DIRS[variant]
    if not (path / "model.bin").is_file() or path.is_symlink():
        flag = " --quantize int8" if variant == "int8" else ""
        raise ArtifactError(f"{directory} has no {variant} CTranslate2 encoder ({path.name}/model.bin); "
                            f"re-run `encoderkit convert --to ctranslate2{flag}`")
    return path
