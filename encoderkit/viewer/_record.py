"""The attention record the viewer shows: the core's ``encoderkit.tasks.attentions``.

Every other viewer module reads only the record's fields (tokens, token_ids, probs, special,
segment_ids, backend).
"""
from __future__ import annotations

from ..tasks.attentions import AttentionRecord


def attention_record(rt, text: str, pair: str | None = None, truncate: bool = False) -> AttentionRecord:
    """``rt.attentions(text, pair)``: every layer and head for one text (or text pair).

    Raises:
        InputError: an empty text or pair, or an input longer than the model without ``truncate``.
    """
    return rt.attentions(text, pair, truncate=truncate)


__all__ = ["AttentionRecord", "attention_record"]
