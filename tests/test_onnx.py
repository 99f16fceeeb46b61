"""ONNX artifact checks: fusion counts, external data, corrupted and malicious files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import onnxruntime  # noqa: E402,F401  (the onnx extra is part of `make test`: missing = failing)

import encoderkit  # noqa: E402
from encoderkit.conversion import convert  # noqa: E402
from encoderkit.backends.onnx.layout import op_counts  # noqa: E402
from encoderkit.core.errors import ArtifactError, InputError, UnknownNameError  # noqa: E402
from encoderkit.storage.random_init import init_random  # noqa: E402

pytestmark = pytest.mark.xdist_group("onnx")


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    init_random(root / "ckpt", "small", seed=7)  # 4 layers
    convert(root / "ckpt", ["onnx"], root / "out", external_data=True)
    return root / "out"


def test_fused_operator_counts(small_onnx):
    counts = op_counts(small_onnx / "onnx" / "encoder.onnx")
    assert counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0) == 4  # == layers
    # onnxscript's SkipLayerNormalization written back as Sum + LayerNormalization (faster on ORT's CPU)
    assert "SkipLayerNormalization" not in counts and counts.get("Sum") == 2 * 4 + 1  # + the embeddings
    assert counts.get("LayerNormalization") == 2 * 4 + 1
    assert counts.get("BiasGelu") == 4
    assert "Softmax" not in counts  # no unfused attention left behind
    assert "Attention 4" in (small_onnx / "report.md").read_text()


def test_external_data_path_loads_and_matches(small_onnx):
    files = sorted(p.name for p in (small_onnx / "onnx").iterdir())
    assert "encoder.onnx.data" in files and "analysis.onnx.data" in files
    rt, ref = encoderkit.load(small_onnx, "onnx"), encoderkit.load(small_onnx.parent / "ckpt")
    texts = ["A first sentence here.", "And a second, somewhat longer one to pad against."]
    assert np.abs(rt.embed(texts) - ref.embed(texts)).max() < 1e-4


def _tampered(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst / "onnx"


def test_corrupted_onnx_is_a_typed_error(small_onnx, tmp_path):
    d = _tampered(small_onnx, tmp_path)
    (d / "encoder.onnx").write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ArtifactError, match="sha256 differs|bytes, manifest.json says"):
        encoderkit.load(d.parent, "onnx")  # through the manifest
    with pytest.raises(ArtifactError, match="encoder.onnx: not a valid ONNX model"):
        encoderkit.backends.loading.backend_class("onnx").load(d)  # the file itself


def test_missing_external_data_is_a_typed_error(small_onnx, tmp_path):
    d = _tampered(small_onnx, tmp_path)
    (d / "encoder.onnx.data").unlink()
    with pytest.raises(ArtifactError, match="external data file encoder.onnx.data .* is missing"):
        encoderkit.backends.loading.backend_class("onnx").load(d)


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd"])
def test_external_data_outside_the_directory_is_refused(small_onnx, tmp_path, location):
    import onnx

    d = _tampered(small_onnx, tmp_path)
    model = onnx.load(str(d / "encoder.onnx"), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(d / "encoder.onnx"))
    (d.parent.parent / "outside.data").write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match="outside the model directory"):
        encoderkit.backends.loading.backend_class("onnx").load(d)


def test_convert_errors(tiny_roberta, tmp_path):
    with pytest.raises(UnknownNameError, match="choose one of: safetensors, onnx, tf, flax"):
        convert(tiny_roberta, ["gguf"], tmp_path / "x")
    with pytest.raises(InputError, match="int8, fp16"):
        convert(tiny_roberta, ["onnx"], tmp_path / "y", quantize="int4")
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_backend_needs_its_format(small_onnx):
    with pytest.raises(ArtifactError, match="no 'onnx' export|has no encoder int8 model"):
        encoderkit.load(small_onnx, "onnx-int8")
    info = json.loads((small_onnx / "onnx" / "onnx_info.json").read_text())
    assert "encoder_int8" not in info["files"]


def test_fp16_loads_and_runs_on_cpu_with_fp32_io(tiny_roberta, tmp_path):
    import onnx

    convert(tiny_roberta, ["onnx"], tmp_path / "out", quantize="fp16")
    model = onnx.load(str(tmp_path / "out" / "onnx" / "encoder.fp16.onnx"))
    big = [t for t in model.graph.initializer if len(t.dims) == 2]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    rt, ref = encoderkit.load(tmp_path / "out", "onnx-fp16"), encoderkit.load(tiny_roberta)
    texts = ["The capital of France is <mask>.", "A longer sentence with a <mask> in the middle of it."]
    a, b = rt.embed(texts, normalize=True), ref.embed(texts, normalize=True)
    assert a.dtype == np.float32 and (a * b).sum(1).min() > 0.999
    assert 0 < np.abs(a - b).max()  # really computed in fp16, not a copy of fp32
    got, want = rt.fill_mask(texts, top_k=1), ref.fill_mask(texts, top_k=1)
    assert [x[0][0]["token"] for x in got] == [x[0][0]["token"] for x in want]


@pytest.mark.parametrize("source,per_layer", [("fused", 3), ("unfused", 6)])
def test_int8_source_decides_which_projections_are_quantized(tiny_roberta, tmp_path, source, per_layer):
    convert(tiny_roberta, ["onnx"], tmp_path / "out", quantize="int8", int8_mode="dynamic", int8_source=source)
    counts = op_counts(tmp_path / "out" / "onnx" / "encoder.int8.onnx")
    # dynamic, fused: QKV stay inside the fp32 Attention op; unfused: Q, K, V, O and both FFN matmuls
    assert counts.get("MatMulInteger", 0) + counts.get("DynamicQuantizeMatMul", 0) == per_layer * 2
    assert f"int8 quantized from: {source} graph" in (tmp_path / "out" / "report.md").read_text()


def test_token_int8_is_the_default(tiny_roberta, tmp_path):
    """The default int8 (--int8-mode token): every projection int8, QKV included (the fused
    Attention becomes MultiHeadAttention over int8 Q, K, V projections); per layer Q, K, V and both
    FFN projections quantize their input per token (MatMulIntegerToFloat), the projection after
    attention per tensor (DynamicQuantizeMatMul); no fp32 MatMul left."""
    from encoderkit.backends.onnx.export import OnnxOptions

    assert OnnxOptions().int8_mode == "token"
    layers = 2
    report = convert(tiny_roberta, ["onnx"], tmp_path / "out", quantize="int8")
    counts = op_counts(tmp_path / "out" / "onnx" / "encoder.int8.onnx")
    assert counts.get("MatMulIntegerToFloat") == 5 * layers and counts.get("DynamicQuantizeMatMul") == layers
    assert counts.get("MultiHeadAttention") == layers and "Attention" not in counts and "MatMul" not in counts
    # per layer three quantized inputs (QKV, FFN in, FFN out), each a zero point and a quantize
    assert counts.get("QuantizeLinear") == 2 * 3 * layers, counts
    info = json.loads((tmp_path / "out" / "onnx" / "onnx_info.json").read_text())["int8_token"]
    assert info["projections"] == {"per-token smoothed": 4 * layers, "per-token": layers, "per-tensor": layers,
                                   "attention -> MultiHeadAttention": layers}
    assert info["calibration"]["smoothed_inputs"] == 2 * layers and info["min_cosine_vs_fp32"] > 0.99
    res = report["formats"]["onnx"]["parity"]["onnx-int8"]
    assert res["cosine"] >= encoderkit.backends.catalog.backend("onnx-int8").tolerance.min_cosine, res
    md = (tmp_path / "out" / "report.md").read_text()
    assert "int8 mode: token" in md and "int8 token projections: per-token smoothed 8" in md
    rt, ref = encoderkit.load(tmp_path / "out", "onnx-int8"), encoderkit.load(tiny_roberta)
    texts = ["The capital of France is <mask>.", "A longer sentence with a <mask> in the middle of it."]
    a, b = rt.embed(texts, normalize=True), ref.embed(texts, normalize=True)
    assert (a * b).sum(1).min() > 0.99, (a * b).sum(1)


def test_token_int8_smoothing_factors_are_powers_of_two(tiny_roberta, tmp_path):
    """x / s and W * s exact in fp32: a calibration differing in its last bits gives the same graph."""
    import onnx
    from onnx import numpy_helper

    convert(tiny_roberta, ["onnx"], tmp_path / "out", quantize="int8", int8_mode="token")
    model = onnx.load(str(tmp_path / "out" / "onnx" / "encoder.int8.onnx"))
    smooth = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("_smooth")]
    assert len(smooth) == 2 * 2
    for s in smooth:
        assert np.array_equal(np.log2(s), np.round(np.log2(s)))


def test_token_weights_fold_the_zero_points_exactly():
    """(q - z) @ Wq == [q, z .. z] @ [Wq; extra rows], with every extra weight within +-64 (no u8 x s8
    pair can exceed int16 on a CPU without VNNI)."""
    from encoderkit.backends.onnx.static import token_weights

    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 40)).astype(np.float32)
    w[:, 3] = 0  # an all-zero column
    wq, scale, rows = token_weights(w)
    assert wq.dtype == np.int8 and wq.shape == (96 + rows, 40) and np.abs(wq[96:]).max() <= 64
    assert np.allclose(wq[:96] * scale, w, atol=scale.max() / 2 + 1e-7)
    q = rng.integers(0, 256, (7, 96))
    z = rng.integers(0, 256, (7, 1))
    aug = np.concatenate([q, np.repeat(z, rows, 1)], 1)
    assert np.array_equal(aug @ wq.astype(np.int64), (q - z) @ wq[:96].astype(np.int64))


def test_quantized_backends_report_their_own_inner_layers_and_attentions(tiny_roberta, tmp_path):
    out = tmp_path / "q"
    convert(tiny_roberta, ["onnx"], out, quantize="int8,fp16")
    text = "The river flows through the valley and into the sea."
    fp32 = encoderkit.load(out, "onnx")
    want_att, want_emb = fp32.attentions(text).probs, fp32.embed([text], layer=1)
    for backend, bound in (("onnx-int8", 0.05), ("onnx-fp16", 0.01)):
        rt = encoderkit.load(out, backend)
        att, emb = rt.attentions(text).probs, rt.embed([text], layer=1)
        # not the fp32 analysis graph's numbers (that would hide what quantization does) ...
        assert not np.array_equal(att, want_att) and not np.array_equal(emb, want_emb), backend
        # ... but close to them
        assert np.abs(att - want_att).max() < bound, (backend, np.abs(att - want_att).max())
        cos = float((emb @ want_emb.T).item() / np.linalg.norm(emb) / np.linalg.norm(want_emb))
        assert cos > 0.99, (backend, cos)


@pytest.fixture(scope="module")
def static_int8(tiny_roberta, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "out"
    # An unreachable target (cosine > 1) makes the sensitivity step spend its whole budget: its
    # exclusions are then recorded whatever the tiny model's accuracy.
    report = convert(tiny_roberta, ["onnx"], out, quantize="int8", int8_mode="static",
                     int8_target_cosine=1.01, int8_max_exclusions=2)
    return out, report


def test_static_int8_converts_and_passes_the_gate(static_int8, tiny_roberta):
    out, report = static_int8
    res = report["formats"]["onnx"]["parity"]["onnx-int8"]
    tol = encoderkit.backends.catalog.backend("onnx-int8").tolerance
    assert res["cosine"] >= tol.min_cosine and res["top1"] >= tol.min_top1, res
    counts = op_counts(out / "onnx" / "encoder.int8.onnx")
    # QDQ: static activation scales (QuantizeLinear in the graph), no run-time DynamicQuantizeLinear
    assert counts.get("QuantizeLinear", 0) > 0 and "DynamicQuantizeLinear" not in counts, counts
    assert "MatMulInteger" not in counts
    rt, ref = encoderkit.load(out, "onnx-int8"), encoderkit.load(tiny_roberta)
    texts = ["The capital of France is <mask>.", "A longer sentence with a <mask> in the middle of it."]
    a, b = rt.embed(texts, normalize=True), ref.embed(texts, normalize=True)
    assert (a * b).sum(1).min() > 0.99, (a * b).sum(1)


def test_static_int8_records_the_sensitivity_step(static_int8):
    out, _ = static_int8
    rec = json.loads((out / "onnx" / "onnx_info.json").read_text())["int8_static"]
    assert rec["calibration"]["batches"] >= 8 and rec["calibration"]["tokens"] > 1000
    # the two worst-ranked MatMuls were kept fp32, in ranking order, each with its measured error
    ranked = [r["node"] for r in rec["ranking"]]
    assert [e["node"] for e in rec["excluded"]] == ranked[:2]
    assert all(e["error_nsr"] > 0 and 0 < e["min_cosine_after"] <= 1 for e in rec["excluded"])
    assert rec["ranking"][0]["error_nsr"] >= rec["ranking"][-1]["error_nsr"]
    assert rec["target_met"] is False and len(rec["steps"]) == 3
    assert rec["quantized_matmuls"] == 2 * 3 - 2  # fused graph: 3 MatMuls a layer, 2 layers, 2 kept
    md = (out / "report.md").read_text()
    assert "int8 mode: static" in md and f"int8 static kept fp32 (worst first): {ranked[0]} (error" in md


def test_int8_mode_bad_values_are_clear_errors(tiny_roberta, tmp_path, capfd):
    from encoderkit.cli import main

    with pytest.raises(InputError, match="--int8-mode takes dynamic or static or token"):
        convert(tiny_roberta, ["onnx"], tmp_path / "a", quantize="int8", int8_mode="qat")
    with pytest.raises(InputError, match="--int8-calibration takes minmax or percentile or entropy"):
        convert(tiny_roberta, ["onnx"], tmp_path / "b", quantize="int8", int8_calibration="kl")
    with pytest.raises(InputError, match="--int8-max-exclusions takes a whole number"):
        convert(tiny_roberta, ["onnx"], tmp_path / "c", quantize="int8", int8_max_exclusions=-1)
    assert main(["convert", str(tiny_roberta), "--to", "onnx", "--quantize", "int8", "--int8-mode", "fast",
                 "--out", str(tmp_path / "d")]) == 2
    err = capfd.readouterr().err
    assert "--int8-mode" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
