"""The legacy `pytorch_model.bin` format (`--to pytorch`): the proof that a new format is one
backend folder and its rows. A plain tensor dict that torch.load(weights_only=True) and
transformers' from_pretrained read, validated like every format, loaded back by the torch runtime
only with the caller's consent to read a pickle."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import encoderkit
from encoderkit.cli import main
from encoderkit.core.errors import PickleRefusedError


@pytest.fixture(scope="module")
def converted(tmp_path_factory, request):
    from encoderkit.storage.random_init import init_random

    root = tmp_path_factory.mktemp("pytorch-format")
    init_random(root / "ckpt", "tiny", arch="bert", seed=5)
    encoderkit.convert(root / "ckpt", "safetensors,pytorch", root / "conv")
    return root


def test_the_bin_is_a_plain_tensor_dict_transformers_reads(converted):
    from transformers import AutoModelForMaskedLM

    conv = converted / "conv"
    sd = torch.load(conv / "pytorch" / "pytorch_model.bin", weights_only=True)
    assert isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
    ref = encoderkit.load(conv, "torch")
    hf = AutoModelForMaskedLM.from_pretrained(conv / "pytorch").eval()
    ids, mask = np.array([[2, 40, 41, 42, 3]]), np.ones((1, 5), dtype=np.int64)
    with torch.inference_mode():
        got = hf.bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    diff = float(np.abs(got.numpy() - ref.forward(ids, mask).last_hidden_state).max())
    assert diff <= 1e-6, f"max |diff| {diff:.3g}"


def test_it_is_validated_and_loads_only_with_consent(converted, capfd):
    conv = converted / "conv"
    report = (conv / "report.md").read_text()
    assert "| pytorch | max abs diff, hidden states |" in report
    assert json.loads((conv / "manifest.json").read_text())["formats"] == ["safetensors", "pytorch"]
    with pytest.raises(PickleRefusedError, match="--allow-pickle"):
        encoderkit.load(conv, "pytorch")
    rt = encoderkit.load(conv, "pytorch", allow_pickle=True)
    ref = encoderkit.load(conv, "torch")
    texts = ["the river flows [MASK] the valley", "a second, longer text about rivers and [MASK] valleys"]
    d = np.abs(rt.embed(texts) - ref.embed(texts)).max()
    assert d <= 1e-6, f"max |diff| {d:.3g}"
    assert rt.fill_mask(texts, top_k=3) == ref.fill_mask(texts, top_k=3)
    # the CLI: refused in one line, then run with the flag
    assert main(["embed", str(conv), "x", "--backend", "pytorch"]) == 2
    assert capfd.readouterr().err.strip().endswith("torch.load(weights_only=True)")
    assert main(["embed", str(conv), "x", "--backend", "pytorch", "--allow-pickle", "--json"]) == 0
    assert len(json.loads(capfd.readouterr().out)[0]) == rt.spec.hidden_size
    # `all` does not write a pickle unasked; `info` lists the backend
    assert "pytorch" not in encoderkit.backends.catalog.parse_formats("all")
    assert main(["info", str(conv), "--json"]) == 0
    assert "pytorch" in json.loads(capfd.readouterr().out)["backends"]


def test_a_changed_bin_is_refused_before_torch_reads_it(converted, tmp_path):
    import shutil

    from encoderkit.core.errors import ArtifactError

    conv = tmp_path / "conv"
    shutil.copytree(converted / "conv", conv)
    path = conv / "pytorch" / "pytorch_model.bin"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 differs"):
        encoderkit.load(conv, "pytorch", allow_pickle=True)
