"""classify on every backend: pipeline("text-classification") semantics, BERT pairs through token
types, the head exported and validated by `convert`, one-line errors.

The models are tiny checkpoints fine-tuned for a few steps with `encoderkit finetune --method full`
(so the head is one transformers saved), then converted to every format. A tiny random model does
not learn the topics (it answers nearly one label for everything, and a constant classifier agrees
with anything), so quantized label agreement is judged on a classifier that did learn them: the
real MiniLM with a trained head (`--method freeze`), whose held-out accuracy the test checks.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import encoderkit
from encoderkit.backends.catalog import BACKENDS

TEXTS = ["The striker scored twice in the second half.", "Add the garlic once the onions turn golden.",
         "Restart your router if the wifi keeps dropping.", "Heavy rain is expected tomorrow.", "ok"]
PAIRS = ["It rained during the match.", "The oven was too hot.", "The update fixed it.",
         "Bring an umbrella to the game.", "fine"]
# (the pickle backend runs the torch runtime over pytorch_model.bin: tests/test_formats.py covers it)
# From the whole catalog: every extra is installed (tests/test_environment.py), so a backend whose
# extra is missing fails here instead of dropping out.
FP32 = [b for b in BACKENDS if not BACKENDS[b].quantized and not BACKENDS[b].pickle]
QUANTIZED = [b for b in BACKENDS if BACKENDS[b].quantized]
# Quantized label agreement with torch on the 56 held-out topics, MiniLM + a trained head: measured
# 1.0 (56 of 56) for onnx-int8, onnx-fp16 and ctranslate2-int8; the bound leaves a margin (5 texts)
# and must stay well above the constant classifier's agreement (the majority label's share, 0.25).
MIN_LABEL_AGREEMENT = 0.9


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tuned(request, tmp_path_factory):
    """(arch, fine-tuned checkpoint dir, its convert output)."""
    from encoderkit.backends.catalog import FORMATS
    from encoderkit.conversion import convert
    from encoderkit.finetune import TOPICS_TEST, TOPICS_TRAIN, finetune
    from encoderkit.storage.random_init import init_random

    arch = request.param
    root = tmp_path_factory.mktemp(f"cls-{arch}")
    init_random(root / "base", "tiny", arch=arch, seed=3)
    finetune(root / "base", TOPICS_TRAIN, root / "tuned", method="full", eval_data=TOPICS_TEST, max_steps=6,
             lr=5e-3, batch_size=16, quiet=True)
    convert(root / "tuned", [f for f in FORMATS if FORMATS[f].in_all], root / "conv")
    return arch, root / "tuned", root / "conv"


@pytest.fixture(scope="module")
def minilm_classifier(tmp_path_factory):
    """(tuned dir, convert output with int8/fp16): the real MiniLM, head trained on the topics
    (freeze: the encoder stays, ~40 s), converted to the formats with quantized variants."""
    from encoderkit.conversion import convert
    from encoderkit.finetune import TOPICS_TEST, TOPICS_TRAIN, finetune

    root = tmp_path_factory.mktemp("cls-minilm")
    finetune("minilm", TOPICS_TRAIN, root / "tuned", method="freeze", eval_data=TOPICS_TEST, max_steps=40, lr=1e-3,
             batch_size=16, dropout=0.0, quiet=True)
    formats = sorted({BACKENDS[b].fmt for b in QUANTIZED})
    convert(root / "tuned", ["safetensors", *formats], root / "conv", quantize="int8,fp16")
    return root / "tuned", root / "conv"


def _constant_floor(labels: list[str]) -> float:
    """What a classifier that always answers the majority label agrees with ``labels``."""
    from collections import Counter

    return max(Counter(labels).values()) / len(labels)


def _pipeline(model_dir, texts, pairs=None):
    import transformers

    pipe = transformers.pipeline("text-classification", model=str(model_dir), device="cpu")
    inputs = texts if pairs is None else [{"text": a, "text_pair": b} for a, b in zip(texts, pairs)]
    return pipe(inputs, top_k=None)


def _assert_same(got, want, atol, what):
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"{what}: text {t}: {len(g)} labels vs {len(w)}"
        w_scores = {p["label"]: p["score"] for p in w}
        for k, (gp, wp) in enumerate(zip(g, w)):
            if gp["label"] != wp["label"]:  # only a near-tie may swap places
                assert abs(w_scores[gp["label"]] - wp["score"]) <= atol, f"{what}: text {t} rank {k}: " \
                    f"{gp['label']} != {wp['label']} ({w})"
            assert abs(gp["score"] - w_scores[gp["label"]]) <= atol, \
                f"{what}: text {t} label {gp['label']}: {gp['score']} vs {w_scores[gp['label']]}"


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("backend", FP32)
def test_classify_equals_the_pipeline(tuned, backend, pairs):
    import encoderkit

    arch, tuned_dir, conv = tuned
    want = _pipeline(tuned_dir, TEXTS, PAIRS if pairs else None)
    rt = encoderkit.load(tuned_dir if backend == "torch" else conv, backend)
    got = rt.classify(TEXTS, PAIRS if pairs else None, top_k=None)
    atol = 1e-5 if backend == "torch" else 1e-4
    _assert_same(got, want, atol, f"{arch} {backend} {'pairs' if pairs else 'single'}")
    assert [r[0]["label"] for r in rt.classify(TEXTS, PAIRS if pairs else None)] == [w[0]["label"] for w in want]
    assert len(rt.classify(TEXTS, top_k=2)[0]) == 2


def test_bert_token_types_reach_every_backend(tuned):
    """A BERT pair's type-1 segment changes the logits, on every backend by the same amount."""
    import encoderkit
    from encoderkit.core.batching import pad_batch

    arch, tuned_dir, conv = tuned
    if arch != "bert":
        pytest.skip("RoBERTa has one token type")
    ref = encoderkit.load(tuned_dir, "torch")
    enc = ref.tokenizer.encode_pairs(TEXTS[:3], PAIRS[:3])
    ids, mask = pad_batch([e[0] for e in enc], ref.spec.pad_token_id)
    types = np.zeros_like(ids)
    for r, e in enumerate(enc):
        types[r, : len(e[1])] = e[1]
    assert types.max() == 1
    with_types = ref.classify_logits(ids, mask, types)
    h_typed = ref.forward(ids, mask, token_type_ids=types).last_hidden_state
    h_zero = ref.forward(ids, mask).last_hidden_state
    assert np.abs((h_typed - h_zero) * mask[:, :, None]).max() > 1e-2  # the segment embedding matters
    for b in FP32[1:]:
        rt = encoderkit.load(conv, b)
        np.testing.assert_allclose(rt.classify_logits(ids, mask, types), with_types, atol=1e-4, err_msg=b)
        h = rt.forward(ids, mask, token_type_ids=types).last_hidden_state
        np.testing.assert_allclose(h * mask[:, :, None], h_typed * mask[:, :, None], atol=1e-4, err_msg=b)


