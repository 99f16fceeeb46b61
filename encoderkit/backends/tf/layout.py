"""The TF artifact's on-disk contract (no TensorFlow import): where the SavedModel sits and what its
signatures are called. Shared by the exporter, the runtime and the origin check.

``tf/saved_model/1/`` (a numbered version folder, as TF Serving expects) holds signatures
``serving_default`` (last_hidden_state), ``hidden_states``, ``attentions`` and one per head the
model carries: ``fill_mask`` (MLM; + ``mask_positions``), ``classify`` (sequence classification),
``<head_name>`` for any other head (``head_signature``). A head signature takes the same ids as
``serving_default`` and returns ``logits`` at the rows the head reads (core.heads).
"""
from __future__ import annotations

SAVED_MODEL_DIR = "saved_model/1"  # a numbered version folder, as TF Serving expects

# The signature names of the two heads earlier versions wrote (kept: converted directories and
# TF Serving clients keep working).
_HEAD_SIGNATURES = {"mlm": "fill_mask", "classification": "classify"}


def head_signature(head: str) -> str:
    """The SavedModel signature that runs head ``head``."""
    return _HEAD_SIGNATURES.get(head, head.replace("-", "_"))
