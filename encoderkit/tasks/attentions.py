"""Attention probabilities of one text (or text pair), as a record a viewer can show as it is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.batching import pad_batch
from ..core.errors import InputError

if TYPE_CHECKING:
    from ..core.contracts import Encoder


@dataclass(frozen=True)
class AttentionRecord:
    """Everything needed to show the attention of one input without re-tokenizing it."""

    tokens: tuple[str, ...]  # token strings as the tokenizer gives them ('Ġworld', '[CLS]', ...)
    token_ids: np.ndarray  # int64 [seq]
    probs: np.ndarray  # float32 [layers, heads, seq, seq]; rows sum to 1
    special: np.ndarray  # bool [seq]: special tokens (<s>, </s>, [CLS], [SEP], ...; not the mask)
    segment_ids: np.ndarray  # int64 [seq]: 0 for text A, 1 for the pair's text B
    backend: str  # the backend that computed it

    @property
    def num_layers(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.probs.shape[1])


def attentions(rt: Encoder, text: str, pair: str | None = None, *, truncate: bool = False) -> AttentionRecord:
    """Attention probabilities of every layer and head for one text (or the pair ``text``, ``pair``).

    Raises:
        TypeError / InputError: as ``fill_mask``'s input policy; non-finite probabilities.
    """
    tok = rt.tokenizer
    ((ids, type_ids, segments),) = tok.encode_pairs([text], None if pair is None else [pair],
                                                       truncate=truncate, one=True)
    input_ids, attention_mask = pad_batch([ids], rt.spec.pad_token_id)
    types = np.asarray([type_ids], dtype=np.int64) if any(type_ids) else None
    out = rt.forward(input_ids, attention_mask, token_type_ids=types, output_attentions=True)
    probs = np.stack([a[0] for a in out.attentions]).astype(np.float32)
    if not np.isfinite(probs).all():
        raise InputError(f"backend {rt.name} produced non-finite attention probabilities; the model's "
                         "weights or config are broken")
    special = tok.special_ids - {tok.mask_token_id}  # the mask is a word to look at, not a marker
    return AttentionRecord(tokens=tuple(tok.id_to_token(i) for i in ids),
                           token_ids=np.asarray(ids, dtype=np.int64), probs=probs,
                           special=np.asarray([i in special for i in ids], dtype=bool),
                           segment_ids=np.asarray(segments, dtype=np.int64), backend=rt.name)
