"""Issue 12 (acceptance): hypothesis fuzz over the files a model directory is made of -- the
safetensors header, config.json, manifest.json and onnx_info.json; issue 26 (at the end):
bundle.json (the bundle runner), the batch ledger (--resume) and the training arguments. Every
outcome must be a typed ``EncoderkitError`` (one line) or a correct result (same tensors / answers
as the untouched input); anything else (KeyError, TypeError, OverflowError, a hang) fails.
Examples are bounded (max_examples=60, 40 for issue 26's)."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import hypothesis  # noqa: F401  (the test extra: an ImportError is a failure, never a skip)
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
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
    # a plain Hugging Face checkpoint: init-random's manifest would refuse every tampered file at once
    shutil.copytree(tiny_roberta, ckpt, ignore=shutil.ignore_patterns("manifest.json"))
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


# =========================================================================== issue 26: bundle.json
# Every outcome of the bundle runner on a tampered bundle.json: one line and exit 2 (1 for a
# self-test that misses), or the same answers as the untouched bundle; never a traceback.

SMALL = settings(max_examples=40, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bundle_work(work):
    if "onnx" not in work["formats"]:
        pytest.skip("onnx not installed")
    from encoderkit.deploy import package

    root = work["conv"].parent / "bundle-fuzz"
    package(work["conv"], "onnx", root / "pristine")
    spec = importlib.util.spec_from_file_location("fuzzed_bundle_runner", root / "pristine" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return Work({"root": root, "runner": runner,
                 "base": {cmd: _run_bundle(runner, root / "pristine", cmd) for cmd in BUNDLE_COMMANDS}})


BUNDLE_COMMANDS = {"embed": ["embed", "hello world", "--json"],
                   "fill-mask": ["fill-mask", "The capital of France is <mask>.", "--json"],
                   "self-test": ["--self-test"]}


def _run_bundle(runner, bundle_dir, cmd: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = runner.main(["--bundle", str(bundle_dir), *BUNDLE_COMMANDS[cmd]])
    return rc, out.getvalue(), err.getvalue()


PATHS = st.sampled_from(["model.onnx", "head.onnx", "tokenizer.json", "run.py", "requirements.txt", "../model.onnx",
                         "/etc/passwd", "", ".", "./model.onnx", "a//b", "model.onnx/", "..", "node_modules/x",
                         "bundle.json", "nope.onnx", "model.onnx.data", "a\\b"])


@SMALL
@given(data=st.data())
def test_fuzz_bundle_json(bundle_work, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fz") / "b"
    shutil.copytree(bundle_work["root"] / "pristine", d)
    original = json.loads((d / "bundle.json").read_text())
    b = json.loads(json.dumps(original))
    mode = data.draw(st.sampled_from(["top", "field", "files", "graphs", "whole", "disk"]))
    if mode == "top":
        key = data.draw(st.sampled_from(sorted(b) + ["x"]))
        if data.draw(st.booleans()):
            b.pop(key, None)
        else:
            b[key] = data.draw(st.one_of(JSON, PATHS, st.integers(-5, 2**40)))
    elif mode == "field":
        key = data.draw(st.sampled_from(["pooling", "model", "probes", "special_tokens"]))
        sub = b[key] if isinstance(b.get(key), dict) else {}
        field = data.draw(st.sampled_from(sorted(sub) + ["tolerance", "x"]))
        sub[field] = data.draw(st.one_of(JSON, st.integers(-3, 10**6), st.sampled_from(["mean", "cls", "max", "atol"])))
        b[key] = sub
    elif mode == "files":
        rel = data.draw(st.sampled_from(sorted(b["files"])))
        op = data.draw(st.sampled_from(["rename", "drop", "sha", "bytes", "entry"]))
        if op == "rename":
            b["files"][data.draw(st.one_of(PATHS, st.text(max_size=12)))] = b["files"].pop(rel)
        elif op == "drop":
            del b["files"][rel]
        elif op == "sha":
            b["files"][rel]["sha256"] = data.draw(st.one_of(st.text(max_size=70), st.just("0" * 64), JSON_LEAF))
        elif op == "bytes":
            b["files"][rel]["bytes"] = data.draw(st.one_of(st.integers(-1, 2**70), JSON_LEAF))
        else:
            b["files"][rel] = data.draw(JSON)
    elif mode == "graphs":
        key = data.draw(st.sampled_from(["encoder", "head", "x"]))
        b["graphs"][key] = data.draw(st.one_of(PATHS, JSON_LEAF))
    elif mode == "whole":
        b = data.draw(JSON)
    else:  # the folder, not the table: an added file, a symlink, a removed or changed file
        op = data.draw(st.sampled_from(["add", "link", "remove", "flip"]))
        rel = data.draw(st.sampled_from(["model.onnx", "head.onnx", "tokenizer.json", "requirements.txt"]))
        if op == "add":
            extra = d / data.draw(st.sampled_from(["extra.onnx", "sub/x.txt", ".hidden"]))
            extra.parent.mkdir(exist_ok=True)
            extra.write_bytes(b"x")
        elif op == "link":
            (d / rel).unlink()
            (d / rel).symlink_to(bundle_work["root"] / "pristine" / rel)
        elif op == "remove":
            (d / rel).unlink()
        else:
            raw = bytearray((d / rel).read_bytes())
            raw[len(raw) // 2] ^= 1
            (d / rel).write_bytes(bytes(raw))
    (d / "bundle.json").write_text(json.dumps(b))
    cmd = data.draw(st.sampled_from(sorted(BUNDLE_COMMANDS)))
    rc, out, err = _run_bundle(bundle_work["runner"], d, cmd)  # any exception fails the test
    event(f"{mode} {cmd} -> exit {rc}")
    base_rc, base_out, _ = bundle_work["base"][cmd]
    if rc != 0:
        lines = err.strip().splitlines()
        assert rc in ((1, 2) if cmd == "self-test" else (2,)), (rc, err)
        assert len(lines) == 1 and lines[0].startswith(("error:", "self-test FAILED:")), err
        assert out == "" or cmd == "self-test"
        return
    # it ran: then it ran the bundle as packaged, and answered as it does
    assert mode != "disk"  # an added, linked, removed or changed file is always refused
    same = all(isinstance(b, dict) and b.get(k) == original.get(k)
               for k in ("pooling", "model", "mask_token", "mask_token_id", "pad_token_id", "max_length", "graphs"))
    if same:
        if cmd == "self-test":
            assert [ln.split(",")[0] for ln in out.splitlines()] == [ln.split(",")[0] for ln in base_out.splitlines()]
        else:
            np.testing.assert_allclose(np.array(_numbers(json.loads(out))), np.array(_numbers(json.loads(base_out))),
                                       rtol=0, atol=1e-6)


def _numbers(x) -> list[float]:
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _numbers(x[k]) if k in ("score", "token")]
    if isinstance(x, list):
        return [v for e in x for v in _numbers(e)]
    return [float(x)] if isinstance(x, (int, float)) else []


# =========================================================================== issue 26: the batch ledger
# A stopped run's ledger.json tampered with, then --resume: a typed InputError, or an output equal
# to a clean run's (the same rows from the same model); never shards mixed or lost, never a traceback.

@pytest.fixture(scope="module")
def ledger_work(work, tmp_path_factory):
    pytest.importorskip("pyarrow")
    from encoderkit.batch import Job, run_job
    from encoderkit.batch.io import read_output

    root = tmp_path_factory.mktemp("ledger")
    texts = [f"sentence {i} about the river and the sea" for i in range(130)]
    texts[110] = ""
    inp = root / "in.txt"
    inp.write_text("".join(t + "\n" for t in texts))
    rt = encoderkit.load(work["ckpt"], threads=1)
    common = dict(input=inp, task="embed", model=str(work["ckpt"]), shard_rows=40, window=20, quiet=True)
    run_job(Job(output=root / "ref.parquet", on_error="skip", **common), runtime=rt)
    ref = read_output(root / "ref.parquet")
    with pytest.raises(EncoderkitError, match="--resume"):
        run_job(Job(output=root / "stopped.parquet", **common), runtime=rt)
    shards = root / "stopped.parquet.shards"
    assert len(json.loads((shards / "ledger.json").read_text())["shards"]) == 2
    return Work({"root": root, "rt": rt, "common": common, "shards": shards, "ids": ref.column("id").to_pylist(),
                 "emb": np.array(ref.column("embedding").to_pylist(), dtype=np.float32)})


@SMALL
@given(data=st.data())
def test_fuzz_batch_ledger(ledger_work, tmp_path_factory, data):
    from encoderkit.batch import Job, run_job
    from encoderkit.batch.io import read_output

    out = tmp_path_factory.mktemp("fz") / "out.parquet"
    shards = Path(str(out) + ".shards")
    shutil.copytree(ledger_work["shards"], shards)
    ledger = json.loads((shards / "ledger.json").read_text())
    mode = data.draw(st.sampled_from(["job", "shard", "shards", "complete", "whole", "file"]))
    if mode == "job":
        key = data.draw(st.sampled_from(sorted(ledger["job"]) + ["x"]))
        ledger["job"][key] = data.draw(st.one_of(JSON, st.integers(0, 10**6)))
    elif mode == "shard":
        s = ledger["shards"][data.draw(st.integers(0, len(ledger["shards"]) - 1))]
        key = data.draw(st.sampled_from(sorted(s) + ["x"]))
        s[key] = data.draw(st.one_of(JSON, st.integers(-2, 100), st.sampled_from(
            ["part-00000.parquet", "part-00001.parquet", "../../in.txt", "/etc/passwd", "ledger.json"])))
    elif mode == "shards":
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "clear", "junk"]))
        sh = ledger["shards"]
        ledger["shards"] = {"drop": sh[1:], "dup": sh + sh[-1:], "swap": sh[::-1], "clear": [],
                            "junk": sh + [data.draw(JSON)]}[op]
    elif mode == "complete":
        ledger["complete"] = data.draw(JSON)
    elif mode == "whole":
        ledger = data.draw(JSON)
    else:  # a shard file changed on disk, its sha256 (and counts) recomputed into the ledger or not
        s = ledger["shards"][data.draw(st.integers(0, len(ledger["shards"]) - 1))]
        import pyarrow.parquet as pq

        t = pq.read_table(shards / s["file"])
        t = t.slice(0, data.draw(st.integers(0, t.num_rows)))
        pq.write_table(t, shards / s["file"])
        if data.draw(st.booleans()):
            s["sha256"][s["file"]] = hashlib.sha256((shards / s["file"]).read_bytes()).hexdigest()
            if data.draw(st.booleans()):
                s["rows"] = t.num_rows
    (shards / "ledger.json").write_text(json.dumps(ledger))
    job = Job(output=out, on_error="skip", resume=True, **ledger_work["common"])
    try:
        summary = run_job(job, runtime=ledger_work["rt"])
    except EncoderkitError as e:
        event(f"{mode} -> refused ({str(e).split(' (')[0][-40:]})")
        return
    event(f"{mode} -> resumed from {summary.resumed_records} records")
    table = read_output(out)
    assert (summary.rows, summary.rejected) == (129, 1)
    assert table.column("id").to_pylist() == ledger_work["ids"]
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32), ledger_work["emb"],
                               rtol=0, atol=1e-5)


# =========================================================================== issue 26: training arguments
# Every training number either refused with an InputError before anything starts (nothing
# written, no trainer reached), or valid by an independent reading of the rules and trained.

NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-3, 10),
                   st.integers(-2**70, 2**70), st.booleans(), st.none(), st.text(max_size=4))


def _valid(a: dict) -> bool:
    import math

    def real(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)

    ok = (a["method"] in ("probe", "freeze", "lora", "full") and real(a["epochs"]) and 0 < a["epochs"] <= 1e6
          and (a["lr"] is None or real(a["lr"]) and a["lr"] > 0)
          and (a["dropout"] is None or real(a["dropout"]) and 0 <= a["dropout"] < 1)
          and integer(a["max_steps"]) and (a["max_steps"] == -1 or 1 <= a["max_steps"] <= 10**9)
          and integer(a["batch_size"]) and 1 <= a["batch_size"] <= 10**6
          and integer(a["seed"]) and 0 <= a["seed"] < 2**32
          and integer(a["unfreeze_top"]) and a["unfreeze_top"] >= 0
          and integer(a["lora_r"]) and a["lora_r"] >= 1 and integer(a["lora_alpha"]) and a["lora_alpha"] >= 1
          and integer(a["nproc"]) and a["nproc"] >= 1
          and real(a["warmup"]) and 0 <= a["warmup"] < 1 and not (a["warmup"] and a["method"] == "probe"))
    if not ok:
        return False
    if a["method"] == "freeze" and a["unfreeze_top"] > 2:  # the tiny model has 2 layers
        return False
    if a["nproc"] > 1:
        return a["method"] != "probe" and a["nproc"] <= (os.cpu_count() or 1) and a["batch_size"] % a["nproc"] == 0
    return True


@SMALL
@given(data=st.data())
def test_fuzz_training_arguments(work, tmp_path_factory, monkeypatch, data):
    import encoderkit.finetune as ft
    from encoderkit.core.errors import InputError

    started = []
    metrics = {"method": "x", "train_seconds": 0.0, "eval_accuracy": None, "peak_rss_mb": 0.0, "history": []}
    monkeypatch.setattr(ft, "_train", lambda cfg, out: started.append(cfg) or dict(metrics))
    monkeypatch.setattr(ft, "_probe", lambda *a, **k: started.append(k) or dict(metrics))
    monkeypatch.setattr(ft, "_curve", lambda *a, **k: None)
    monkeypatch.setattr(ft, "max_processes", lambda: (os.cpu_count() or 1, "CPU core"))  # as on a machine without GPU
    # valid arguments, then one to three of them replaced by anything (valid or not)
    a = {"method": data.draw(st.sampled_from(["probe", "freeze", "lora", "full"])), "epochs": 1.0, "lr": None,
         "dropout": None, "max_steps": -1, "batch_size": 16, "seed": 0, "unfreeze_top": 0, "lora_r": 8,
         "lora_alpha": 16, "nproc": 1, "warmup": 0.0}
    plausible = {"method": st.sampled_from(["probe", "freeze", "lora", "full", "nope"]),
                 "epochs": st.floats(1e-3, 10), "lr": st.floats(1e-6, 1.0), "dropout": st.floats(0, 1),
                 "max_steps": st.integers(-2, 5), "batch_size": st.sampled_from([1, 4, 16]),
                 "seed": st.sampled_from([0, 2**32 - 1, 2**32, -1]), "unfreeze_top": st.integers(-1, 3),
                 "lora_r": st.integers(-1, 16), "lora_alpha": st.integers(-1, 32), "nproc": st.sampled_from([1, 2, 3, 10**6]),
                 "warmup": st.sampled_from([0.0, 0.06, 0.999, 1.0, -0.5])}
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(sorted(a)))
        a[field] = data.draw(st.one_of(plausible[field], NUMBER))
    out = tmp_path_factory.mktemp("fz") / "out"
    try:
        ft.finetune(work["ckpt"], ft.TOPICS_TEST, out, quiet=True, **a)
    except InputError:
        event("refused")
        assert not _valid(a), a
        assert not started and not out.exists()
        return
    event(f"trained ({a['method']})")
    assert _valid(a), a
    assert len(started) == 1 and out.is_dir()
