"""Comparison helpers shared by every parity test. The tolerance table is the project's one
table, ``encoderkit.backends.catalog.BACKENDS`` (the same numbers `convert` validates with).

The backends are parametrised from the whole catalog, not from what happens to be installed: the
test environment installs every extra (tests/test_environment.py checks it), so a backend whose
extra stopped installing fails its tests instead of silently dropping out of them.

Random weights sit close to a garbage floor (two unrelated texts have mean-pooled cosine ~0.93 on
a random tiny model; a near-uniform vocabulary distribution makes every top-k a near-tie). The
helpers below measure that floor in the test (``cosine_floor``) and build checkpoints with real
signal where a check needs it (``peaked``: a sharpened MLM head; ``int8_hostile``: a checkpoint
run-time int8, per tensor or per token, cannot represent).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from encoderkit.backends.catalog import BACKENDS


def load(out, backend: str):
    """``encoderkit.load`` of a converted test model; a pickle backend (pytorch_model.bin) gets the
    consent its row asks for (the tests wrote that file themselves). A backend this machine cannot
    run (its row's machine_check: torch-bf16 without bf16 instructions) is skipped, saying why."""
    import pytest

    import encoderkit
    from encoderkit.backends.catalog import runs_here

    if why := runs_here(BACKENDS[backend]):
        pytest.skip(f"{backend}: {why}")
    return encoderkit.load(out, backend, **({"allow_pickle": True} if BACKENDS[backend].pickle else {}))


def fp32_backends() -> list[str]:
    """Every non-reference fp32 backend of the catalog: parametrises the parity tests."""
    return [b for b in BACKENDS if b != "torch" and not BACKENDS[b].quantized]


def last_layer_only(backend: str) -> bool:
    """The backend gives the last hidden state only (registry row): no inner layers, no attentions."""
    return BACKENDS[backend].last_layer_only


def quantized_backends() -> list[str]:
    return [b for b in BACKENDS if BACKENDS[b].quantized]


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


# ------------------------------------------------------------------------------ garbage floors
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def row_cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (_unit(got) * _unit(want)).sum(1)


def cosine_floor(want: np.ndarray) -> dict[str, float]:
    """The min row cosine against ``want`` that garbage already reaches on this model and these
    texts: one constant vector (the mean row: the best constant) and every row shifted by one (each
    text answered with another text's embedding)."""
    assert len(want) >= 3, "a floor needs at least 3 texts"
    const = np.repeat(np.asarray(want).mean(0, keepdims=True), len(want), axis=0)
    return {"constant": float(row_cosines(const, want).min()),
            "shifted": float(row_cosines(np.roll(want, 1, axis=0), want).min())}


def assert_cosine_above_floor(got: np.ndarray, want: np.ndarray, bound: float, what: str,
                              fraction: float = 0.1) -> float:
    """Min row cosine of ``got`` vs ``want`` at least ``bound`` AND its distance from 1 at most
    ``fraction`` of garbage's (constant vector, shifted rows): a bound near the floor cannot pass
    a backend that returns garbage. Returns the min cosine."""
    cos = float(row_cosines(got, want).min())
    floor = max(cosine_floor(want).values())
    assert floor < 1 - 1e-6, f"{what}: the texts' embeddings are all alike (floor {floor}); use other texts"
    need = max(bound, 1 - fraction * (1 - floor))
    assert cos >= need, (f"{what}: min cosine {cos:.5f} < {need:.5f} (bound {bound}; garbage floor {floor:.5f}: "
                         f"1 - cos may be at most {fraction} of 1 - floor)")
    return cos


def fill_mask_agreement(got: list, want: list) -> tuple[float, float]:
    """(top-1 agreement, top-5 overlap) of two fill_mask(top_k >= 5) answers, over every mask."""
    top1, top5 = [], []
    for g_text, w_text in zip(got, want, strict=True):
        for g, w in zip(g_text, w_text, strict=True):
            top1.append(g[0]["token"] == w[0]["token"])
            top5.append(len({p["token"] for p in g[:5]} & {p["token"] for p in w[:5]}) / 5)
    return float(np.mean(top1)), float(np.mean(top5))


# ------------------------------------------------------------------------------ checkpoints with signal
MLM_HEAD_NORM = ("lm_head.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight")


def rewrite_checkpoint(src: Path, dst: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with ``edit`` applied to its (single-file) safetensors
    weights, manifest re-hashed."""
    from safetensors.numpy import load_file, save_file

    from encoderkit.storage.manifest import write_manifest

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if (dst / "manifest.json").is_file():
        m = json.loads((dst / "manifest.json").read_text())
        write_manifest(dst, {k: v for k, v in m.items() if k not in ("files", "encoderkit_manifest")})
    return dst


def peaked(src: Path, dst: Path, scale: float = 30.0) -> Path:
    """``src`` with its MLM head's LayerNorm scale multiplied by ``scale``: the logits grow by about
    that factor, so the top predictions are well separated (a random head's are near-uniform)."""
    def edit(state):
        (name,) = [k for k in state if k.endswith(MLM_HEAD_NORM)]
        state[name] = state[name] * np.float32(scale)
    return rewrite_checkpoint(src, dst, edit)


def int8_hostile(src: Path, dst: Path, *, big: float = 1000.0, scale: float = 30.0) -> Path:
    """``src`` (sharpen it with ``peaked`` first) made unquantizable by run-time int8 activations,
    while fp32 is unaffected: in every layer one intermediate neuron is always ``big`` (its bias) and
    the output projection ignores it (a zero column), so an activation scale of big/255, per tensor
    (dynamic mode) or per token (token mode: every token holds the neuron), rounds every other
    activation to zero; the output projection is scaled up so the feed-forward path matters."""
    def edit(state):
        for k in list(state):
            if k.endswith("intermediate.dense.bias"):
                state[k][0] = np.float32(big)
            if k.endswith("output.dense.weight") and ".attention." not in k:
                state[k] = state[k] * np.float32(scale)
                state[k][:, 0] = 0
    return rewrite_checkpoint(src, dst, edit)


def assert_peaked(rt, texts: list[str], atol: float, what: str) -> None:
    """The check the fill-mask order test needs: top predictions far apart compared with ``atol``."""
    res = rt.fill_mask(texts, top_k=10, truncate=True)
    gaps = np.array([a["score"] - b["score"] for t in res for preds in t for a, b in zip(preds, preds[1:])])
    tops = [preds[0]["score"] for t in res for preds in t]
    assert (gaps > 10 * atol).mean() >= 0.7, f"{what}: top-10 scores not separated: {np.sort(gaps)[:10]}"
    assert min(tops) >= 50 / rt.spec.vocab_size, f"{what}: top-1 scores near uniform: {tops}"
