"""Write Hugging Face layouts: config.json, the tokenizer files, encoderkit_spec.json beside every
exported format, and safetensors (single file or shards + index, tied decoder left out).
Storage layer.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CheckpointError
from ..core.spec import ModelSpec
from ..core.tokenization import TOKENIZER_FILES, load_tokenizer
from .checkpoint import read_json

SPEC_FILE = "encoderkit_spec.json"
DEFAULT_SHARD_BYTES = 1 << 30  # 1 GiB: roberta-large (1.42 GB fp32) becomes two shards


def hf_config(spec: ModelSpec) -> dict[str, Any]:
    """A config.json that transformers reads as the same model (its class names the head)."""
    arch = spec.architecture
    labels = {}
    if spec.labels:  # what pipeline("text-classification" / "token-classification") names its answers with
        labels = {"id2label": {str(i): lab for i, lab in enumerate(spec.labels)},
                  "label2id": {lab: i for i, lab in enumerate(spec.labels)}}
    return {
        "architectures": [arch.hf_class(spec.heads[-1] if spec.heads else None)], **labels,
        "model_type": spec.arch, "vocab_size": spec.vocab_size, "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size, "hidden_act": spec.hidden_act,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": spec.max_position_embeddings, "type_vocab_size": spec.type_vocab_size,
        "initializer_range": 0.02, "layer_norm_eps": spec.layer_norm_eps,
        "pad_token_id": spec.pad_token_id, "position_embedding_type": "absolute",
        **dict(arch.config_extra),
    }


def copy_model_files(src: Path, dst: Path, spec: ModelSpec) -> None:
    """Copy config.json and tokenizer files, and write encoderkit_spec.json, into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    if not (dst / "tokenizer.json").is_file():  # vocab-only checkpoints: store the fast tokenizer
        load_tokenizer(src).save(str(dst / "tokenizer.json"))
    (dst / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


def read_saved_spec(directory: Path) -> ModelSpec:
    """The ModelSpec an exporter stored beside its artifact.

    Raises:
        CheckpointError: missing, unreadable or not a spec.
    """
    data = read_json(directory / SPEC_FILE)
    try:
        return ModelSpec.from_dict(data)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / SPEC_FILE}: {e}") from None


def write_safetensors(state: dict[str, np.ndarray], out: Path, *,
                      max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[str]:
    """Write ``state`` into ``out``; returns the file names written.

    The only metadata is ``format: pt``: safetensors orders metadata keys by hash, so a second
    key would make identical weights produce different bytes (provenance goes in manifest.json).
    """
    from safetensors.numpy import save_file

    meta = {"format": "pt"}
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        if shards[-1] and size + arr.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = arr
        size += arr.nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        return ["model.safetensors"]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for fname, shard in zip(names, shards):
        save_file(shard, str(out / fname), metadata=meta)
        weight_map |= dict.fromkeys(shard, fname)
    total = sum(a.nbytes for a in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return [*names, "model.safetensors.index.json"]
