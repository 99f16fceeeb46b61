"""One source of truth: a new backend is one converter, one runtime and one catalog row; options are
typed; architecture names live in one file. (Which module may import which: tests/test_layers.py.)"""
from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.backends import catalog as registry
from encoderkit.core.contracts import BackendInfo, FormatInfo, Tolerance
from encoderkit.cli import build_parser, main
from encoderkit.core.errors import CheckpointError, InputError, UnknownNameError
from encoderkit.conversion import convert

PKG = Path(encoderkit.__file__).resolve().parent

FAKE = textwrap.dedent('''
    """A backend that lives outside encoderkit: its own format (a copy of the safetensors
    checkpoint) and a runtime that is torch with a label of its own."""
    from encoderkit.backends.converter import Converter
    from encoderkit.storage.hf import write_safetensors
    from encoderkit.storage.hf import copy_model_files
    from encoderkit.backends.torch.runtime import TorchRuntime

    class FakeConverter(Converter):
        name = "fakefmt"

        def export(self, ckpt, out):
            copy_model_files(ckpt.directory, out, ckpt.spec)
            return {"files": write_safetensors(ckpt.state, out)}

    class FakeRuntime(TorchRuntime):
        name = "fake"
''')


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    (tmp_path / "fake_backend_mod.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register_format(FormatInfo("fakefmt", "fake_backend_mod:FakeConverter", None, "test"))
    registry.register_backend(BackendInfo("fake", "fake_backend_mod:FakeRuntime", "fakefmt", None,
                                                   Tolerance(atol=1e-4), "test"))
    yield "fake"
    registry.unregister("fake")
    registry.unregister("fakefmt")
    sys.modules.pop("fake_backend_mod", None)


def test_a_new_backend_is_one_row(fake_backend, tiny_roberta, tmp_path, capfd):
    # convert --to picks the format up, and validation runs the new backend against torch
    out = tmp_path / "conv"
    assert main(["convert", str(tiny_roberta), "--to", "safetensors,fakefmt", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["formats"] == ["safetensors", "fakefmt"]
    assert "| fake | max abs diff, hidden states |" in (out / "report.md").read_text()
    # the CLI's --backend accepts it and lists it in --help
    assert "fake" in build_parser().parse_args(["embed", "m", "x", "--backend", "fake"]).backend
    sub = build_parser()._subparsers._group_actions[0].choices["fill-mask"]
    assert "fake" in sub.format_help()
    capfd.readouterr()
    assert main(["fill-mask", str(out), "a <mask> b", "--backend", "fake", "--json", "--top-k", "2"]) == 0
    got = json.loads(capfd.readouterr().out)
    want = encoderkit.load(out, "torch").fill_mask(["a <mask> b"], top_k=2)
    assert [p["token"] for p in got[0][0]] == [p["token"] for p in want[0][0]]
    # parity parametrisation and the benchmark's defaults include it
    sys.path.insert(0, str(PKG.parent))
    from parity_tests.helpers import fp32_backends

    assert "fake" in fp32_backends()
    assert "fake" in encoderkit.backends.loading.available_backends(out)
    from encoderkit.bench import run_bench

    report = run_bench(out, backends=None, tasks=["embed"], out=tmp_path / "bench", repeats=1, quick=True)
    assert {"torch", "fake"} <= set(report["results"]["embed/corpus"])


def test_unknown_backend_lists_the_known_ones(tiny_roberta, capfd):
    assert main(["embed", str(tiny_roberta), "x", "--backend", "onnx-int9"]) == 2
    err = capfd.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: unknown backend 'onnx-int9'; choose one of: "
                                           + ", ".join(registry.BACKENDS))
    with pytest.raises(UnknownNameError, match="choose one of: torch, torch-bf16, onnx"):
        encoderkit.load(tiny_roberta, "gguf")


def test_misspelt_or_foreign_options_are_errors(tiny_roberta, tmp_path, capfd):
    with pytest.raises(UnknownNameError, match=r"unknown conversion option 'quantise'.*quantize"):
        convert(tiny_roberta, ["onnx"], tmp_path / "a", quantise="int8")
    with pytest.raises(InputError, match="belongs to format 'onnx', which is not in --to"):
        convert(tiny_roberta, ["safetensors"], tmp_path / "b", quantize="int8")
    with pytest.raises(InputError, match="int8_weights|--int8-weights takes u8 or s8"):
        convert(tiny_roberta, ["onnx"], tmp_path / "c", int8_weights="s4")
    assert main(["convert", str(tiny_roberta), "--to", "onnx", "--quantise", "int8", "--out", str(tmp_path / "d")]) == 2
    assert "unrecognized arguments: --quantise" in capfd.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written by any of them


def test_convert_flags_come_from_the_option_dataclasses():
    import dataclasses

    from encoderkit.backends.onnx.export import OnnxOptions
    from encoderkit.core.options import cli_flag

    help_text = build_parser()._subparsers._group_actions[0].choices["convert"].format_help()
    for f in dataclasses.fields(OnnxOptions):
        assert (cli_flag(f) in help_text) == f.metadata["cli"], f.name


def test_architecture_names_live_in_the_records_only():
    names = {"roberta", "bert", "xlm-roberta"}
    for path in PKG.rglob("*.py"):
        if path.name == "architectures.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                raise AssertionError(f"{path.relative_to(PKG)}:{node.lineno} spells {node.value!r}")


def test_a_third_architecture_is_a_record(tiny_roberta, tmp_path):
    # XLM-RoBERTa: RoBERTa's architecture under another model_type and transformers class
    ckpt = tmp_path / "xlmr"
    ckpt.mkdir()
    for f in tiny_roberta.iterdir():
        if f.is_file() and f.name != "manifest.json":
            (ckpt / f.name).write_bytes(f.read_bytes())
    config = json.loads((ckpt / "config.json").read_text())
    config |= {"model_type": "xlm-roberta", "architectures": ["XLMRobertaForMaskedLM"]}
    (ckpt / "config.json").write_text(json.dumps(config))
    rt = encoderkit.load(ckpt)
    assert type(rt.model).__name__ == "XLMRobertaForMaskedLM" and rt.spec.arch == "xlm-roberta"
    ref = encoderkit.load(tiny_roberta)
    text = ["The <mask> flows into the sea."]
    np.testing.assert_allclose(rt.embed(text), ref.embed(text), atol=1e-6)
    formats = [f for f in ("safetensors", "onnx") if f in registry.installed_formats()]
    convert(ckpt, formats, tmp_path / "out")
    if "onnx" in formats:
        got = encoderkit.load(tmp_path / "out", "onnx").fill_mask(text, top_k=3)
        assert [p["token"] for p in got[0][0]] == [p["token"] for p in ref.fill_mask(text, top_k=3)[0][0]]


@pytest.mark.parametrize("field,value,message", [
    ("num_attention_heads", 0, "num_heads must be a positive integer"),
    ("pad_token_id", 10**9, "pad_token_id 1000000000 is outside the vocabulary"),
    ("pad_token_id", -1, "pad_token_id -1 is outside the vocabulary"),
    ("layer_norm_eps", float("nan"), "layer_norm_eps must be a finite positive number"),
    ("hidden_size", 1e400, "missing or invalid field"),
])
def test_configs_that_make_no_model_are_typed_errors(tiny_roberta, tmp_path, field, value, message, capfd):
    ckpt = tmp_path / "bad"
    ckpt.mkdir()
    for f in tiny_roberta.iterdir():
        if f.is_file() and f.name != "manifest.json":  # an edited plain checkpoint (the manifest would refuse it)
            (ckpt / f.name).write_bytes(f.read_bytes())
    config = json.loads((ckpt / "config.json").read_text()) | {field: value}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        encoderkit.load(ckpt)
    assert main(["embed", str(ckpt), "x"]) == 2
    assert capfd.readouterr().err.strip().startswith("error:")


def test_bad_thread_and_budget_numbers_are_input_errors(tiny_roberta, capfd):
    for flag, value in (("--threads", "0"), ("--threads", "-1"), ("--threads", "100000"), ("--max-tokens", "0")):
        assert main(["embed", str(tiny_roberta), "x", flag, value]) == 2, (flag, value)
        err = capfd.readouterr().err
        assert ("is more than" if value == "100000" else "must be a positive integer") in err, (flag, value, err)
    with pytest.raises(InputError, match="threads 100000 is more than"):
        encoderkit.load(tiny_roberta, threads=100000)


def test_torch_attentions_are_thread_safe(tiny_roberta):
    from concurrent.futures import ThreadPoolExecutor

    rt = encoderkit.load(tiny_roberta)
    texts = [f"Sentence number {i} has some words." for i in range(8)]
    want = {t: rt.attentions(t).probs for t in texts}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: (texts[i % 8], rt.attentions(texts[i % 8]).probs), range(96)))
    for t, probs in got:
        assert probs.shape == want[t].shape and np.abs(probs - want[t]).max() <= 1e-6


