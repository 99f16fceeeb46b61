"""The CTranslate2 artifact's on-disk layout and the MLM head it runs outside CTranslate2.

Shared by the CTranslate2 converter (writes it) and runtime (reads it). ``ctranslate2/`` holds:

- ``encoder/``       a CTranslate2 encoder model (its own ``config.json``, ``model.bin``,
  vocabulary): input ids -> last hidden state, fp32.
- ``encoder.int8/``  the same with int8 weights (``--quantize int8``); computed as int8_float32.
- ``mlm_head.safetensors``  the MLM head under generic names (``dense``, ``norm``, ``decoder``),
  run by the runtime at mask positions only: CTranslate2's ``Encoder`` has no MLM head.
- the model's tokenizer files, HF ``config.json`` and ``encoderkit_spec.json`` at the top, as
  every format has (CTranslate2's own ``config.json`` sits inside the model folders).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..spec import ModelSpec

MODEL_DIRS = {"fp32": "encoder", "int8": "encoder.int8"}  # variant -> folder
# How each variant is computed on the CPU: int8 weights with fp32 activations between layers.
COMPUTE_TYPES = {"fp32": "float32", "int8": "int8_float32"}
HEAD_FILE = "mlm_head.safetensors"
HEAD_KEYS = ("dense.weight", "dense.bias", "norm.weight", "norm.bias", "decoder.weight", "decoder.bias")


def head_tensors(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The MLM head of canonical ``state`` under the generic names of ``HEAD_KEYS``.

    The decoder is tied to the word embeddings unless the checkpoint stores its own.
    """
    arch = spec.architecture
    head = arch.mlm_head
    decoder = state.get(f"{head}.decoder.weight", state[f"{spec.prefix}.embeddings.word_embeddings.weight"])
    return {"dense.weight": state[f"{head}.{arch.mlm_dense}.weight"],
            "dense.bias": state[f"{head}.{arch.mlm_dense}.bias"],
            "norm.weight": state[f"{head}.{arch.mlm_norm}.weight"],
            "norm.bias": state[f"{head}.{arch.mlm_norm}.bias"],
            "decoder.weight": decoder,
            "decoder.bias": state.get(f"{head}.decoder.bias", state[f"{head}.bias"])}


CLASSIFIER_FILE = "classifier_head.safetensors"
CLASSIFIER_KEYS = ("dense.weight", "dense.bias", "out.weight", "out.bias")


def classifier_tensors(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sequence-classification head ([CLS] row -> dense -> tanh -> out: RoBERTa's classifier and
    BERT's pooler + classifier alike) of canonical ``state`` under ``CLASSIFIER_KEYS``."""
    arch = spec.architecture
    return {"dense.weight": state[f"{arch.cls_dense}.weight"], "dense.bias": state[f"{arch.cls_dense}.bias"],
            "out.weight": state[f"{arch.cls_out}.weight"], "out.bias": state[f"{arch.cls_out}.bias"]}


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
