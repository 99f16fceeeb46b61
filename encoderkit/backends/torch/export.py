"""``--to safetensors``: the canonical Hugging Face layout, the format every other converter starts
from. Writes ``model.safetensors`` (or shards plus ``model.safetensors.index.json``) with the tied
decoder left out, as transformers itself saves tied weights, and ``format: pt`` metadata so that
``from_pretrained`` accepts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...core.options import option
from ...storage.checkpoint import Checkpoint
from ...storage.hf import DEFAULT_SHARD_BYTES, copy_model_files, write_safetensors
from ..converter import Converter, NoOptions


@dataclass(frozen=True)
class SafetensorsOptions(NoOptions):
    max_shard_bytes: int = option(DEFAULT_SHARD_BYTES, "largest shard in bytes", cli=False)


class SafetensorsConverter(Converter):
    name = "safetensors"
    Options = SafetensorsOptions

    def export(self, ckpt: Checkpoint, out: Path) -> dict:
        copy_model_files(ckpt.directory, out, ckpt.spec)
        files = write_safetensors(ckpt.state, out, max_shard_bytes=self.options.max_shard_bytes)
        return {"files": files}
