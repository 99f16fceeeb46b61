"""Length-bucketed, token-budget batching shared by every backend. Core layer."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import InputError


def plan_batches(lengths: Sequence[int], max_tokens: int,
                 padded_length: Callable[[int], int] | None = None) -> list[list[int]]:
    """Group indices into batches whose padded size (count x longest) stays within ``max_tokens``.

    Texts are sorted by length (longest first, so the first batch shows the peak memory), each
    batch padded only to its own longest member -- or to ``padded_length(longest)`` for a backend
    that pads lengths up to shape buckets, so that its batches fill the budget in padded tokens. A
    single text longer than the budget still gets a batch of its own. Callers restore input order
    from the returned indices.

    Raises:
        InputError: ``max_tokens`` is not positive.
    """
    if max_tokens < 1:
        raise InputError(f"max_tokens must be positive, got {max_tokens}")
    pad = padded_length or (lambda t: t)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and pad(longest_if_added) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to ``length`` (default: the longest); returns int64 ids and mask."""
    longest = max(len(s) for s in seqs)
    length = longest if length is None else max(length, longest)
    ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


def pad_types(encoded: Sequence[tuple[Sequence[int], Sequence[int]]], batch: Sequence[int],
              input_ids: np.ndarray) -> np.ndarray | None:
    """Token types of a padded batch whose rows are ``encoded[i]`` = (ids, type ids) for i in
    ``batch``; None when every type is 0 (single texts, RoBERTa pairs). Padding gets type 0."""
    if not any(any(encoded[i][1]) for i in batch):
        return None
    types = np.zeros_like(input_ids)
    for row, i in enumerate(batch):
        types[row, : len(encoded[i][1])] = encoded[i][1]
    return types
