"""TensorFlow backend: the SavedModel's own signatures (graph mode, no retracing per shape)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, EncoderkitWarning
from ..models.tf_import import onednn_enabled, tf
from ..models.tf_model import SAVED_MODEL_DIR
from .base import EncoderOutput, Runtime, single_segment


class TFRuntime(Runtime):
    name = "tf"

    def __init__(self, directory: Path, *, max_tokens: int = 1024, threads: int | None = None):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:
                pass  # already initialised in this process: keep its setting
        self.onednn = onednn_enabled()
        if not self.onednn and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
            warnings.warn("TensorFlow runs without its oneDNN kernels (it was imported before encoderkit "
                          "could ask for them): expect it ~1.3x slower; set TF_ENABLE_ONEDNN_OPTS=1 "
                          "before importing tensorflow", EncoderkitWarning, stacklevel=2)
        path = directory / SAVED_MODEL_DIR
        try:
            self.model = tf.saved_model.load(str(path))
        except Exception as e:  # TF raises OSError/NotFoundError/DecodeError on bad dirs
            raise ArtifactError(f"{path}: not a loadable SavedModel ({type(e).__name__}); "
                                "re-run `encoderkit convert --to tf`") from None
        self.sig = self.model.signatures

    @classmethod
    def load(cls, directory: Path, **options: Any) -> TFRuntime:
        return cls(Path(directory), **options)

    @staticmethod
    def _feeds(input_ids, attention_mask):
        return {"input_ids": tf.constant(input_ids, tf.int64), "attention_mask": tf.constant(attention_mask, tf.int64)}

    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False):
        single_segment(self, token_type_ids)
        feeds = self._feeds(input_ids, attention_mask)
        hidden = att = None
        if output_hidden_states:
            hidden = tuple(self.sig["hidden_states"](**feeds)["hidden_states"].numpy())
            last = hidden[-1]
        else:
            last = self.sig["serving_default"](**feeds)["last_hidden_state"].numpy()
        if output_attentions:
            att = tuple(self.sig["attentions"](**feeds)["attentions"].numpy())
        return EncoderOutput(last, hidden, att)

    def hidden_layer(self, input_ids, attention_mask, layer, *, token_type_ids=None):
        single_segment(self, token_type_ids)
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask).last_hidden_state
        return self.sig["hidden_states"](**self._feeds(input_ids, attention_mask))["hidden_states"][layer].numpy()

    def mask_logits(self, input_ids, attention_mask, mask_index, *, token_type_ids=None):
        single_segment(self, token_type_ids)
        out = self.sig["fill_mask"](**self._feeds(input_ids, attention_mask),
                                    mask_positions=tf.constant(np.asarray(mask_index), tf.int64))
        return out["logits"].numpy()