def test_onnx_runtime_out_of_resources_is_not_blamed_on_the_artifact(tiny_roberta, tmp_path, monkeypatch):
    import onnxruntime as ort

    from encoderkit.core.errors import ArtifactError, ResourceError

    out = tmp_path / "conv"
    convert(tiny_roberta, ["onnx"], out)
    real = ort.InferenceSession

    def fail(message):
        def session(*args, **kwargs):
            raise RuntimeError(message)
        return session

    monkeypatch.setattr(ort, "InferenceSession", fail("pthread_create failed: Resource temporarily unavailable"))
    with pytest.raises(ResourceError, match="ran out of resources.*--threads"):
        encoderkit.load(out, "onnx")
    monkeypatch.setattr(ort, "InferenceSession", fail("[ONNXRuntimeError] : 10 : INVALID_GRAPH : bad node"))
    with pytest.raises(ArtifactError, match="cannot load it"):
        encoderkit.load(out, "onnx")
    monkeypatch.setattr(ort, "InferenceSession", real)
    assert encoderkit.load(out, "onnx").embed(["fine"]).shape == (1, 32)


@pytest.mark.parametrize("name", registry.installed_backends())
def test_every_backend_refuses_an_option_it_does_not_have(name):
    """An option a backend's load/constructor does not take is an InputError naming its options,
    checked before the backend's own load runs (it was a TypeError from inside the constructor)."""
    from encoderkit.backends.loading import backend_class, check_known_options

    cls = backend_class(name)
    with pytest.raises(InputError, match=rf"backend {name!r} has no option 'no_such_option'; its options: .*threads"):
        check_known_options(cls, name, {"no_such_option": 1, "threads": 1})
    check_known_options(cls, name, {"threads": 1, "max_tokens": 8, "allow_pickle": False})  # shared ones pass
