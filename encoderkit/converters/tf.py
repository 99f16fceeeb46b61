"""TensorFlow SavedModel: ``tf/saved_model/1/`` (a numbered version folder, as model servers
expect), loadable with ``tf.saved_model.load`` and TensorFlow alone; tokenizer files beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, copy_model_files
from ..mapping import map_state
from .base import Converter, register

SAVED_MODEL_DIR = "saved_model/1"


def build_tf_model(ckpt: Checkpoint):
    """Our TFMaskedLM with the checkpoint's weights assigned through the shared mapping table."""
    from ..models.tf_model import TFMaskedLM

    model = TFMaskedLM(ckpt.spec)
    variables = model.tree()
    params = map_state(ckpt.state, ckpt.spec, {k: tuple(v.shape) for k, v in variables.items()})
    for path, value in params.items():
        variables[path].assign(value)
    return model


@register
class TFConverter(Converter):
    name = "tf"
    backends = ("tf",)

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        from ..models.tf_import import tf

        copy_model_files(ckpt.directory, out, ckpt.spec)
        model = build_tf_model(ckpt)
        sigs = model.signatures()
        tf.saved_model.save(model, str(out / SAVED_MODEL_DIR), signatures=sigs)
        return {"signatures": ", ".join(sigs), "saved model": f"tf/{SAVED_MODEL_DIR}"}
