"""TensorFlow SavedModel: ``tf/saved_model/1/`` (a numbered version folder, as model servers
expect), loadable with ``tf.saved_model.load`` and TensorFlow alone; tokenizer files beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...storage.checkpoint import Checkpoint
from ...storage.hf import copy_model_files
from ..converter import Converter
from .layout import SAVED_MODEL_DIR


class TFConverter(Converter):
    name = "tf"

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        from .model import build_tf_model
        from .tf_import import tf

        copy_model_files(ckpt.directory, out, ckpt.spec)
        model = build_tf_model(ckpt.spec, ckpt.state)
        sigs = model.signatures()
        tf.saved_model.save(model, str(out / SAVED_MODEL_DIR), signatures=sigs)
        return {"signatures": ", ".join(sigs), "saved model": f"tf/{SAVED_MODEL_DIR}"}
