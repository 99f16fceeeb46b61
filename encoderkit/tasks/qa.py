"""Extractive question answering with the semantics of transformers 4.57's
``pipeline("question-answering")`` (transformers 5 removed that pipeline): the question and the
context through the tokenizer's pair template, a context longer than the window cut into
overlapping windows (``doc_stride`` tokens shared), in each window the start and end logits of
context tokens (and the first token, the "no answer" slot) softmax-normalised, every span of at
most ``max_answer_len`` tokens scored start x end, spans aligned to whole words, equal answers
merged across windows (their scores summed), and the best ``top_k`` returned; with
``handle_impossible`` the empty answer competes with the smallest no-answer score seen.

Windows of every question are batched together by token budget on any backend.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.batching import pad_batch, pad_types, plan_batches
from ..core.errors import InputError
from ..core.heads import QUESTION_ANSWERING
from .kernels import check_finite, check_top_k

if TYPE_CHECKING:
    from ..core.contracts import Encoder

MAX_SEQ_LEN = 384  # the pipeline's window (capped by the model's length)


def qa(rt: Encoder, pairs: Sequence[tuple[str, str]], top_k: int = 1, max_answer_len: int = 15,
       doc_stride: int | None = None, max_seq_len: int | None = None, handle_impossible: bool = False,
       align_to_words: bool = True, *, truncate: bool = False) -> list[list[dict[str, Any]]]:
    """Answer each (question, context) pair from its context.

    Args:
        pairs: (question, context) per input.
        doc_stride: tokens neighbouring windows share (default: half the window, at most 128).
        max_seq_len: tokens per window, question included (default: the model's, at most 384).
        truncate: accepted for the task table's uniformity; long contexts are windowed, never cut.
    Returns:
        One list per pair of ``{"score", "start", "end", "answer"}`` (character offsets into the
        context), best first.
    Raises:
        InputError: no QA head, bad numbers, a question too long for a window, empty texts.
    """
    rt.require_head(QUESTION_ANSWERING)
    check_top_k(top_k)
    longest = rt.spec.max_tokens_per_text
    max_seq_len = min(longest, MAX_SEQ_LEN) if max_seq_len is None else max_seq_len
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    for name, v, lo, hi in (("max_answer_len", max_answer_len, 1, None), ("max_seq_len", max_seq_len, 8, longest),
                            ("doc_stride", doc_stride, 0, max_seq_len - 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise InputError(f"{name} must be an integer in {lo}..{hi if hi is not None else '∞'}, got {v!r}")
    pairs = [_pair(p, i) for i, p in enumerate(pairs)]
    if not pairs:
        raise InputError("no question/context pairs given")
    windows = [(i, w) for i, (q, c) in enumerate(pairs)
               for w in rt.tokenizer.encode_windows(q, c, max_length=max_seq_len, stride=doc_stride)]
    logits = _span_logits(rt, [w for _, w in windows])
    results: list[list[dict[str, Any]]] = []
    for i, (_, context) in enumerate(pairs):
        mine = [(w, lg) for (j, w), lg in zip(windows, logits) if j == i]
        results.append(_answers(mine, context, rt.spec.cls_token_id, top_k, max_answer_len, handle_impossible,
                                align_to_words))
    return results


def _pair(p: object, i: int) -> tuple[str, str]:
    if not isinstance(p, (tuple, list)) or len(p) != 2:
        raise InputError(f"pairs[{i}] must be a (question, context) pair")
    for what, t in zip(("question", "context"), p):
        if not isinstance(t, str):
            raise TypeError(f"pairs[{i}] {what} is {type(t).__name__}, expected str")
    return p[0], p[1]


def _span_logits(rt: Encoder, windows: list) -> list[np.ndarray]:
    """Per window, its start/end logits [len, 2]."""
    ids = [w.ids for w in windows]
    encoded = [(w.ids, w.type_ids) for w in windows]
    out: list[Any] = [None] * len(windows)
    for batch in plan_batches([len(x) for x in ids], rt.max_tokens, rt.padded_length):
        input_ids, mask = pad_batch([ids[i] for i in batch], rt.spec.pad_token_id)
        types = pad_types(encoded, batch, input_ids)
        logits = rt.head_logits(QUESTION_ANSWERING, input_ids, mask, token_type_ids=types).astype(np.float32)
        check_finite(logits, "logits", rt.name)
        for row, i in enumerate(batch):
            out[i] = logits[row, : len(ids[i])]
    return out


def _answers(windows: list, context: str, cls_id: int, top_k: int, max_answer_len: int,
             handle_impossible: bool, align_to_words: bool) -> list[dict[str, Any]]:
    """The pipeline's postprocess over one question's windows."""
    min_null = 1000000.0
    answers: list[dict[str, Any]] = []
    pre_topk = top_k * 2 + 10 if align_to_words else top_k  # alignment may drop candidates
    for enc, logits in windows:
        p_mask = np.array([sid != 1 for sid in enc.sequence_ids], dtype=np.int64)
        p_mask[np.asarray(enc.ids) == cls_id] = 0
        starts, ends, scores, min_null = _select(logits[:, 0][None], logits[:, 1][None], p_mask[None],
                                                 np.ones((1, len(enc.ids)), dtype=np.int64), min_null, pre_topk,
                                                 handle_impossible, max_answer_len)
        for s, e, score in zip(starts, ends, scores):
            start, end = _indices(enc, int(s), int(e), align_to_words)
            text = context[start:end]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += float(score)
            else:
                answers.append({"score": float(score), "start": start, "end": end, "answer": text})
    if handle_impossible:
        answers.append({"score": float(min_null), "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def _select(start, end, p_mask, attention_mask, min_null, top_k, handle_impossible, max_answer_len):
    """The pipeline's ``select_starts_ends``."""
    desired = np.abs(p_mask - 1) & attention_mask
    undesired = desired == 0
    start = np.where(undesired, -10000.0, start)
    end = np.where(undesired, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible:
        min_null = min(min_null, float(start[0, 0] * end[0, 0]))
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = _decode_spans(start, end, top_k, max_answer_len, desired)
    return starts, ends, scores, min_null


def _decode_spans(start, end, top_k, max_answer_len, desired):
    """The pipeline's ``decode_spans``: every span start <= end < start + max_answer_len."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, top_k)[0:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # As the pipeline does it: ``desired`` is [1, seq], so its nonzero() is (rows, columns) and the
    # row indices (all 0) count as allowed positions too. Position 0's probability is 0 by then,
    # so this only admits zero-score spans, and only when fewer candidates score above 0.
    keep = np.isin(starts, desired.nonzero()) & np.isin(ends, desired.nonzero())
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]


def _indices(enc, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """Character offsets of the span, widened to whole words where the tokenizer knows them."""
    if align_to_words:
        try:
            start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
            return enc.word_to_chars(start_word, 1)[0], enc.word_to_chars(end_word, 1)[1]
        except Exception:  # noqa: BLE001 - tokenizers raises plain Exception (no word: a special token)
            pass
    return enc.offsets[s][0], enc.offsets[e][1]
