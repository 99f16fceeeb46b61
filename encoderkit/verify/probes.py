"""The probe inputs every check runs: masked corpus sentences of mixed length padded together, one
text at the model's maximum length (padded with a short one), and text pairs with token types for
architectures that have segment types. Built once here for the convert gate and the parity matrix.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.batching import pad_batch
from ..core.texts import corpus_lines
from ..core.tokenization import TextTokenizer


@dataclass(frozen=True)
class ProbeBatch:
    name: str  # "short" | "long" | "pair"
    ids: np.ndarray
    mask: np.ndarray
    types: np.ndarray | None  # token types of a pair batch (segment-typed models), else None
    rows: np.ndarray  # (row, position) of every mask token


def probe_texts(mask_token: str, n: int = 8) -> list[str]:
    """Masked corpus sentences of mixed length (one mask mid-sentence, two in every third)."""
    out = []
    for j, line in enumerate(corpus_lines()[:n]):
        words = line.split()
        words[len(words) // 2] = mask_token
        if j % 3 == 0:
            words[1] = mask_token
        out.append(" ".join(words))
    return out


def long_ids(tok: TextTokenizer) -> list[int]:
    """A masked text at exactly the model's maximum length."""
    text = f"{tok.mask_token} " + " ".join(corpus_lines())
    while len(tok.encode_plain(text)) < tok.max_length:
        text += " " + text
    (ids,) = tok.encode([text], truncate=True)
    return ids


def probe_batches(tok: TextTokenizer, pad_id: int, mask_id: int, *, segment_types: bool,
                  texts: Sequence[str] | None = None) -> list[ProbeBatch]:
    """short (the texts padded together), long (one at the maximum length with a short one) and,
    where the architecture has segment types, pair (three text pairs with their token types)."""
    texts = list(probe_texts(tok.mask_token) if texts is None else texts)
    ids_short = tok.encode(texts, truncate=True)
    raw: list[tuple[str, list, list | None]] = [("short", ids_short, None),
                                                 ("long", [long_ids(tok), ids_short[0]], None)]
    if segment_types:
        lines = corpus_lines()[:6]
        enc = tok.encode_pairs(lines[:3], lines[3:6])
        raw.append(("pair", [e[0] for e in enc], [e[1] for e in enc]))
    out = []
    for name, ids_list, type_list in raw:
        ids, mask = pad_batch(ids_list, pad_id)
        types = None
        if type_list is not None:
            types = np.zeros_like(ids)
            for r, t in enumerate(type_list):
                types[r, : len(t)] = t
        out.append(ProbeBatch(name, ids, mask, types, np.argwhere(ids == mask_id)))
    return out


def describe(texts: int, max_length: int, segment_types: bool, attention_batches: Sequence[str]) -> str:
    return (f"{texts} masked sentences padded together, one at the maximum length ({max_length} tokens)"
            + (", 3 text pairs with token types" if segment_types else "")
            + (f"; attentions on the {' and '.join(attention_batches)} batch"
               + ("es" if len(attention_batches) > 1 else "") if attention_batches else ""))
