from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tokenizers import Tokenizer

from encoderkit.storage.checkpoint import expected_shapes, load_checkpoint
from encoderkit.storage.hf import write_safetensors
from encoderkit.core.errors import (CheckpointError, InputError, PickleRefusedError, UnknownNameError,
                               UnsupportedArchitectureError)
from encoderkit.storage.files import sha256_file
from encoderkit.storage.random_init import init_random, random_spec
from encoderkit.storage.random_tokenizers import build_bpe_tokenizer


def test_init_random_is_deterministic(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        init_random(tmp_path / name, "tiny", seed=seed)
    digest = lambda d, f: sha256_file(tmp_path / d / f)  # noqa: E731
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert digest("a", f) == digest("b", f), f
    assert digest("a", "model.safetensors") != digest("c", "model.safetensors")


def test_init_random_refuses_existing_dir_and_unknown_size(tmp_path):
    init_random(tmp_path / "x", "tiny")
    with pytest.raises(InputError, match="--force"):
        init_random(tmp_path / "x", "tiny")
    with pytest.raises(UnknownNameError, match="tiny, small, base, large"):
        init_random(tmp_path / "y", "huge")
    assert not (tmp_path / "y").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp dirs left behind


def test_large_spec_is_roberta_large():
    s = random_spec("large")
    assert (s.vocab_size, s.hidden_size, s.num_layers, s.num_heads, s.intermediate_size,
            s.max_position_embeddings, s.position_offset) == (50265, 1024, 24, 16, 4096, 514, 2)
    n = sum(int(np.prod(x)) for x in expected_shapes(s).values())
    assert 354_000_000 < n < 356_000_000  # roberta-large: 355M with the MLM head


def test_large_tokenizer_vocab_has_exactly_model_size():
    tok = Tokenizer.from_str(json.dumps(build_bpe_tokenizer(50265, seed=0, max_length=512)))
    assert tok.get_vocab_size(with_added_tokens=True) == 50265
    assert tok.token_to_id("<mask>") == 50264 and tok.token_to_id("<pad>") == 1
    assert all(tok.id_to_token(i) is not None for i in range(50265))
    # <mask> lstrips like roberta's: the space before it belongs to the mask
    ids = tok.encode("Paris is <mask>.").ids
    assert 50264 in ids and tok.encode("Paris is<mask>.").ids == ids


def test_checkpoint_roundtrip_is_bit_identical(tiny_roberta, tmp_path):
    ck = load_checkpoint(tiny_roberta)
    write_safetensors(ck.state, tmp_path, max_shard_bytes=50_000)  # force sharding
    assert (tmp_path / "model.safetensors.index.json").is_file()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_roberta / f, tmp_path / f)
    back = load_checkpoint(tmp_path)
    assert back.spec == ck.spec and set(back.state) == set(ck.state)
    for k in ck.state:
        assert np.array_equal(back.state[k], ck.state[k]), k


def _copy(src, dst):
    """A plain Hugging Face checkpoint to edit: without the manifest init-random wrote, which would
    (rightly) refuse every edited file before the check under test runs."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("manifest.json"))
    return dst


def test_truncated_safetensors_is_a_typed_error(tiny_roberta, tmp_path):
    d = _copy(tiny_roberta, tmp_path / "c")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(d)


def test_missing_tensor_and_wrong_shape_are_named(tiny_roberta, tmp_path):
    from safetensors.numpy import load_file, save_file

    d = _copy(tiny_roberta, tmp_path / "c")
    state = load_file(str(d / "model.safetensors"))
    gone = state.pop("roberta.encoder.layer.1.output.dense.bias")
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensor roberta\.encoder\.layer\.1\.output\.dense\.bias"):
        load_checkpoint(d)
    state["roberta.encoder.layer.1.output.dense.bias"] = np.concatenate([gone, gone])
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"output\.dense\.bias has shape \(64,\)"):
        load_checkpoint(d)
    state["roberta.encoder.layer.1.output.dense.bias"] = gone
    state["roberta.encoder.layer.7.extra.weight"] = gone
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensor roberta\.encoder\.layer\.7\.extra\.weight"):
        load_checkpoint(d)


def test_pickle_is_refused_unless_allowed(tiny_roberta, tmp_path):
    import torch
    from safetensors.numpy import load_file

    d = _copy(tiny_roberta, tmp_path / "c")
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, d / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="--allow-pickle"):
        load_checkpoint(d)
    ck = load_checkpoint(d, allow_pickle=True)
    assert np.array_equal(ck.state["lm_head.bias"], state["lm_head.bias"])


def test_unsupported_architecture_and_bad_config(tiny_roberta, tmp_path):
    d = _copy(tiny_roberta, tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(cfg | {"model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitectureError, match="'gpt2' is not supported"):
        load_checkpoint(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(d)


def test_hub_id_offline_gives_one_line_error(monkeypatch):
    from encoderkit.core.errors import HubUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="pass a local checkpoint directory"):
        load_checkpoint("FacebookAI/roberta-large-does-not-exist-here")


def test_bert_checkpoint_names_and_bare_model(tiny_bert, tmp_path):
    """A bare BertModel checkpoint (no prefix, no head, with pooler, TF-era gamma/beta)."""
    from safetensors.numpy import load_file, save_file

    ck = load_checkpoint(tiny_bert)
    assert ck.spec.arch == "bert" and ck.spec.position_offset == 0 and ck.spec.has_mlm_head
    d = _copy(tiny_bert, tmp_path / "c")
    state = load_file(str(d / "model.safetensors"))
    bare = {k[len("bert."):].replace("LayerNorm.weight", "LayerNorm.gamma"): v
            for k, v in state.items() if k.startswith("bert.")}
    bare["pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    save_file(bare, str(d / "model.safetensors"))
    ck2 = load_checkpoint(d)
    assert not ck2.spec.has_mlm_head
    assert np.array_equal(ck2.state["bert.embeddings.LayerNorm.weight"], ck.state["bert.embeddings.LayerNorm.weight"])
