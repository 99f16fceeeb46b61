"""Pooled sentence embeddings over any layer."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..runtimes.base import Runtime

POOLINGS = ("mean", "cls", "max")


def embed(rt: Runtime, texts: Sequence[str], pooling: str = "mean", layer: int = -1,
          normalize: bool = False, *, truncate: bool = False) -> np.ndarray:
    """Pooled sentence embeddings, float32 [n, hidden].

    Args:
        pooling: "mean" or "max" over real tokens (padding excluded), or "cls" (first token).
        layer: hidden layer, 0 = embedding output ... num_layers = last; negatives count back.
        normalize: L2-normalise each embedding.
    Raises:
        InputError: unknown pooling, layer out of range, bad texts, or non-finite outputs.
    """
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    layer = layer_index(rt.spec.num_layers, layer)
    ids = rt.tokenizer.encode(texts, truncate=truncate)
    out = np.zeros((len(ids), rt.spec.hidden_size), dtype=np.float32)
    for batch, input_ids, attention_mask in rt.batches(ids):
        hidden = rt.hidden_layer(input_ids, attention_mask, layer).astype(np.float32)
        out[batch] = pool(hidden, attention_mask, pooling)
    if not np.isfinite(out).all():
        raise InputError(f"backend {rt.name} produced non-finite embeddings (NaN/inf); the model's weights "
                         "or config are broken")
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def layer_index(num_layers: int, layer: int) -> int:
    """``layer`` in 0..num_layers (negatives count back from the last).

    Raises:
        InputError: out of range or not an int.
    """
    n = num_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -(n + 1) <= layer <= n:
        raise InputError(f"layer must be in 0..{n} (or -{n + 1}..-1), got {layer!r}")
    return int(layer) % (n + 1)


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool [b, t, h] hidden states over real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    m = attention_mask[:, :, None].astype(bool)
    if pooling == "max":
        return np.where(m, hidden, -np.inf).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)
