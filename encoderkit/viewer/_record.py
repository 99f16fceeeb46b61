"""TEMPORARY adapter: the attention record, built from today's public runtime API.

The lead is moving this to the core as ``encoderkit.tasks.attentions`` (``AttentionRecord`` and
``Runtime.attention_record``). Every other viewer module reads only the record's fields, so when
the core version lands this file alone is swapped for a re-export.

Known gap (the core fix is the lead's): backends feed token_type_ids = 0, so for a BERT pair the
B segment runs with type id 0 instead of 1. ``segment_ids`` below is still the true A/B split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class AttentionRecord:
    """Attention of every layer and head for one text (or text pair) on one backend."""

    tokens: tuple[str, ...]  # token strings as the tokenizer gives them (e.g. 'Ġworld', '[CLS]')
    token_ids: np.ndarray  # int64 [seq]
    probs: np.ndarray  # float32 [layers, heads, seq, seq]
    special: np.ndarray  # bool [seq], True for special tokens (<s>, </s>, [CLS], [SEP], pad)
    segment_ids: np.ndarray  # int64 [seq]: 0 for text A, 1 for the pair text B (all 0 without a pair)
    backend: str  # the backend name that computed it


def _check_text(name: str, text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} is {type(text).__name__}, expected str")
    if not text.strip():
        raise InputError(f"{name} is empty")


def attention_record(rt, text: str, pair: str | None = None, truncate: bool = False) -> AttentionRecord:
    """Tokenize ``text`` (and ``pair``) as the model's tokenizer does and run the encoder once.

    Args:
        rt: a loaded ``Runtime``.
        text: text A.
        pair: optional text B, encoded with the tokenizer's pair template (``<s> A </s></s> B </s>``
            for RoBERTa, ``[CLS] A [SEP] B [SEP]`` for BERT).
        truncate: cut an over-long input to the model's length instead of failing.
    Returns:
        The AttentionRecord.
    Raises:
        InputError: an empty text, or an input longer than the model and ``truncate`` is False.
    """
    from tokenizers import Tokenizer

    _check_text("text", text)
    if pair is not None:
        _check_text("pair", pair)
    # TextTokenizer has no pair encoding yet; its wrapped tokenizers.Tokenizer is private (_tok).
    # This reaches in once, here, in the file that the core's version replaces.
    tok: Tokenizer = rt.tokenizer._tok
    limit = rt.tokenizer.max_length
    enc = tok.encode(text, pair) if pair is not None else tok.encode(text)
    if len(enc.ids) > limit:
        if not truncate:
            what = "text + pair" if pair is not None else "text"
            raise InputError(f"{what} has {len(enc.ids)} tokens, more than the model's {limit}; "
                             "shorten it or pass --truncate")
        cut = Tokenizer.from_str(tok.to_str())
        cut.enable_truncation(limit, strategy="longest_first")
        enc = cut.encode(text, pair) if pair is not None else cut.encode(text)
    ids = np.asarray(enc.ids, dtype=np.int64)
    spec = rt.spec
    special = np.isin(ids, [spec.cls_token_id, spec.sep_token_id, spec.pad_token_id])
    seg = np.zeros(len(ids), dtype=np.int64)
    if pair is not None:
        seq_ids = enc.sequence_ids  # None for template specials, 0 for A, 1 for B
        first_b = next(i for i, s in enumerate(seq_ids) if s == 1) if 1 in seq_ids else len(ids)
        seg[first_b:] = 1
        seg = np.maximum(seg, np.asarray(enc.type_ids, dtype=np.int64))  # BERT's closing [SEP] is B's
    out = rt.forward(ids[None, :], np.ones((1, len(ids)), dtype=np.int64), output_attentions=True)
    probs = np.stack([np.asarray(a)[0] for a in out.attentions]).astype(np.float32)
    return AttentionRecord(tokens=tuple(enc.tokens), token_ids=ids, probs=probs, special=special,
                           segment_ids=seg, backend=rt.name)
