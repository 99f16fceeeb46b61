"""Full-size roberta-large (random weights, sharpened MLM head): conversion to every format with
int8, validated; then every converted backend loaded and compared with torch here.

Marked slow (minutes, ~9 GB RSS): `make test-slow`. Prints time, sizes and peak memory.
"""
from __future__ import annotations

import json
import resource
import time

import pytest

from encoderkit.backends.catalog import BACKENDS, FORMATS
from encoderkit.conversion import convert
from encoderkit.storage.random_init import init_random

from .helpers import assert_close, assert_cosine_above_floor, assert_same_predictions, fill_mask_agreement, load, \
    peaked

pytestmark = pytest.mark.slow

TEXTS = ["The capital of France is <mask>.", "She opened the <mask>, looked outside, and took an umbrella.",
         "Prices rose by 3.5% in 2024, according to the <mask> statistics office.", "Hi <mask>"]


def test_roberta_large_converts_to_every_format(tmp_path):
    init_random(tmp_path / "random", "large", seed=0)
    ckpt = peaked(tmp_path / "random", tmp_path / "roberta-large-random")
    formats = [f for f in FORMATS if FORMATS[f].in_all]
    t = time.perf_counter()
    report = convert(ckpt, formats, tmp_path / "out", quantize="int8")
    seconds = time.perf_counter() - t
    assert report["spec"]["num_layers"] == 24 and report["spec"]["vocab_size"] == 50265
    assert set(report["formats"]) == set(formats)
    onnx = report["formats"]["onnx"]
    fused = onnx["export"]["fused operators (encoder.onnx)"]
    # onnxscript's SkipLayerNormalization is written back as Sum + LayerNormalization (faster on ORT's CPU)
    assert fused["Attention"] == 24 and fused["BiasGelu"] == 24 and fused["LayerNormalization"] == 2 * 24 + 1
    assert "SkipLayerNormalization" not in fused
    # 1.4 GB of fp32 weights do not fit a 2 GB protobuf with the graph: they live in external data
    data = tmp_path / "out" / "onnx" / "encoder.onnx.data"
    assert data.is_file() and data.stat().st_size > 2**30, sorted(p.name for p in (tmp_path / "out" / "onnx").iterdir())
    assert (tmp_path / "out" / "onnx" / "encoder.onnx").stat().st_size < 2**30

    # every backend of the directory loaded and run here, against torch on the same texts
    ref = load(tmp_path / "out", "torch")
    want_fm, want_emb = ref.fill_mask(TEXTS, top_k=5), ref.embed(TEXTS)
    loaded = []
    for name, info in BACKENDS.items():
        if name == "torch" or info.fmt not in formats or info.variant not in (None, "int8"):
            continue
        rt = load(tmp_path / "out", name)
        got_fm, got_emb = rt.fill_mask(TEXTS, top_k=5), rt.embed(TEXTS)
        if info.quantized:
            top1, top5 = fill_mask_agreement(got_fm, want_fm)
            th = info.tolerance.thresholds()
            assert top1 >= th["top1"] and top5 >= th["top5"], (name, top1, top5)
            assert_cosine_above_floor(got_emb, want_emb, th["cosine"], f"roberta-large {name}")
        else:
            assert_same_predictions(got_fm, want_fm, info.tolerance.atol, f"roberta-large {name} fill-mask")
            assert_close(got_emb, want_emb, info.tolerance.atol, f"roberta-large {name} embed")
        loaded.append(name)
    assert {"onnx", "onnx-int8", "tf", "flax", "ctranslate2", "ctranslate2-int8"} <= set(loaded), loaded
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds), "peak_rss_mb": round(peak), "backends": loaded,
                      "formats": {k: {"seconds": round(v["seconds"]), "parity": v["parity"]}
                                  for k, v in report["formats"].items()}}, indent=1))
    print((tmp_path / "out" / "report.md").read_text())
