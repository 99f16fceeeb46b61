"""benchmarks/trained_mlm_judge.py's RoBERTa: MiniLM's trained weights moved into RoBERTa's
architecture must be the same function, or the judge's "trained RoBERTa" would be a damaged model."""
from __future__ import annotations

import json

import numpy as np
import pytest

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Return a new list.", "Hi",
         "Raise ValueError if the argument is not a positive integer or the file cannot be opened."]


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    from benchmarks.trained_mlm_judge import roberta_from_bert

    out = tmp_path_factory.mktemp("as_roberta") / "ckpt"
    return out, roberta_from_bert("minilm", out, TEXTS)


def test_bert_moved_into_roberta_is_the_same_function(moved):
    """transformers' RobertaModel on the permuted ids = BertModel on the original ones (the script's
    own check), and encoderkit's torch backend embeds every text as MiniLM does, ragged batch."""
    import encoderkit

    out, same = moved
    assert same["max_abs_diff"] <= 1e-5, same
    a = encoderkit.load("minilm", "torch").embed(TEXTS, pooling="mean")
    b = encoderkit.load(out, "torch").embed(TEXTS, pooling="mean")
    diff = float(np.abs(np.asarray(a) - np.asarray(b)).max())
    assert diff <= 1e-5, f"max |diff| {diff:.2e}"


def test_moved_checkpoint_has_robertas_conventions(moved):
    import encoderkit

    out, _ = moved
    spec = encoderkit.load(out, "torch").spec
    assert (spec.arch, spec.pad_token_id, spec.position_offset, spec.type_vocab_size) == ("roberta", 1, 2, 1)
    assert (spec.cls_token_id, spec.sep_token_id, spec.mask_token, spec.mask_token_id) == \
        (0, 2, "<mask>", spec.vocab_size - 1)
    tok = json.loads((out / "tokenizer.json").read_text())
    assert {a["content"]: a["id"] for a in tok["added_tokens"]} == \
        {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": spec.vocab_size - 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arch"] == "roberta" and "model.safetensors" in manifest["files"]
