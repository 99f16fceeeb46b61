"""Named entities (token classification) with the semantics of transformers'
``pipeline("token-classification")``: per-token label scores (softmax over the labels), the
special tokens skipped, then the aggregation strategy -- ``none`` (every token but "O"),
``simple`` (adjacent tokens of one entity grouped by their B-/I- tags), ``first`` / ``average`` /
``max`` (one label per word first, from its first piece / the mean of its pieces' scores / its
most confident piece, then grouped). Offsets are character positions in the original text.

Batched by token budget on any backend; the pipeline runs one text at a time (the numbers agree
to float precision).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import InputError
from ..core.heads import TOKEN_CLASSIFICATION
from .kernels import check_finite, softmax

if TYPE_CHECKING:
    from ..core.contracts import Encoder

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def ner(rt: Encoder, texts: Sequence[str], aggregation: str = "none", *, truncate: bool = False,
        ignore_labels: Sequence[str] = ("O",)) -> list[list[dict[str, Any]]]:
    """Entities of each text, as ``pipeline("token-classification", aggregation_strategy=...)``.

    Returns:
        One list per text. ``none``: ``{"entity", "score", "index", "word", "start", "end"}`` per
        token (``index`` counts the special tokens); otherwise ``{"entity_group", "score", "word",
        "start", "end"}`` per entity.
    Raises:
        InputError: a model without a token-classification head, an unknown aggregation, bad texts.
    """
    rt.require_head(TOKEN_CLASSIFICATION)
    if aggregation not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    encs = rt.tokenizer.encode_detailed(texts, truncate=truncate)
    scores = _token_scores(rt, [e.ids for e in encs])
    labels = rt.spec.labels
    out = []
    for text, enc, sc in zip(texts, encs, scores):
        pre = _pre_entities(rt.tokenizer, text, enc, sc)
        entities = _aggregate(rt.tokenizer, pre, aggregation, labels)
        out.append([e for e in entities if e.get("entity") not in ignore_labels
                    and e.get("entity_group") not in ignore_labels])
    return out


def _token_scores(rt: Encoder, ids: list[list[int]]) -> list[np.ndarray]:
    """Per text, the label probabilities of every token [len, labels]."""
    out: list[Any] = [None] * len(ids)
    for batch, input_ids, mask in rt.batches(ids):
        logits = rt.head_logits(TOKEN_CLASSIFICATION, input_ids, mask).astype(np.float32)
        check_finite(logits, "logits", rt.name)
        for row, i in enumerate(batch):
            out[i] = softmax(logits[row, : len(ids[i])])
    return out


def _pre_entities(tok, text: str, enc, scores: np.ndarray) -> list[dict[str, Any]]:
    """The pipeline's ``gather_pre_entities``: one entry per non-special token."""
    word_aware = bool(tok.continuing_subword_prefix)
    unk = tok.unk_token_id
    pre = []
    for idx, (token_id, token, (start, end), special) in enumerate(zip(enc.ids, enc.tokens, enc.offsets,
                                                                       enc.special_tokens_mask)):
        if special:
            continue
        word_ref = text[start:end]
        if word_aware:  # WordPiece: a piece is a subword when it is not its text (the "##")
            is_subword = len(token) != len(word_ref)
        else:  # byte-level BPE: the pipeline's fallback, a piece not after a space
            is_subword = start > 0 and " " not in text[start - 1: start + 1]
        if unk is not None and token_id == unk:
            token, is_subword = word_ref, False
        pre.append({"word": token, "scores": scores[idx], "start": start, "end": end, "index": idx,
                    "is_subword": is_subword})
    return pre


def _aggregate(tok, pre: list[dict[str, Any]], aggregation: str, labels: Sequence[str]) -> list[dict[str, Any]]:
    if aggregation in ("none", "simple"):
        entities = []
        for p in pre:
            j = int(p["scores"].argmax())
            entities.append({"entity": labels[j], "score": float(p["scores"][j]), "index": p["index"],
                             "word": p["word"], "start": p["start"], "end": p["end"]})
        return entities if aggregation == "none" else _group_entities(tok, entities)
    words, group = [], None
    for p in pre:
        if group is None:
            group = [p]
        elif p["is_subword"]:
            group.append(p)
        else:
            words.append(_aggregate_word(tok, group, aggregation, labels))
            group = [p]
    if group is not None:
        words.append(_aggregate_word(tok, group, aggregation, labels))
    return _group_entities(tok, words)


def _aggregate_word(tok, pieces: list[dict[str, Any]], aggregation: str, labels: Sequence[str]) -> dict[str, Any]:
    if aggregation == "first":
        scores = pieces[0]["scores"]
    elif aggregation == "max":
        scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
    else:  # average
        scores = np.nanmean(np.stack([p["scores"] for p in pieces]), axis=0)
    j = int(scores.argmax())
    return {"entity": labels[j], "score": float(scores[j]), "word": tok.tokens_to_string([p["word"] for p in pieces]),
            "start": pieces[0]["start"], "end": pieces[-1]["end"]}


def _tag(name: str) -> tuple[str, str]:
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name  # not in B-/I- form: a continuation


def _group_entities(tok, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent entities of the same type, a B- tag starting a new one (the pipeline's grouping)."""
    groups, current = [], []
    for e in entities:
        if current:
            bi, tag = _tag(e["entity"])
            _, last_tag = _tag(current[-1]["entity"])
            if tag == last_tag and bi != "B":
                current.append(e)
                continue
            groups.append(_group(tok, current))
        current = [e]
    if current:
        groups.append(_group(tok, current))
    return groups


def _group(tok, entities: list[dict[str, Any]]) -> dict[str, Any]:
    return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([e["score"] for e in entities])),
            "word": tok.tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"], "end": entities[-1]["end"]}
