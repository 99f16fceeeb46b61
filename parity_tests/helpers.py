"""Comparison helpers shared by every parity test. The tolerance table is the project's one
table, ``encoderkit.backends.catalog.BACKENDS`` (the same numbers `convert` validates with)."""
from __future__ import annotations

import numpy as np

from encoderkit.backends.catalog import BACKENDS, installed_backends


def load(out, backend: str):
    """``encoderkit.load`` of a converted test model; a pickle backend (pytorch_model.bin) gets the
    consent its row asks for (the tests wrote that file themselves)."""
    import encoderkit

    return encoderkit.load(out, backend, **({"allow_pickle": True} if BACKENDS[backend].pickle else {}))


def fp32_backends() -> list[str]:
    """Every installed non-reference fp32 backend: parametrises the parity tests."""
    return [b for b in installed_backends() if b != "torch" and not BACKENDS[b].quantized]


def last_layer_only(backend: str) -> bool:
    """The backend gives the last hidden state only (registry row): no inner layers, no attentions."""
    return BACKENDS[backend].last_layer_only


def quantized_backends() -> list[str]:
    return [b for b in installed_backends() if BACKENDS[b].quantized]


def atol(backend: str) -> float:
    return BACKENDS[backend].tolerance.atol


def thresholds(backend: str) -> dict[str, float]:
    return BACKENDS[backend].tolerance.thresholds()


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
