"""Issue 12 (acceptance): hypothesis fuzz over the files a model directory is made of -- the
safetensors header, config.json, manifest.json and onnx_info.json. Every outcome must be a typed
``EncoderkitError`` or a correct load (same tensors / answers as the untouched model); anything
else (KeyError, TypeError, OverflowError, a hang) fails. Examples are bounded (max_examples=60)."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import hypothesis  # noqa: F401  (the test extra: an ImportError is a failure, never a skip)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import encoderkit  # noqa: E402
from encoderkit.storage.checkpoint import load_checkpoint  # noqa: E402
from encoderkit.core.errors import EncoderkitError  # noqa: E402
from encoderkit.storage.manifest import write_manifest  # noqa: E402
from encoderkit.conversion import convert  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JSON = st.recursive(JSON_LEAF, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=3)), max_leaves=8)


class Work(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "<work dirs>"


@pytest.fixture(scope="module")
def work(tiny_roberta, tmp_path_factory):
    """A checkpoint copy and a converted (safetensors + onnx) copy to tamper with, and references."""
    root = tmp_path_factory.mktemp("fuzz")
    ckpt = root / "ckpt"
    shutil.copytree(tiny_roberta, ckpt)
    formats = ["safetensors", "onnx"]  # the onnx extra is part of `make test`
    conv = root / "conv"
    convert(tiny_roberta, formats, conv)
    ref = load_checkpoint(tiny_roberta)
    return Work({"ckpt": ckpt, "conv": conv, "ref": ref, "formats": formats,
            "embed": encoderkit.load(tiny_roberta).embed(["a small probe"]),
            "files": {p: p.read_bytes() for p in list(ckpt.rglob("*")) + list(conv.rglob("*")) if p.is_file()}})


def restore(work) -> None:
    for p, data in work["files"].items():
        if p.read_bytes() != data:
            p.write_bytes(data)


def typed_or_correct(load, check) -> str:
    try:
        obj = load()
    except EncoderkitError:
        return "typed"
    check(obj)
    return "loaded"


def same_checkpoint(work):
    def check(ckpt):
        ref = work["ref"]
        assert ckpt.spec == ref.spec
        assert ckpt.state.keys() == ref.state.keys()
        for k, v in ckpt.state.items():
            assert np.array_equal(v, ref.state[k]), k
    return check


def same_answers(work, tol=1e-4, min_cos=None):
    def check(rt):
        e = rt.embed(["a small probe"])
        assert np.isfinite(e).all()
        if min_cos is None:
            np.testing.assert_allclose(e, work["embed"], rtol=0, atol=tol)
        else:  # a quantized sibling graph may stand in for the fp32 encoder: answers still close
            ref = work["embed"]
            cos = float((e * ref).sum() / (np.linalg.norm(e) * np.linalg.norm(ref)))
            assert cos >= min_cos, cos
    return check


# --------------------------------------------------------------------------- safetensors header

TENSOR_ENTRY = st.fixed_dictionaries({}, optional={
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX"]), JSON_LEAF),
    "shape": st.one_of(st.lists(st.integers(-3, 2**40), max_size=4), JSON_LEAF),
    "data_offsets": st.one_of(st.lists(st.integers(-3, 2**40), min_size=0, max_size=3), JSON_LEAF),
})


@SETTINGS
@given(data=st.data())
def test_fuzz_safetensors_header(work, data):
    path = work["ckpt"] / "model.safetensors"
    raw = work["files"][path]
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    names = [k for k in header if k != "__metadata__"]
    mode = data.draw(st.sampled_from(["entry", "field", "length", "whole"]))
    if mode == "entry":  # replace one tensor's entry
        header[data.draw(st.sampled_from(names))] = data.draw(TENSOR_ENTRY)
    elif mode == "field":  # one field of one tensor
        name = data.draw(st.sampled_from(names))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name] = header[name] | {field: data.draw(JSON)}
    elif mode == "whole":
        header = data.draw(JSON)
    blob = json.dumps(header).encode()
    length = len(blob) if mode != "length" else data.draw(st.integers(0, 2**64 - 1))
    path.write_bytes(struct.pack("<Q", length) + blob + body)
    try:
        typed_or_correct(lambda: load_checkpoint(work["ckpt"]), same_checkpoint(work))
    finally:
        restore(work)


# --------------------------------------------------------------------------- config.json

CONFIG_FIELDS = ["model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
                 "layer_norm_eps", "pad_token_id", "position_embedding_type", "architectures"]


@SETTINGS
@given(data=st.data())
def test_fuzz_config(work, data):
    path = work["ckpt"] / "config.json"
    config = json.loads(work["files"][path])
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(CONFIG_FIELDS + ["random"]))
        value = data.draw(st.one_of(JSON, st.integers(-5, 5), st.integers(0, 2**63),
                                    st.sampled_from(["roberta", "bert", "gpt2", "gelu", "relu"])))
        if data.draw(st.booleans()) and field in config:
            del config[field]
        else:
            config[field] = value
    path.write_text(json.dumps(config))
    try:
        typed_or_correct(lambda: load_checkpoint(work["ckpt"]), lambda c: None)
        # whatever loaded must also run: a spec that builds no model is not a correct load
        try:
            rt = encoderkit.load(work["ckpt"])
        except EncoderkitError:
            return
        assert np.isfinite(rt.embed(["a small probe"])).all()
    finally:
        restore(work)


# --------------------------------------------------------------------------- manifest.json

@SETTINGS
@given(data=st.data())
def test_fuzz_manifest(work, data):
    conv = work["conv"]
    path = conv / "manifest.json"
    m = json.loads(work["files"][path])
    mode = data.draw(st.sampled_from(["top", "entry", "path", "whole"]))
    if mode == "top":
        m[data.draw(st.sampled_from(["encoderkit_manifest", "kind", "formats", "files", "variants", "x"]))] = \
            data.draw(JSON)
    elif mode == "entry":
        rel = data.draw(st.sampled_from(sorted(m["files"])))
        m["files"][rel] = data.draw(st.one_of(JSON, st.fixed_dictionaries(
            {"sha256": st.one_of(st.just(m["files"][rel]["sha256"]), st.text(max_size=70)),
             "bytes": st.one_of(st.just(m["files"][rel]["bytes"]), st.integers(-1, 2**66), JSON_LEAF)})))
    elif mode == "path":  # rename an entry to an arbitrary path (traversal, absolute, empty, ...)
        rel = data.draw(st.sampled_from(sorted(m["files"])))
        new = data.draw(st.one_of(st.sampled_from(["../x", "/etc/passwd", "", ".", "onnx/../report.md",
                                                   "onnx//head.onnx", "manifest.json", "a\\b", "onnx/./x"]),
                                  st.text(max_size=20)))
        m["files"][new] = m["files"].pop(rel)
    else:
        m = data.draw(JSON)
    path.write_text(json.dumps(m))
    backend = data.draw(st.sampled_from(["torch", "onnx"]))
    try:
        typed_or_correct(lambda: encoderkit.load(conv, backend), same_answers(work))
    finally:
        restore(work)


# --------------------------------------------------------------------------- onnx_info.json

@SETTINGS
@given(data=st.data())
def test_fuzz_onnx_info(work, data):
    conv = work["conv"]
    path = conv / "onnx" / "onnx_info.json"
    info = json.loads(work["files"][path])
    names = sorted(p.name for p in (conv / "onnx").iterdir())
    mode = data.draw(st.sampled_from(["file", "key", "whole"]))
    if mode == "file":  # point a role at another file, a traversal, an absolute path, garbage
        key = data.draw(st.sampled_from(sorted(info["files"])))
        info["files"][key] = data.draw(st.one_of(
            st.sampled_from(names + ["../manifest.json", "../safetensors/model.safetensors", "/dev/zero",
                                     "/etc/passwd", "", ".", "..", "nope.onnx", str(conv / "onnx" / "head.onnx")]),
            JSON))
    elif mode == "key":
        info["files"][data.draw(st.text(max_size=10))] = data.draw(st.sampled_from(names))
        if data.draw(st.booleans()):
            info["files"].pop(data.draw(st.sampled_from(sorted(info["files"]))), None)
    else:
        info = data.draw(JSON)
    path.write_text(json.dumps(info))
    extra = {k: v for k, v in json.loads(work["files"][conv / "manifest.json"]).items()
             if k not in ("encoderkit_manifest", "files")}
    write_manifest(conv, extra)  # recomputed: only the runtime's own checks stand in the way
    try:
        typed_or_correct(lambda: encoderkit.load(conv, "onnx"), same_answers(work))
    finally:
        restore(work)
