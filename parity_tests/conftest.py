"""Random checkpoints (tiny and mid-size, RoBERTa and BERT), each converted once per test worker
to every format of the catalog.

Their MLM heads are sharpened (``helpers.peaked``): a random head's vocabulary distribution is
near-uniform, its top-10 scores lie within the fp32 tolerance of each other and every candidate
is a near-tie, so the fill-mask order check would test nothing. The fixture checks the separation.
"""
from __future__ import annotations

import pytest

import encoderkit
from encoderkit.backends.catalog import BACKENDS, FORMATS
from encoderkit.conversion import convert
from encoderkit.storage.random_init import init_random

from .helpers import assert_peaked, peaked

CHECKPOINTS = {"tiny-roberta": ("tiny", "roberta", 0), "small-roberta": ("small", "roberta", 1),
               "tiny-bert": ("tiny", "bert", 2), "small-bert": ("small", "bert", 3)}
PEAK_PROBES = ["The capital of France is {m}.", "She opened the {m}, looked outside, and decided to stay.",
               "The {m} flows through the valley and into the {m}.", "Hi {m}"]


@pytest.fixture(scope="session", params=list(CHECKPOINTS))
def converted(request, tmp_path_factory):
    size, arch, seed = CHECKPOINTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    init_random(root / "random", size, seed=seed, arch=arch)
    peaked(root / "random", root / "ckpt")
    ref = encoderkit.load(root / "ckpt", "torch")
    assert_peaked(ref, [t.format(m=ref.tokenizer.mask_token) for t in PEAK_PROBES], BACKENDS["onnx"].tolerance.atol,
                  request.param)
    # every format, the legacy pickle one too (its backend is tested here); every quantized variant
    convert(root / "ckpt", list(FORMATS), root / "out", quantize="int8,fp16")
    return request.param, root / "out"


@pytest.fixture(scope="session")
def reference_cache():
    return {}


def reference(cache, out):
    if out not in cache:
        cache[out] = encoderkit.load(out, "torch")
    return cache[out]
