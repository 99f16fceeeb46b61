"""Full-size roberta-large (random weights): conversion to every format with int8, validated.

Marked slow (minutes, ~9 GB RSS): `make test-slow`. Prints time, sizes and peak memory.
"""
from __future__ import annotations

import json
import resource
import time

import pytest

import encoderkit
from encoderkit.conversion import convert
from encoderkit.storage.random_init import init_random

from encoderkit.backends.catalog import installed_formats

pytestmark = pytest.mark.slow


def test_roberta_large_converts_to_every_format(tmp_path):
    ckpt = tmp_path / "roberta-large-random"
    init_random(ckpt, "large", seed=0)
    t = time.perf_counter()
    report = convert(ckpt, installed_formats(), tmp_path / "out", quantize="int8")
    seconds = time.perf_counter() - t
    assert report["spec"]["num_layers"] == 24 and report["spec"]["vocab_size"] == 50265
    onnx = report["formats"].get("onnx")
    if onnx:
        fused = onnx["export"]["fused operators (encoder.onnx)"]
        assert fused["Attention"] == 24 and fused["BiasGelu"] == 24
        assert onnx["parity"]["onnx"]["max_abs_diff_hidden"] <= 1e-4
        assert onnx["parity"]["onnx-int8"]["top1"] >= 0.75
    for fmt in ("tf", "flax"):
        if fmt in report["formats"]:
            assert report["formats"][fmt]["parity"][fmt]["max_abs_diff_logits"] <= 1e-4
    rt = encoderkit.load(tmp_path / "out", "torch")
    assert len(rt.fill_mask(["The capital of France is <mask>."])[0][0]) == 5
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds), "peak_rss_mb": round(peak),
                      "formats": {k: {"seconds": round(v["seconds"]), "parity": v["parity"]}
                                  for k, v in report["formats"].items()}}, indent=1))
    print((tmp_path / "out" / "report.md").read_text())
