"""encoderkit.verify.parity: the matrix the release gates on. The end-to-end run over every backend is in
test_release.py; here the classification column (a BERT checkpoint with a trained head, so pairs
with token types are probed too), NaN handling and the writers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from encoderkit.verify.parity import Cell, ParityMatrix, _cell, parity_matrix, write_json, write_markdown
from encoderkit.backends.catalog import BACKENDS


@pytest.fixture(scope="module")
def bert_classifier(tmp_path_factory):
    """A tiny BERT with a (briefly) fine-tuned classification head, converted to safetensors + onnx."""
    from encoderkit.finetune import TOPICS_TRAIN, finetune
    from encoderkit.conversion import convert
    from encoderkit.storage.random_init import init_random

    root = tmp_path_factory.mktemp("parity-cls")
    init_random(root / "base", "tiny", arch="bert", seed=3)
    finetune(root / "base", TOPICS_TRAIN, root / "tuned", method="full", max_steps=2, lr=5e-3, batch_size=16,
             quiet=True)
    convert(root / "tuned", ["safetensors", "onnx"], root / "conv")
    return root / "conv"


def test_classification_logits_are_a_column_when_the_model_has_a_head(bert_classifier, tmp_path):
    m = parity_matrix(bert_classifier, backends=["onnx"], layers=[0, 2])
    assert m.passed, m.to_markdown()
    cells = {c.check: c for c in m.cells}
    cls = cells["classification logits"]
    assert cls.metric == "max_abs_diff" and cls.bound == BACKENDS["onnx"].tolerance.atol
    assert 0 <= cls.value <= 1e-4
    assert "classification logits" not in m.skipped
    assert cls.passed and not [c for c in m.cells if not c.passed]
    assert m.probes["attention_batches"] == ["short", "pair"]  # BERT: token types reach the export
    assert set(m.probes["batches"]) == {"short", "long", "pair"}
    assert {c.check for c in m.cells} >= {"embed mean L0", "embed cls L2", "embed max L2", "attentions"}
    md = write_markdown(m, tmp_path / "parity.md").read_text()
    assert "| classification logits | max_abs_diff " in md and "PASS" in md
    data = json.loads(write_json(m, tmp_path / "parity.json").read_text())
    assert data["passed"] is True and len(data["cells"]) == len(m.cells)


def test_a_wrong_classifier_export_fails_its_cell(bert_classifier, tmp_path, monkeypatch):
    """The classification column can fail: an export whose classifier bias is off by 0.05 (the
    conversion test hook; written without convert's own gate) fails that cell, and only the
    classification-logit cells (the encoder is exact)."""
    from encoderkit.conversion import PERTURB_ENV, convert

    monkeypatch.setenv(PERTURB_ENV, "flax:0.05:classifier.bias")
    out = tmp_path / "wrong"
    convert(bert_classifier.parent / "tuned", ["safetensors", "flax"], out, validate=False)
    m = parity_matrix(out, backends=["flax"], layers=[0, 2])
    failed = {c.check for c in m.cells if not c.passed}
    assert not m.passed and failed == {"classification logits"}, m.to_markdown()
    cell = next(c for c in m.cells if c.check == "classification logits")
    assert cell.value == pytest.approx(0.05, rel=1e-3) and cell.bound == BACKENDS["flax"].tolerance.atol


def test_a_nan_output_fails_its_cells(bert_classifier, monkeypatch):
    from encoderkit.backends.base import EncoderOutput
    from encoderkit.backends.onnx.runtime import OnnxRuntime

    real = OnnxRuntime.forward

    def nan_forward(self, *a, **kw):
        out = real(self, *a, **kw)
        h = out.last_hidden_state.copy()
        h[0, 1, 0] = np.nan
        return EncoderOutput(h, out.hidden_states, out.attentions)

    monkeypatch.setattr(OnnxRuntime, "forward", nan_forward)
    m = parity_matrix(bert_classifier, backends=["onnx"], layers=[0])
    bad = {c.check: c for c in m.failures()}
    assert not m.passed and set(bad) == {"hidden states"}, [c.describe() for c in m.failures()]
    assert math.isnan(bad["hidden states"].value) and "non-finite" in bad["hidden states"].where
    assert json.loads(json.dumps(m.to_dict()))["cells"][0]["value"] == "nan"  # valid JSON, no NaN literal


def test_cells_bounds_and_nan():
    assert _cell("onnx", "x", "max_abs_diff", 1e-5, 1e-4, "<=").passed
    assert not _cell("onnx", "x", "max_abs_diff", 2e-4, 1e-4, "<=").passed
    assert not _cell("onnx", "x", "max_abs_diff", float("nan"), 1e-4, "<=").passed
    assert _cell("onnx-int8", "x", "top1", 0.75, 0.75, ">=").passed
    assert not _cell("onnx-int8", "x", "top1", 0.74, 0.75, ">=").passed
    assert _cell("onnx-int8", "x", "max_abs_diff", 3.0, None, "").passed  # reported
    assert not _cell("onnx-int8", "x", "max_abs_diff", float("inf"), None, "").passed
    c = _cell("onnx-int8", "embed cls L1", "min_cosine", 0.95, 0.98, ">=")
    assert c.describe() == "onnx-int8 embed cls L1: min_cosine 0.95 < 0.98"
    m = ParityMatrix("m", "torch", ("onnx-int8",), (1,), ("cls",), {"texts": 1, "description": "d"}, (c,))
    assert not m.passed and "## Failures" in m.to_markdown() and "✗" in m.to_markdown()
    assert isinstance(m.cells[0], Cell)
