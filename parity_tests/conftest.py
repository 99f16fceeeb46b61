"""Random checkpoints (tiny and mid-size, RoBERTa and BERT), each converted once per test worker
to every format whose framework is installed."""
from __future__ import annotations

import importlib.util

import pytest

import encoderkit
from encoderkit.converters import convert
from encoderkit.random_init import init_random

CHECKPOINTS = {"tiny-roberta": ("tiny", "roberta", 0), "small-roberta": ("small", "roberta", 1),
               "tiny-bert": ("tiny", "bert", 2), "small-bert": ("small", "bert", 3)}
FORMAT_NEEDS = {"onnx": "onnxruntime", "tf": "tensorflow", "flax": "flax"}
IMPLEMENTED = ["onnx", "tf", "flax"]  # formats with a converter and runtime in this version


def installed_formats() -> list[str]:
    return [f for f in IMPLEMENTED if importlib.util.find_spec(FORMAT_NEEDS[f])]


@pytest.fixture(scope="session", params=list(CHECKPOINTS))
def converted(request, tmp_path_factory):
    size, arch, seed = CHECKPOINTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    init_random(root / "ckpt", size, seed=seed, arch=arch)
    convert(root / "ckpt", ["safetensors", *installed_formats()], root / "out", quantize="int8")
    return request.param, root / "out"


@pytest.fixture(scope="session")
def reference_cache():
    return {}


def reference(cache, out):
    if out not in cache:
        cache[out] = encoderkit.load(out, "torch")
    return cache[out]
