"""fill-mask with the semantics of transformers' ``pipeline("fill-mask")``."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import EncoderkitWarning, InputError
from ..core.heads import MLM
from .kernels import check_finite, check_top_k, softmax, top_indices

if TYPE_CHECKING:
    from ..core.contracts import Encoder

__all__ = ["fill_mask", "softmax"]


def fill_mask(rt: Encoder, texts: Sequence[str], top_k: int = 5, targets: Sequence[str] | None = None,
              *, truncate: bool = False) -> list[list[list[dict[str, Any]]]]:
    """Predict every mask token, as transformers' ``pipeline("fill-mask")`` does.

    Returns:
        One entry per text; in it one list per mask (in order); in that the top-k
        ``{"token", "token_str", "score", "sequence"}`` dicts, best first. Scores are the
        softmax over the whole vocabulary (``targets`` select from it without renormalising).
    Raises:
        TypeError: a text is not a str.
        InputError: empty text, no mask token, too long, bad ``top_k`` or ``targets``, or a
            model without an MLM head.
    """
    spec, tok = rt.spec, rt.tokenizer
    rt.require_head(MLM)
    check_top_k(top_k)
    target_ids = _target_ids(rt, targets) if targets is not None else None
    k = min(top_k, len(target_ids)) if target_ids is not None else top_k
    if k > spec.vocab_size:
        raise InputError(f"top_k {top_k} exceeds the vocabulary size {spec.vocab_size}")
    ids = tok.encode(texts, truncate=truncate)
    mask_id = spec.mask_token_id
    for i, seq in enumerate(ids):
        if mask_id not in seq:
            what = "was truncated away" if truncate and tok.mask_token in texts[i] else "is missing"
            raise InputError(f"texts[{i}]: the mask token {tok.mask_token} {what}; "
                             f"write {tok.mask_token} where a word should be predicted")
    results: list[Any] = [None] * len(ids)
    for batch, input_ids, attention_mask in rt.batches(ids):
        mask_index = np.argwhere(input_ids == mask_id)
        logits = rt.head_logits(MLM, input_ids, attention_mask, rows=mask_index).astype(np.float32)
        check_finite(logits, "logits", rt.name)
        probs = softmax(logits)
        if target_ids is not None:
            probs = probs[:, target_ids]
        for row, (b, pos) in enumerate(mask_index):
            text_i = batch[b]
            if results[text_i] is None:
                results[text_i] = []
            seq = ids[text_i]
            single = sum(1 for t in seq if t == mask_id) == 1
            p = probs[row]
            top = top_indices(p, k)
            preds = []
            for j in top:
                token = int(target_ids[j]) if target_ids is not None else int(j)
                filled = np.array(seq)
                filled[pos] = token
                filled = filled[filled != spec.pad_token_id]
                preds.append({"token": token, "token_str": tok.decode([token], skip_special_tokens=False),
                              "score": float(p[j]),
                              "sequence": tok.decode(filled, skip_special_tokens=single)})
            results[text_i].append(preds)
    return results


def _target_ids(rt: Encoder, targets: Sequence[str]) -> np.ndarray:
    tok = rt.tokenizer
    if isinstance(targets, str):
        targets = [targets]
    found = []
    for t in targets:
        if not isinstance(t, str) or not t:
            raise InputError(f"target {t!r} is not a non-empty string")
        tid = tok.token_to_id(t)
        if tid is None:  # as the pipeline does: the first token of the target's encoding
            enc = tok.encode_plain(t)
            if not enc:
                warnings.warn(f"target {t!r} encodes to no token; ignoring it", EncoderkitWarning, stacklevel=4)
                continue
            tid = enc[0]
            shown = tok.decode([tid], skip_special_tokens=False)
            # a target written as the token reads (' many' for BPE's 'Ġmany') is that token: no warning
            if len(enc) > 1 or shown != t:
                warnings.warn(f"target {t!r} is not a vocabulary token; using its first token {shown!r}",
                              EncoderkitWarning, stacklevel=4)
        found.append(tid)
    if not found:
        raise InputError("none of the targets maps to a vocabulary token")
    return np.array(sorted(set(found)), dtype=np.int64)