def test_convert_validates_the_classification_head(tuned, tmp_path, capfd, monkeypatch):
    """The gate compares the classification logits: an export whose classifier bias is off by 0.05
    (the conversion test hook) fails naming them, though its hidden states are exact."""
    from encoderkit.cli import main

    arch, tuned_dir, conv = tuned
    info = json.loads((conv / "onnx" / "onnx_info.json").read_text())
    assert info["files"]["classifier"] == "classifier.onnx"
    bias = "classifier.out_proj.bias" if arch == "roberta" else "classifier.bias"
    for fmt in ("flax", "ctranslate2"):
        monkeypatch.setenv("ENCODERKIT_TEST_PERTURB", f"{fmt}:0.05:{bias}")
        capfd.readouterr()
        assert main(["convert", str(tuned_dir), "--to", fmt, "--out", str(tmp_path / fmt), "--quiet"]) == 2
        err = capfd.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"error: {fmt} export disagrees with torch: max |diff| of classification logits 0.05"), err
        assert not (tmp_path / fmt).exists()


def test_quantized_labels_agree_with_torch(minilm_classifier):
    """int8/fp16 encoders (sharing the fp32 head) give torch's label on the held-out topics, well
    above what a constant classifier would score against the same labels."""
    import encoderkit
    from encoderkit.finetune import TOPICS_TEST
    from encoderkit.finetune.data import read_examples

    _, conv = minilm_classifier
    held_out = read_examples(TOPICS_TEST)
    texts = list(held_out.texts)
    want = [r[0]["label"] for r in encoderkit.load(conv, "torch").classify(texts)]
    accuracy = float(np.mean([w == y for w, y in zip(want, held_out.labels)]))
    floor = _constant_floor(want)
    assert accuracy >= 0.8 and floor <= 0.5, (accuracy, floor)  # a classifier that learnt the topics
    assert MIN_LABEL_AGREEMENT >= floor + 0.3
    report = (conv / "report.md").read_text()
    for b in QUANTIZED:
        assert f"| {b} | classification label agreement |" in report  # the gate reports it (its probes are not topics)
        out = encoderkit.load(conv, b).classify(texts)
        agree = float(np.mean([r[0]["label"] == w for r, w in zip(out, want)]))
        assert agree >= MIN_LABEL_AGREEMENT, f"{b}: label agreement {agree:.3f} < {MIN_LABEL_AGREEMENT} (floor {floor:.3f})"


