"""TensorFlow backend: the SavedModel's own signatures (graph mode, no retracing per shape)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ArtifactError, EncoderkitWarning, InputError
from ...core.heads import HEADS, MASKS
from ..base import EncoderOutput, Runtime, single_segment
from .layout import SAVED_MODEL_DIR, head_signature
from .tf_import import onednn_enabled, tf


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
        # SavedModels written before token types were an input take single-segment input only.
        self.typed = "token_type_ids" in self.sig["serving_default"].structured_input_signature[1]

    @classmethod
    def load(cls, directory: Path, **options: Any) -> TFRuntime:
        return cls(Path(directory), **options)

    def _feeds(self, input_ids, attention_mask, token_type_ids=None):
        feeds = {"input_ids": tf.constant(input_ids, tf.int64), "attention_mask": tf.constant(attention_mask, tf.int64)}
        if not self.typed:
            single_segment(self, token_type_ids)
        else:
            types = np.zeros_like(np.asarray(input_ids)) if token_type_ids is None else token_type_ids
            feeds["token_type_ids"] = tf.constant(types, tf.int64)
        return feeds

    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False):
        feeds = self._feeds(input_ids, attention_mask, token_type_ids)
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
        feeds = self._feeds(input_ids, attention_mask, token_type_ids)
        if layer == self.spec.num_layers:
            return self.sig["serving_default"](**feeds)["last_hidden_state"].numpy()
        return self.sig["hidden_states"](**feeds)["hidden_states"][layer].numpy()

    def head_logits(self, head, input_ids, attention_mask, *, rows=None, token_type_ids=None):
        """The head's own signature: rows, head and layout all inside the SavedModel."""
        self.require_head(head)
        feeds = self._feeds(input_ids, attention_mask, token_type_ids)
        if HEADS[head].rows == MASKS:
            if rows is None:
                raise InputError("this head reads given positions: pass rows ([m, 2] of (row, position))")
            feeds["mask_positions"] = tf.constant(np.asarray(rows, dtype=np.int64).reshape(-1, 2), tf.int64)
        return self.sig[head_signature(head)](**feeds)["logits"].numpy()
