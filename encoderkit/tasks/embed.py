"""Pooled sentence embeddings over any layer."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .kernels import POOLINGS, check_finite, check_pooling, layer_index, pool

if TYPE_CHECKING:
    from ..core.contracts import Encoder

__all__ = ["POOLINGS", "embed", "layer_index", "pool"]


def embed(rt: Encoder, texts: Sequence[str], pooling: str = "mean", layer: int = -1,
          normalize: bool = False, *, truncate: bool = False) -> np.ndarray:
    """Pooled sentence embeddings, float32 [n, hidden].

    Args:
        pooling: "mean" or "max" over real tokens (padding excluded), or "cls" (first token).
        layer: hidden layer, 0 = embedding output ... num_layers = last; negatives count back.
        normalize: L2-normalise each embedding.
    Raises:
        InputError: unknown pooling, layer out of range, bad texts, or non-finite outputs.
    """
    check_pooling(pooling)
    layer = layer_index(rt.spec.num_layers, layer)
    ids = rt.tokenizer.encode(texts, truncate=truncate)
    out = np.zeros((len(ids), rt.spec.hidden_size), dtype=np.float32)
    for batch, input_ids, attention_mask in rt.batches(ids):
        hidden = rt.hidden_layer(input_ids, attention_mask, layer).astype(np.float32)
        out[batch] = pool(hidden, attention_mask, pooling)
    check_finite(out, "embeddings", rt.name)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out

