"""``--to pytorch``: ``pytorch_model.bin``, the legacy checkpoint some deployment tools still read.

A plain dict of tensors (canonical names, the tied decoder left out as transformers saves it) saved
with ``torch.save``: ``torch.load(..., weights_only=True)`` reads it, and so does transformers'
``from_pretrained``. The config and tokenizer files sit beside it, as in every format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...storage.checkpoint import Checkpoint
from ...storage.hf import copy_model_files
from ..converter import Converter

FILE = "pytorch_model.bin"


class PytorchConverter(Converter):
    name = "pytorch"

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        import torch

        copy_model_files(ckpt.directory, out, ckpt.spec)
        # contiguous copies that own their memory: a tensor sharing a numpy buffer saves fine, but
        # the file must hold plain tensors only (no numpy objects), which weights_only requires
        state = {name: torch.from_numpy(value).clone() for name, value in sorted(ckpt.state.items())}
        torch.save(state, out / FILE)
        return {"files": [FILE], "tensors": len(state), "read with": "torch.load(weights_only=True) / --allow-pickle"}
