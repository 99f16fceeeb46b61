"""The benchmark runs end to end on a tiny model and writes well-formed outputs (no timing asserted)."""
from __future__ import annotations

import json

import pytest

from encoderkit.bench import model_flops, ratios, run_bench
from encoderkit.pipeline import convert
from encoderkit.random_init import random_spec

pytestmark = pytest.mark.xdist_group("bench")


def test_bench_end_to_end(tiny_roberta, tmp_path):
    model = tmp_path / "conv"
    convert(tiny_roberta, ["safetensors", "onnx"], model, quantize="int8")
    out = tmp_path / "bench"
    run_bench(model, backends=["torch", "onnx", "onnx-int8"], tasks=["fill-mask", "embed"], out=out,
              repeats=1, quick=True)
    report = json.loads((out / "bench.json").read_text())
    assert set(report["results"]) == {"fill-mask/short", "fill-mask/long", "embed/corpus"}
    # the long documents are longer than tiny's 128 positions: cut to fit (the same texts for every
    # system, said in the table) instead of crashing a peer
    long_meta = report["results"]["fill-mask/long"]["_meta"]
    assert long_meta["truncated"] + long_meta["dropped"] > 0 and long_meta["mean_tokens"] <= 128
    assert "cut to the model's length" in (out / "bench.md").read_text()
    short = report["results"]["fill-mask/short"]
    assert {"torch", "onnx", "onnx-int8", "pipeline-bs1", "pipeline-bs8"} <= set(short)
    assert {"torch", "sentence-transformers", "automodel-bs32"} <= set(report["results"]["embed/corpus"])
    for name, x in short.items():
        if name != "_meta":
            assert x["texts_per_s"] > 0 and len(x["times"]) == 1 and 0 < x["roofline_fraction"]
    r = ratios(report, "fill-mask/short")
    assert set(r) == {"torch", "onnx", "onnx-int8"} and all(v > 0 for d in r.values() for v in d.values())
    assert set(report["latency_bs1"]) == {"torch", "onnx", "onnx-int8", "pipeline-bs1"}
    md = (out / "bench.md").read_text()
    assert "## fill-mask/short" in md and "× peers (same run)" in md and "p50 ms" in md
    assert "## Targets" in md and "fill-mask, onnx-int8 / pipeline batch 1" in md
    for png in ("throughput.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_flops_counts_real_tokens():
    s = random_spec("large")
    # 0.6 GFLOP per token in the encoder (DESIGN.md), 0.1 GFLOP per masked position in the head
    per_token = model_flops(s, [1], 0)
    assert 0.55e9 < per_token < 0.65e9
    assert 0.09e9 < model_flops(s, [1], 1) - per_token < 0.12e9
