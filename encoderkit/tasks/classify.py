"""Sequence classification with the semantics of transformers' ``pipeline("text-classification")``.

Scores are the softmax over the labels (the sigmoid for a one-label model, as the pipeline does);
labels are ``spec.labels`` (config.json's id2label). A text pair is encoded with the tokenizer's
pair template, and its token types (BERT: 0/1) reach every backend.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.batching import pad_batch, pad_types, plan_batches
from ..core.heads import CLASSIFICATION
from .kernels import check_finite, check_top_k

if TYPE_CHECKING:
    from ..core.contracts import Encoder

__all__ = ["check_top_k", "classify", "classify_logits", "ranked", "scores_of"]


def scores_of(logits: np.ndarray) -> np.ndarray:
    """Logits [n, labels] -> scores: softmax over labels, sigmoid when there is one label."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classify_logits(rt: Encoder, texts: Sequence[str], pairs: Sequence[str] | None = None, *,
                    truncate: bool = False) -> np.ndarray:
    """Raw classification logits float32 [n, num_labels], in input order (batched by token budget).

    Raises:
        TypeError / InputError: as the tokenizer's input policy; a model without the head.
    """
    rt.require_head(CLASSIFICATION)
    encoded = rt.tokenizer.encode_pairs(texts, pairs, truncate=truncate)
    ids = [e[0] for e in encoded]
    out = np.zeros((len(ids), rt.spec.num_labels), dtype=np.float32)
    for batch in plan_batches([len(x) for x in ids], rt.max_tokens, rt.padded_length):
        input_ids, attention_mask = pad_batch([ids[i] for i in batch], rt.spec.pad_token_id)
        types = pad_types([(e[0], e[1]) for e in encoded], batch, input_ids)
        out[batch] = rt.head_logits(CLASSIFICATION, input_ids, attention_mask, token_type_ids=types)
    check_finite(out, "logits", rt.name)
    return out


def classify(rt: Encoder, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int | None = 1,
             *, truncate: bool = False) -> list[list[dict[str, Any]]]:
    """Classify texts (or text pairs), as ``pipeline("text-classification")(..., top_k=k)`` does.

    Args:
        pairs: the second text of each pair (``text_pair``), one per text; None for single texts.
        top_k: labels per text, best first; None = every label.
    Returns:
        One list per text of ``{"label", "score"}`` dicts, best first (``top_k`` of them).
    Raises:
        TypeError / InputError: bad texts, bad ``top_k``, or a model without a classification head.
    """
    rt.require_head(CLASSIFICATION)
    check_top_k(top_k, allow_none=True)
    return ranked(scores_of(classify_logits(rt, texts, pairs, truncate=truncate)), rt.spec.labels, top_k)


def ranked(scores: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[list[dict[str, Any]]]:
    """Per row, the ``top_k`` ``{"label", "score"}`` dicts, best first (None: every label)."""
    check_top_k(top_k, allow_none=True)
    n = len(labels)
    k = n if top_k is None else min(top_k, n)
    results = []
    for row in scores:
        # a stable sort, as the pipeline's list.sort: equal scores keep label order
        order = sorted(range(n), key=lambda j: -row[j])[:k]
        results.append([{"label": labels[j], "score": float(row[j])} for j in order])
    return results
