"""Flax: ``flax/flax_model.msgpack`` with Hugging Face's Flax parameter tree and names.

The tree (``roberta/encoder/layer/0/attention/self/query/kernel``, ``lm_head/dense/kernel``, ...)
comes from the shared mapping table (storage/mapping.py), checked against the tree our linen
model declares, so every tensor is used and every parameter filled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...storage.checkpoint import Checkpoint
from ...storage.hf import copy_model_files
from ...storage.mapping import map_state
from ..converter import Converter


class FlaxConverter(Converter):
    name = "flax"

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        from .model import PARAMS_FILE, model_tree, save_params

        copy_model_files(ckpt.directory, out, ckpt.spec)
        params = map_state(ckpt.state, ckpt.spec, model_tree(ckpt.spec))
        save_params(params, out / PARAMS_FILE)
        return {"parameter tree": f"{len(params)} arrays in {PARAMS_FILE} (Hugging Face Flax layout)"}
