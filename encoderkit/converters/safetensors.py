"""Canonical HF-layout safetensors: the format every other converter starts from.

Writes ``model.safetensors`` (or shards plus ``model.safetensors.index.json``) with the tied
decoder left out, as transformers itself saves tied weights, and ``format: pt`` metadata so that
``from_pretrained`` accepts it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, copy_model_files
from ..spec import ModelSpec
from ..options import option
from .base import Converter, NoOptions

DEFAULT_SHARD_BYTES = 1 << 30  # 1 GiB: roberta-large (1.42 GB fp32) becomes two shards


def write_safetensors(state: dict[str, np.ndarray], spec: ModelSpec, out: Path, *,
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


@dataclass(frozen=True)
class SafetensorsOptions(NoOptions):
    max_shard_bytes: int = option(DEFAULT_SHARD_BYTES, "largest shard in bytes", cli=False)


class SafetensorsConverter(Converter):
    name = "safetensors"
    Options = SafetensorsOptions

    def export(self, ckpt: Checkpoint, out: Path) -> dict:
        copy_model_files(ckpt.directory, out, ckpt.spec)
        files = write_safetensors(ckpt.state, ckpt.spec, out, max_shard_bytes=self.options.max_shard_bytes)
        return {"files": files}
