"""Random checkpoints (tiny and mid-size, RoBERTa and BERT), each converted once per test worker
to every format whose framework is installed."""
from __future__ import annotations

import pytest

import encoderkit
from encoderkit.conversion import convert
from encoderkit.storage.random_init import init_random
from encoderkit.backends.catalog import installed_formats

CHECKPOINTS = {"tiny-roberta": ("tiny", "roberta", 0), "small-roberta": ("small", "roberta", 1),
               "tiny-bert": ("tiny", "bert", 2), "small-bert": ("small", "bert", 3)}


@pytest.fixture(scope="session", params=list(CHECKPOINTS))
def converted(request, tmp_path_factory):
    size, arch, seed = CHECKPOINTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    init_random(root / "ckpt", size, seed=seed, arch=arch)
    formats = installed_formats(all_only=False)  # the legacy pickle format too: its backend is tested here
    convert(root / "ckpt", formats, root / "out", **({"quantize": "int8,fp16"} if "onnx" in formats else {}))
    return request.param, root / "out"


@pytest.fixture(scope="session")
def reference_cache():
    return {}


def reference(cache, out):
    if out not in cache:
        cache[out] = encoderkit.load(out, "torch")
    return cache[out]
