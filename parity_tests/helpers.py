"""The tolerance table and comparison helpers shared by every parity test."""
from __future__ import annotations

import numpy as np

# Max absolute difference against the torch reference, per backend (fp32 exports).
TOLERANCE = {"onnx": 1e-4, "tf": 1e-4, "flax": 1e-4}
# Quantized backends: minimum accuracy against fp32 torch on the probe/test sentences.
QUANTIZED = {"onnx-int8": {"top1": 0.75, "cosine": 0.98}}


def assert_close(got: np.ndarray, want: np.ndarray, atol: float, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else ()
    assert diff.size == 0 or diff.max() <= atol, \
        f"{what}: max |diff| {diff.max():.3g} > {atol:g} at index {worst}"


def assert_same_predictions(got: list, want: list, atol: float, what: str) -> None:
    """Top-k token ids identical and scores within ``atol``.

    Where two reference candidates' scores are closer than ``atol`` their order is a coin toss for
    any backend, so only there may the ids swap places (the scores must still agree).
    """
    assert len(got) == len(want), f"{what}: {len(got)} texts vs {len(want)}"
    for t, (g_text, w_text) in enumerate(zip(got, want)):
        assert len(g_text) == len(w_text), f"{what}: text {t}: mask count differs"
        for m, (g, w) in enumerate(zip(g_text, w_text)):
            g_ids, w_ids = [p["token"] for p in g], [p["token"] for p in w]
            w_scores = [p["score"] for p in w]
            for k, (gi, wi) in enumerate(zip(g_ids, w_ids)):
                if gi != wi:
                    near = [w_ids[j] for j in range(len(w_ids)) if abs(w_scores[j] - w_scores[k]) <= atol]
                    assert gi in near, f"{what}: text {t} mask {m} rank {k}: token {gi} != {wi} " \
                                       f"(reference scores {w_scores})"
            diff = max(abs(a["score"] - b["score"]) for a, b in zip(g, w))
            assert diff <= atol, f"{what}: text {t} mask {m}: max score |diff| {diff:.3g} > {atol:g}"
