"""Synthetic attention records: any layers x heads x tokens in a second, without a model.

Building random roberta-large (355 M parameters) and running 512 tokens through it takes minutes
and gigabytes; the viewer's size, speed and interaction do not depend on where the numbers came
from, so tests and the page-size benchmark use these instead (parity tests use real models).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._record import AttentionRecord

# Byte-level BPE pieces (Ġ = a leading space) including a split non-ASCII word, as RoBERTa gives them.
_WORDS = ["ĠThe", "Ġquick", "Ġbrown", "Ġfox", "Ġjumps", "Ġover", "Ġthe", "Ġlazy", "Ġdog", ".", "Ġcaf", "Ã©",
          "Ġna", "Ã¯", "ve", "ĠZ", "Ã¼", "rich", ",", "Ġand", "Ġthen", "Ġit", "Ġslept", "Ċ"]


def synthetic_record(layers: int = 24, heads: int = 16, seq: int = 128, *, seed: int = 0,
                     pair_at: int | None = None, backend: str = "synthetic") -> AttentionRecord:
    """A RoBERTa-like record with random row-stochastic attention (softmax of scaled normal logits).

    Args:
        layers, heads, seq: the shape (``seq`` counts ``<s>`` and ``</s>``).
        pair_at: if set, the token index where text B starts (``</s></s>`` placed before it).
    Returns:
        The AttentionRecord (float32 probabilities, every row summing to 1).
    """
    if seq < 2:
        raise ValueError("seq must be at least 2 (<s> and </s>)")
    rng = np.random.default_rng(seed)
    body = [_WORDS[k % len(_WORDS)] for k in range(seq - 2)]
    tokens = ["<s>", *body, "</s>"]
    seg = np.zeros(seq, dtype=np.int64)
    if pair_at is not None:
        tokens[pair_at - 2:pair_at] = ["</s>", "</s>"]
        seg[pair_at:] = 1
    vocab = {t: k for k, t in enumerate(dict.fromkeys(tokens))}
    ids = np.array([vocab[t] for t in tokens], dtype=np.int64)
    special = np.isin(np.array(tokens), ["<s>", "</s>"])
    probs = np.empty((layers, heads, seq, seq), dtype=np.float32)
    sharp = rng.uniform(0.5, 6.0, size=(layers, heads, 1, 1)).astype(np.float32)
    for layer in range(layers):  # layer by layer: at 512 tokens the whole tensor is 400 MB
        x = rng.standard_normal((heads, seq, seq), dtype=np.float32) * sharp[layer]
        x -= x.max(axis=-1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
        probs[layer] = x
    return AttentionRecord(tokens=tuple(tokens), token_ids=ids, probs=probs, special=special,
                           segment_ids=seg, backend=backend)


def perturbed(record: AttentionRecord, rel: float = 1e-3, *, seed: int = 1,
              backend: str = "synthetic-b") -> AttentionRecord:
    """The same tokens with every probability scaled by (1 + rel * normal noise), rows renormalised:
    a second backend for the compare view."""
    rng = np.random.default_rng(seed)
    probs = np.empty_like(record.probs)
    for layer in range(probs.shape[0]):  # layer by layer, as above
        x = record.probs[layer] * (1 + rel * rng.standard_normal(record.probs.shape[1:], dtype=np.float32))
        probs[layer] = x / x.sum(axis=-1, keepdims=True)
    return replace(record, probs=probs, backend=backend)
