"""The figures every comparison reports, computed one way: max |difference| with where it is,
cosine, top-k agreement of vocabulary predictions, and label / tag / span agreement. Used by the
convert gate and the parity matrix (``compare``) and by the benchmark's accuracy columns.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


class Worst:
    """The largest value seen of one difference, with where it was; a non-finite value sticks."""

    def __init__(self) -> None:
        self.value, self.where = 0.0, ""

    def add(self, d: np.ndarray, where: Callable[[tuple], str]) -> None:
        if d.size == 0:
            return
        bad = ~np.isfinite(d)
        if bad.any():
            idx = np.unravel_index(np.argmax(bad), d.shape)
            self.value, self.where = float("nan"), where(idx) + " (non-finite)"
            return
        idx = np.unravel_index(np.argmax(d), d.shape)
        if not math.isnan(self.value) and d[idx] >= self.value:
            self.value, self.where = float(d[idx]), where(idx)


class Lowest:
    """The smallest (and mean) of values seen (cosines, agreements); a non-finite value sticks."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, xs) -> None:
        self.values += [float(x) for x in np.ravel(xs)]

    @property
    def min(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        return float("nan") if v.size == 0 or not np.isfinite(v).all() else float(v.min())

    @property
    def mean(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        return float("nan") if v.size == 0 or not np.isfinite(v).all() else float(v.mean())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def top_ids(logits: np.ndarray, k: int = 5) -> list[list[int]]:
    """Per row, the indices of the ``k`` largest logits, best first (NaN rows: empty)."""
    out = []
    for row in np.asarray(logits):
        out.append([] if not np.isfinite(row).all() else [int(x) for x in np.argsort(-row, kind="stable")[:k]])
    return out


def topk_agreement(ref: Sequence[Sequence[int]], cand: Sequence[Sequence[int]], k: int = 5
                   ) -> tuple[list[float], list[float]]:
    """Per prediction: top-1 agreement (1/0) and top-k overlap (shared ids / k) of best-first id
    lists (a candidate row without predictions counts as NaN)."""
    top1, topk = [], []
    for r, c in zip(ref, cand):
        if not c:
            top1.append(float("nan"))
            topk.append(float("nan"))
            continue
        n = min(k, len(r))
        top1.append(float(r[0] == c[0]))
        topk.append(len(set(r[:n]) & set(c[:n])) / n)
    return top1, topk


def argmax_agreement(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Per row (last axis = classes): 1 where the argmax agrees (labels, tags), NaN where the
    candidate is not finite."""
    agree = (np.argmax(ref, -1) == np.argmax(cand, -1)).astype(np.float64)
    return np.where(np.isfinite(cand).all(-1), agree, np.nan)


def span_agreement(ref: np.ndarray, cand: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row of [batch, seq, 2] start/end logits: 1 where both the best start and the best end
    (over real tokens) agree."""
    real = np.asarray(mask, dtype=bool)[:, :, None]
    r = np.where(real, ref, -np.inf).argmax(1)
    c = np.where(real, cand, -np.inf).argmax(1)
    agree = (r == c).all(-1).astype(np.float64)
    return np.where(np.isfinite(np.where(real, cand, 0)).all((1, 2)), agree, np.nan)
