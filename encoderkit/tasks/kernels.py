"""The small numerical kernels every task shares (and the deployment runners copy): softmax,
pooling over real tokens, layer indices, top-k in the pipelines' order. Tasks layer (numpy only).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import InputError

POOLINGS = ("mean", "cls", "max")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool [b, t, h] hidden states over real tokens: mean, max, or the first token (cls)."""
    if pooling == "cls":
        return hidden[:, 0]
    m = attention_mask[:, :, None].astype(bool)
    if pooling == "max":
        return np.where(m, hidden, -np.inf).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


def check_pooling(pooling: object) -> str:
    """Raises InputError for a pooling that is not one of ``POOLINGS``."""
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    return str(pooling)


def layer_index(num_layers: int, layer: int) -> int:
    """``layer`` in 0..num_layers (negatives count back from the last).

    Raises:
        InputError: out of range or not an int.
    """
    n = num_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -(n + 1) <= layer <= n:
        raise InputError(f"layer must be in 0..{n} (or -{n + 1}..-1), got {layer!r}")
    return int(layer) % (n + 1)


def check_top_k(top_k: int | None, *, allow_none: bool = False) -> None:
    """Raises InputError unless ``top_k`` is a positive integer (or None where allowed)."""
    if top_k is None and allow_none:
        return
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a positive integer, got {top_k!r}")


def top_indices(p: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values of ``p``, best first; ties keep index order (as the
    pipelines' stable sorts)."""
    top = np.argpartition(-p, k - 1)[:k] if k < p.shape[0] else np.arange(p.shape[0])
    return top[np.argsort(-p[top], kind="stable")]


def check_finite(x: np.ndarray, what: str, backend: str) -> None:
    """Raises InputError naming the backend when ``x`` holds NaN or inf (broken weights or config)."""
    if not np.isfinite(x).all():
        raise InputError(f"backend {backend} produced non-finite {what} (NaN/inf); the model's weights "
                         "or config are broken")