def test_spec_carries_the_labels(tuned):
    from encoderkit.storage.checkpoint import load_checkpoint
    from encoderkit.storage.hf import read_saved_spec

    _, tuned_dir, conv = tuned
    spec = load_checkpoint(tuned_dir).spec
    assert spec.heads == ("classification",) and spec.labels == ("food", "sports", "technology", "weather")
    assert read_saved_spec(conv / "safetensors").labels == spec.labels


def test_cli_classify_json_and_text(tuned, capfd):
    from encoderkit.cli import main

    _, tuned_dir, conv = tuned
    assert main(["classify", str(conv), *TEXTS[:2], "--pair", *PAIRS[:2], "--top-k", "3", "--json", "--quiet"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert len(out) == 2 and all(len(r) == 3 for r in out)
    assert all(r[0]["score"] >= r[1]["score"] >= r[2]["score"] for r in out)
    assert main(["classify", str(tuned_dir), TEXTS[0], "--quiet"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines[0] == TEXTS[0] and len(lines) == 2


def test_model_without_head_is_a_one_line_error(tiny_roberta, capfd):
    from encoderkit.cli import main

    assert main(["classify", str(tiny_roberta), "hello", "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sequence-classification head" in err[0]


def test_bad_top_k_and_pair_count(tuned):
    import encoderkit
    from encoderkit.core.errors import InputError

    rt = encoderkit.load(tuned[1], "torch")
    with pytest.raises(InputError, match="top_k"):
        rt.classify(["a"], top_k=0)
    with pytest.raises(InputError, match="pair"):
        rt.classify(["a", "b"], ["c"])
    with pytest.raises(InputError, match="empty"):
        rt.classify([""])


def test_classify_runs_as_a_batch_job(tuned, tmp_path, capfd):
    from encoderkit.cli import main

    _, tuned_dir, conv = tuned
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(conv), "--input", str(inp), "--output", str(out), "--id-column", "id",
                 "--top-k", "2", "--quiet"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    want = encoderkit.load(conv).classify(TEXTS, top_k=2)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(TEXTS))]
    for r, w in zip(rows, want):
        assert [p["label"] for p in r["predictions"]] == [p["label"] for p in w]
        assert max(abs(p["score"] - q["score"]) for p, q in zip(r["predictions"], w)) <= 1e-6
