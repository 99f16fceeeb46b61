"""Padding removal in the ONNX encoder graphs (backends/onnx/packing.py): the packed graphs give the
padded graphs' answers at every real position, 0 at the padded ones, whatever the padding."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import onnxruntime as ort

import encoderkit
from encoderkit.backends.onnx.layout import op_counts
from encoderkit.backends.onnx.packing import remove_padding
from encoderkit.conversion import convert
from encoderkit.core.errors import ArtifactError

pytestmark = pytest.mark.xdist_group("onnx")

# packed vs padded graph, at real positions: max |difference| / max(|value|, 1) (fp16's step grows
# with the value: one step is 3.9e-3 between 4 and 8)
TOLERANCE = {"encoder.onnx": 1e-5, "encoder.fp16.onnx": 2e-3, "encoder.int8.onnx": None}  # int8: see below
TEXTS = ["Short one.", "A much longer sentence, so that the short ones in its batch carry a lot of padding <mask>.",
         "Two words", "The capital of France is <mask>, and the capital of Italy is Rome."]


@pytest.fixture(scope="module")
def both(tiny_bert, tmp_path_factory):
    """One checkpoint (BERT: token types too) converted with padding removal (default) and without."""
    root = tmp_path_factory.mktemp("packing")
    convert(tiny_bert, ["onnx"], root / "packed", quantize="int8,fp16")
    convert(tiny_bert, ["onnx"], root / "padded", quantize="int8,fp16", pack=False)
    return root / "packed", root / "padded"


def _session(graph):
    """A session over a graph file, or over a serialized model."""
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), providers=["CPUExecutionProvider"])


def _batch(rt, texts, left=False):
    ids = rt.tokenizer.encode(texts)
    n = max(map(len, ids))
    pad = rt.spec.pad_token_id
    rows = [([pad] * (n - len(x)) + x) if left else (x + [pad] * (n - len(x))) for x in ids]
    masks = [([0] * (n - len(x)) + [1] * len(x)) if left else ([1] * len(x) + [0] * (n - len(x))) for x in ids]
    ids, mask = np.array(rows, np.int64), np.array(masks, np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_every_encoder_graph_is_packed_and_the_option_keeps_padding(both):
    packed, padded = both
    info = json.loads((packed / "onnx" / "onnx_info.json").read_text())
    assert info["packed"] == ["encoder.onnx", "encoder.int8.onnx", "encoder.fp16.onnx"]
    assert json.loads((padded / "onnx" / "onnx_info.json").read_text())["packed"] == []
    layers = encoderkit.load(packed, "onnx").spec.num_layers
    for name in TOLERANCE:
        got, was = op_counts(packed / "onnx" / name), op_counts(padded / "onnx" / name)
        assert got.get("MultiHeadAttention") == layers and "Attention" not in got, (name, got)
        assert got.get("NonZero") == 1 and "NonZero" not in was, (name, was)
    assert op_counts(padded / "onnx" / "encoder.onnx").get("Attention") == layers
    for name in ("encoder.onnx", "encoder.fp16.onnx"):  # a fused Attention: one QKV MatMul, unpacked once
        got, was = op_counts(packed / "onnx" / name), op_counts(padded / "onnx" / name)
        assert got.get("Split", 0) - was.get("Split", 0) == layers, (name, got)
        assert got.get("MatMul", 0) - was.get("MatMul", 0) == layers, (name, got, was)
    assert "padding removed in" in (packed / "report.md").read_text()


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_packed_graphs_answer_as_the_padded_ones_with_zeros_at_pads(both, left):
    packed, padded = both
    rt = encoderkit.load(packed, "onnx")
    feeds = _batch(rt, TEXTS, left=left)
    real = feeds["attention_mask"].astype(bool)
    assert (~real).sum() > real.size // 4  # the batch is really ragged
    for name, tol in TOLERANCE.items():
        # the pass applied to the very graph it is compared with (int8: the same calibration)
        model = onnx.load(str(padded / "onnx" / name))
        remove_padding(model)
        a = _session(model.SerializeToString()).run(None, feeds)[0]
        b = _session(padded / "onnx" / name).run(None, feeds)[0]
        assert a.shape == b.shape and a.dtype == np.float32
        assert not np.abs(a[~real]).any(), f"{name}: padded positions are not 0"
        assert np.abs(b[~real]).max() > 0  # (the padded graph computes them)
        diff = float((np.abs(a - b) / np.maximum(np.abs(b), 1))[real].max())
        if tol is None:
            # int8: per-tensor activation scales now see real tokens only, so packed and padded
            # differ a little; both must stay as close to fp32 as the padded int8 was
            fp32 = _session(padded / "onnx" / "encoder.onnx").run(None, feeds)[0]
            err_a, err_b = (float(np.abs(x - fp32)[real].max()) for x in (a, b))
            assert err_a <= 1.5 * err_b + 1e-3, f"{name}: packed int8 {err_a:.4g} vs padded int8 {err_b:.4g} from fp32"
        else:
            assert diff <= tol, f"{name}: max |packed - padded| / max(|padded|, 1) at real positions {diff:.3g} > {tol}"


def test_a_text_gets_the_same_vectors_alone_and_in_a_ragged_batch(both):
    packed, _ = both
    rt = encoderkit.load(packed, "onnx")
    s = _session(packed / "onnx" / "encoder.onnx")
    alone = _batch(rt, TEXTS[:1])
    batch = _batch(rt, TEXTS)
    n = int(alone["attention_mask"].sum())
    a = s.run(None, alone)[0][0, :n]
    b = s.run(None, batch)[0][0, :n]
    assert float(np.abs(a - b).max()) < 1e-5


def test_the_backends_still_match_torch(both, tiny_bert):
    packed, _ = both
    ref = encoderkit.load(tiny_bert)
    want = ref.embed(TEXTS, normalize=True)
    for backend, floor in (("onnx", 0.99999), ("onnx-fp16", 0.999), ("onnx-int8", 0.99)):
        got = encoderkit.load(packed, backend).embed(TEXTS, normalize=True)
        cos = float((got * want).sum(1).min())
        assert cos >= floor, f"{backend}: min cosine vs torch {cos:.5f} < {floor}"


def test_a_graph_without_attention_is_a_typed_error(both):
    model = onnx.load(str(both[0] / "onnx" / "head.onnx"))
    with pytest.raises(ArtifactError, match="padding removal: not an encoder graph"):
        remove_padding(model)
