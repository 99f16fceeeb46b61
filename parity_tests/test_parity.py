"""Every backend against the torch reference, on tiny and mid-size random RoBERTa and BERT models.

Backends and tolerances come from the one table, encoderkit.backends.catalog.BACKENDS (fp32: atol;
quantized: accuracy thresholds). Failures print the max difference and where it occurred.
"""
from __future__ import annotations

import numpy as np
import pytest

import encoderkit

from .conftest import reference
from .helpers import (assert_close, assert_cosine_above_floor, assert_same_predictions, atol, fill_mask_agreement,
                      fp32_backends, last_layer_only, load, quantized_backends, thresholds)

pytestmark = pytest.mark.xdist_group("parity")  # one worker converts each checkpoint once

BACKENDS = fp32_backends()
SENTENCES = [
    "The capital of France is {m}.",
    "She opened the {m}, looked outside, and decided to take an umbrella anyway.",
    "Prices rose by 3.5% in 2024, according to the {m} statistics office.",
    "{m} owners in München and Zürich serve crème brûlée with espresso!",
    "The {m} flows through the valley and into the {m}.",
    "Hi {m}",
]


def _texts(rt):
    return [s.format(m=rt.tokenizer.mask_token) for s in SENTENCES]


def _long_text(rt):
    text = rt.tokenizer.mask_token + " " + " ".join(["the river flows into the sea"] * 200)
    return text  # longer than every model: used with truncate=True -> exactly max length


@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_mask_parity(converted, reference_cache, backend):
    name, out = converted
    ref, rt = reference(reference_cache, out), load(out, backend)
    texts = _texts(ref) + [_long_text(ref)]
    assert_same_predictions(rt.fill_mask(texts, top_k=10, truncate=True),
                            ref.fill_mask(texts, top_k=10, truncate=True), atol(backend),
                            f"{name} {backend} fill-mask")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_embed_parity(converted, reference_cache, backend, pooling):
    name, out = converted
    ref, rt = reference(reference_cache, out), load(out, backend)
    texts = [t.replace(ref.tokenizer.mask_token, "word") for t in _texts(ref)] + [_long_text(ref)]
    n = ref.spec.num_layers
    layers = {n, -1} if last_layer_only(backend) else {0, 1, n // 2, n, -1}  # what the backend provides
    for layer in sorted(layers):
        assert_close(rt.embed(texts, pooling=pooling, layer=layer, truncate=True),
                     ref.embed(texts, pooling=pooling, layer=layer, truncate=True),
                     atol(backend), f"{name} {backend} embed pooling={pooling} layer={layer}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_attentions_parity(converted, reference_cache, backend):
    if last_layer_only(backend):
        pytest.skip(f"{backend} gives the last layer only (registry row); no attention probabilities")
    name, out = converted
    ref, rt = reference(reference_cache, out), load(out, backend)
    for text in ("A short sentence.", _texts(ref)[1]):
        got, want = rt.attentions(text), ref.attentions(text)
        assert got.tokens == want.tokens and np.array_equal(got.token_ids, want.token_ids)
        assert_close(got.probs, want.probs, atol(backend), f"{name} {backend} attentions")


@pytest.mark.parametrize("backend", quantized_backends())
def test_quantized_accuracy(converted, reference_cache, backend):
    """Top-1 and top-5 against the (sharpened) head, and an embedding cosine that must sit well
    above what a constant vector or another text's embedding already reaches on this model."""
    name, out = converted
    ref, rt = reference(reference_cache, out), load(out, backend)
    texts = _texts(ref)
    top1, top5 = fill_mask_agreement(rt.fill_mask(texts, top_k=5), ref.fill_mask(texts, top_k=5))
    limits = thresholds(backend)
    assert top1 >= limits["top1"], f"{name} {backend}: top-1 agreement {top1:.3f} < {limits['top1']}"
    assert top5 >= limits["top5"], f"{name} {backend}: top-5 overlap {top5:.3f} < {limits['top5']}"
    assert_cosine_above_floor(rt.embed(texts), ref.embed(texts), limits["cosine"], f"{name} {backend}")
