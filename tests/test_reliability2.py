"""Issue 26 (reliability round 2): nothing foreign runs through `package`, bundles verify what they
claim (under python -O too), `--resume` never mixes two models, `--force` never deletes an input,
bad numbers never train, bad rows are rows, closed pipes are quiet. Each test names its item; the
hypothesis fuzzing of bundle.json, the batch ledger and the training arguments is in
test_reliability_fuzz.py."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.backends.catalog import installed_formats
from encoderkit.cli import main
from encoderkit.core.errors import ArtifactError
from encoderkit.conversion import convert

ROOT = Path(__file__).resolve().parents[1]
# the package under test (the checkout's, or the installed wheel's in the release's install stage)
PKG = Path(encoderkit.__file__).resolve().parent
TOPICS_TEST = PKG / "data" / "topics_test.jsonl"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
FORMATS = [f for f in ("safetensors", "onnx", "tf") if f in installed_formats()]
pyarrow = importlib.util.find_spec("pyarrow") is not None


def one_line_error(err: str) -> str:
    """The stderr of a refused command: exactly one line, `error: ...`, no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (a file: itself), to prove an input was left untouched."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root) if p != root else p.name): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "encoderkit.cli", *map(str, args)], capture_output=True,
                          env=ENV, **kw)


@pytest.fixture(scope="module")
def conv(tiny_roberta, tmp_path_factory):
    """A tiny RoBERTa converted to every installed format this file needs."""
    out = tmp_path_factory.mktemp("rel2") / "conv"
    convert(tiny_roberta, FORMATS, out)
    return out


@pytest.fixture
def conv_copy(conv, tmp_path):
    dst = tmp_path / "conv"
    shutil.copytree(conv, dst)
    return dst


@pytest.fixture(scope="module")
def bundle(conv, tmp_path_factory):
    """An onnx bundle (embed + fill-mask) of the tiny model; tests work on copies."""
    if "onnx" not in FORMATS:
        pytest.skip("onnx not installed")
    from encoderkit.deploy import package

    out = tmp_path_factory.mktemp("rel2-bundle") / "bundle"
    package(conv, "onnx", out)
    return out


@pytest.fixture
def bundle_copy(bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


def run_py(bundle_dir: Path, *args, flags=(), env=None) -> subprocess.CompletedProcess:
    """The bundle's runner as a user runs it: a fresh python, without encoderkit on the path."""
    e = {k: v for k, v in (env or os.environ).items() if k not in ("PYTHONPATH", "PYTHONOPTIMIZE")}
    if env and "PYTHONOPTIMIZE" in env:
        e["PYTHONOPTIMIZE"] = env["PYTHONOPTIMIZE"]
    return subprocess.run([sys.executable, *flags, str(bundle_dir / "run.py"), *args], capture_output=True,
                          env=e, cwd=bundle_dir.parent)


def rewrite_bundle(bundle_dir: Path, fn) -> None:
    path = bundle_dir / "bundle.json"
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def file_entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# =========================================================================== foreign code runs

def test_tf_serving_package_refuses_a_foreign_savedmodel(conv_copy, tmp_path, capfd):
    """Item 'package --target tf-serving loads a foreign SavedModel': a SavedModel whose signature
    writes a file, manifest recomputed, is refused by the origin check before TensorFlow runs it."""
    if "tf" not in FORMATS:
        pytest.skip("tf not installed")
    from test_reliability import _plant, remanifest

    marker = _plant(conv_copy, tmp_path, "plain")
    remanifest(conv_copy)
    out = tmp_path / "serving"
    capfd.readouterr()
    assert main(["package", str(conv_copy), "--target", "tf-serving", "--out", str(out), "--quiet"]) == 2
    err = one_line_error(capfd.readouterr().err)
    assert "not a SavedModel encoderkit exported" in err and "--trust-artifact" in err
    assert not marker.exists() and not out.exists()
    assert not list(tmp_path.glob(".serving*"))  # no temp dir left either


def _tamper_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


OPENERS = {  # every caller that opens a converted format directory, as a user reaches it
    "load": lambda conv, fmt, out: [encoderkit.load(conv, b) for b in _backends(conv, fmt)],
    "package": lambda conv, fmt, out: _package_each(conv, fmt, out),
    "parity": lambda conv, fmt, out: __import__("encoderkit.verify.parity", fromlist=["x"]).parity_matrix(
        conv, backends=[b for b in _backends(conv, fmt) if b != "torch"] or None),
    "bench": lambda conv, fmt, out: __import__("encoderkit.bench", fromlist=["x"]).run_bench(
        conv, backends=_backends(conv, fmt), tasks=["embed"], out=out / "bench", repeats=1, quick=True),
    # the benchmark's peers (pipeline, sentence-transformers) read safetensors/ with transformers,
    # also when no torch backend is benchmarked
    "bench-peers": lambda conv, fmt, out: __import__("encoderkit.bench", fromlist=["x"]).run_bench(
        conv, backends=["onnx" if fmt == "safetensors" else _backends(conv, fmt)[0]], tasks=["embed"],
        out=out / "bench", repeats=1, quick=True),
    "batch": lambda conv, fmt, out: _batch(conv, _backends(conv, fmt)[0], out),
    "probe": lambda conv, fmt, out: __import__("encoderkit.finetune", fromlist=["x"]).finetune(
        conv, TOPICS_TEST, out / "probe", method="probe",
        backend=_backends(conv, fmt)[0], quiet=True),
    "classify": lambda conv, fmt, out: __import__("encoderkit.finetune", fromlist=["x"]).load_classifier(
        conv, _backends(conv, fmt)[0]),
}


def _backends(conv: Path, fmt: str) -> list[str]:
    from encoderkit.backends.catalog import BACKENDS

    return [b for b in encoderkit.backends.loading.available_backends(conv) if BACKENDS[b].fmt == fmt]


def _package_each(conv: Path, fmt: str, out: Path) -> None:
    from encoderkit.deploy import package

    targets = {"onnx": ["onnx", "triton", "node"], "tf": ["tf-serving", "tflite"]}.get(fmt, [])
    for t in targets:
        with pytest.raises(ArtifactError, match="sha256 differs"):
            package(conv, t, out / t)
        assert not (out / t).exists()
    if not targets:  # safetensors: the torch reference every packager computes its probes with
        with pytest.raises(ArtifactError, match="sha256 differs"):
            package(conv, "onnx", out / "onnx")
    raise ArtifactError("sha256 differs (every target refused)")


def _batch(conv: Path, backend: str, out: Path) -> None:
    from encoderkit.batch import Job, run_job

    inp = out / "in.txt"
    inp.write_text("one text\nanother text\n")
    run_job(Job(input=inp, output=out / "o.jsonl", task="embed", model=str(conv), backend=backend, quiet=True))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_opener_of_a_converted_directory_goes_through_the_gate(conv_copy, tmp_path, fmt):
    """Item 'every path that opens a converted directory goes through the one gate': one byte of
    the format's files changed (size kept, manifest not updated); every caller refuses it with the
    gate's message before reading the file as a model: load, every packager, the parity matrix
    (the release's parity stage), the benchmark, batch jobs, probes, classify."""
    victim = next(p for p in sorted((conv_copy / fmt).rglob("*")) if p.is_file() and p.stat().st_size > 100)
    _tamper_same_size(victim)
    out = tmp_path / "outs"
    out.mkdir()
    for name, opener in OPENERS.items():
        if name == "batch" and not pyarrow:
            continue
        with pytest.raises(ArtifactError, match="sha256 differs"):
            opener(conv_copy, fmt, out)
        assert not (out / "bench" / "bench.json").exists() and not (out / "o.jsonl").exists()
        assert not (out / "probe").exists(), name


def test_no_module_opens_a_format_directory_around_the_gate():
    """Item 'a test walks every caller' (static half): runtimes are constructed from a directory only
    by the loader (after open_converted) and by the convert gate (its own fresh export); format
    folders are joined by literal name only where listed here, each with its reason."""
    import ast

    fmts = {"safetensors", "onnx", "tf", "flax", "ctranslate2", "pytorch"}
    allowed_joins = {
        ("encoderkit/storage/checkpoint.py", "safetensors"),  # checkpoint_directory: callers verify first
        ("encoderkit/bench/peers.py", "ctranslate2"),  # after open_converted (checked by the dynamic test)
        ("ci/release.py", "safetensors"),  # reads config.json of the release's own conversion
        ("ci/release.py", "flax"),  # the test perturbation hook, on the release's own conversion
    }
    allowed_loads = {"encoderkit/backends/loading.py", "encoderkit/verify/gate.py"}
    found_joins, found_loads = set(), set()
    files = [(p, "encoderkit/" + p.relative_to(PKG).as_posix()) for p in sorted(PKG.rglob("*.py"))]
    files.append((ROOT / "ci" / "release.py", "ci/release.py"))
    assert len(files) > 50 and files[-1][0].is_file(), f"{len(files)} files under {PKG}"
    for path, rel in files:
        if rel.startswith("encoderkit/backends/") and rel != "encoderkit/backends/loading.py":
            continue  # the backends' own layout code reads inside the directory it was handed
        if rel == "encoderkit/conversion.py":
            continue  # writes the export
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and \
                    isinstance(node.right, ast.Constant) and node.right.value in fmts:
                found_joins.add((rel, node.right.value))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                target = node.func.value
                if isinstance(target, ast.Call) and getattr(target.func, "id", "") == "backend_class" or \
                        isinstance(target, ast.Name) and target.id.endswith("Runtime"):
                    found_loads.add(rel)
    assert found_joins <= allowed_joins, found_joins - allowed_joins
    assert found_loads <= allowed_loads, found_loads - allowed_loads


# =========================================================================== bundles verify what they claim

def _perturbed_model(bundle_dir: Path) -> None:
    """A different model at model.onnx (one weight matrix shifted), its sha256 and size updated in
    bundle.json: what a swapped model with a recomputed table looks like."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(bundle_dir / "model.onnx"))
    big = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)) if t.dims else 0)
    arr = numpy_helper.to_array(big).copy()
    arr += np.random.default_rng(0).standard_normal(arr.shape).astype(np.float32) * np.float32(0.5)
    big.CopyFrom(numpy_helper.from_array(arr, big.name))
    onnx.save(m, str(bundle_dir / "model.onnx"))
    rewrite_bundle(bundle_dir, lambda b: b | {"files": b["files"] | {"model.onnx": file_entry(bundle_dir / "model.onnx")}})


@pytest.mark.parametrize("how", ["-O", "PYTHONOPTIMIZE"])
def test_runner_self_test_fails_under_python_O(bundle_copy, how):
    """Item 'its checks are asserts': under python -O (or PYTHONOPTIMIZE) a swapped model with its
    sha256 updated used to pass --self-test (exit 0); now it fails, one line, exit 1."""
    _perturbed_model(bundle_copy)
    flags, env = (["-O"], None) if how == "-O" else ([], {**os.environ, "PYTHONOPTIMIZE": "1"})
    res = run_py(bundle_copy, "--self-test", flags=flags, env=env)
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("self-test FAILED: embed: max |diff|"), lines
    assert b"self-test passed" not in res.stdout


BUNDLE_CASES = {
    # name: (edit the bundle copy, words of the one-line error)
    "graph-outside": (lambda b, tmp: (shutil.copyfile(b / "model.onnx", tmp / "evil.onnx"),
                                      rewrite_bundle(b, lambda d: d | {"graphs": d["graphs"] | {
                                          "encoder": "../" * 4 + str(tmp / "evil.onnx").lstrip("/")}})),
                      "names no file the bundle lists"),
    "graph-absolute": (lambda b, tmp: (shutil.copyfile(b / "model.onnx", tmp / "evil.onnx"),
                                       rewrite_bundle(b, lambda d: d | {"graphs": d["graphs"] | {
                                           "encoder": str(tmp / "evil.onnx")}})),
                       "names no file the bundle lists"),
    "listed-outside": (lambda b, tmp: (shutil.copyfile(b / "model.onnx", tmp / "evil.onnx"),
                                       rewrite_bundle(b, lambda d: d | {
                                           "files": d["files"] | {"../evil.onnx": file_entry(tmp / "evil.onnx")},
                                           "graphs": d["graphs"] | {"encoder": "../evil.onnx"}})),
                       "not a plain relative path"),
    "empty-files-flipped-byte": (lambda b, tmp: (_tamper_same_size(b / "model.onnx"),
                                                 rewrite_bundle(b, lambda d: d | {"files": {}})),
                                 "names no file the bundle lists"),
    "no-files": (lambda b, tmp: rewrite_bundle(b, lambda d: {k: v for k, v in d.items() if k != "files"}),
                 "'files' is missing"),
    "symlink-to-a-copy": (lambda b, tmp: (shutil.copyfile(b / "model.onnx", tmp / "copy.onnx"),
                                          (b / "model.onnx").unlink(), (b / "model.onnx").symlink_to(tmp / "copy.onnx")),
                          "symbolic link"),
    "symlinked-folder": (lambda b, tmp: ((tmp / "d").mkdir(), (b / "extra").symlink_to(tmp / "d")), "symbolic link"),
    "unlisted-file": (lambda b, tmp: (b / "evil.onnx").write_bytes(b"x"), "evil.onnx: not listed in bundle.json"),
    "listed-missing": (lambda b, tmp: (b / "head.onnx").unlink(), "head.onnx: listed in bundle.json but missing"),
    "wrong-size": (lambda b, tmp: (b / "requirements.txt").write_text("edited"), "bundle.json says"),
    "deep-json": (lambda b, tmp: (b / "bundle.json").write_text("[" * 100_000 + "]" * 100_000), "unreadable"),
    "huge-json": (lambda b, tmp: os.truncate(b / "bundle.json", 1 << 30), "more than a bundle.json can be"),
    "not-json": (lambda b, tmp: (b / "bundle.json").write_bytes(b"\xff{"), "unreadable"),
    "tokenizer-unlisted": (lambda b, tmp: rewrite_bundle(b, lambda d: d | {"tokenizer": "../tokenizer.json"}),
                           "'tokenizer' names no file"),
    "bad-engine": (lambda b, tmp: rewrite_bundle(b, lambda d: d | {"engine": "pickle"}), "'engine' is not one of"),
    "hidden-size-lies": (lambda b, tmp: rewrite_bundle(b, lambda d: d | {"model": d["model"] | {"hidden_size": 7}}),
                         "as bundle.json describes it"),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_bundle_holds_the_rules_of_a_converted_directory(bundle_copy, tmp_path, case):
    """Item 'bundle.json can name a graph outside the bundle, files: {} plus a flipped byte, a
    symlink to a copy outside, no files: a KeyError traceback': every file listed, listed paths
    plain and inside, no symlinks; one line, exit 2, and nothing outside the bundle loaded."""
    edit, words = BUNDLE_CASES[case]
    (tmp_path / "outside").mkdir()
    edit(bundle_copy, tmp_path / "outside")
    res = run_py(bundle_copy, "embed", "hello world")
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert words in one_line_error(res.stderr.decode())
    assert res.stdout == b""


def _runner_module(bundle_dir: Path):
    spec = importlib.util.spec_from_file_location(f"bundle_runner_{id(bundle_dir)}", bundle_dir / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_runner_loads_the_bytes_it_hashed(bundle_copy, monkeypatch):
    """Item 'checked by hash, then opened by path': the engine and the tokenizer get the very bytes
    whose sha256 matched (onnxruntime from bytes, tokenizers from a string), never a path, and a
    file swapped after the check cannot be what runs."""
    import onnxruntime
    import tokenizers

    run = _runner_module(bundle_copy)
    given = []
    real_session = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda model, *a, **k: given.append(model) or real_session(model, *a, **k))
    monkeypatch.setattr(tokenizers.Tokenizer, "from_file",
                        lambda *a, **k: pytest.fail("the tokenizer was opened by path"))
    reads = []
    real_read = run.BundleFiles.read

    def read(self, rel):
        data = real_read(self, rel)
        reads.append(rel)
        # the file changes on disk right after it was read and checked: what runs is what was checked
        (bundle_copy / rel).write_bytes(b"swapped after the check")
        return data

    monkeypatch.setattr(run.BundleFiles, "read", read)
    b = run.Bundle(bundle_copy)
    info = json.loads((bundle_copy / "bundle.json").read_text())
    assert sorted(reads) == sorted(["tokenizer.json", "model.onnx", "head.onnx"])
    assert all(isinstance(m, bytes) for m in given) and len(given) == 2
    assert [hashlib.sha256(m).hexdigest() for m in given] == [info["files"][f]["sha256"]
                                                               for f in ("model.onnx", "head.onnx")]
    assert np.isfinite(b.embed(["hello world"])).all()


def test_runner_takes_external_weights_from_memory(conv, tmp_path, monkeypatch):
    """Hash-then-load holds for a graph whose weights are external (over 1 GiB in real models):
    model.onnx.data is listed, hashed and handed to ONNX Runtime in memory; the self-test passes."""
    import encoderkit.deploy.onnx_bundle as ob
    from encoderkit.deploy import package

    if not hasattr(__import__("onnxruntime").SessionOptions, "add_external_initializers_from_files_in_memory"):
        pytest.skip("this onnxruntime cannot take external data from memory")
    monkeypatch.setattr(ob, "EXTERNAL_DATA_BYTES", 1)
    out = tmp_path / "ext"
    b = package(conv, "onnx", out, tasks="embed")
    assert "model.onnx.data" in b["files"]
    res = run_py(out, "--self-test")
    assert res.returncode == 0, res.stderr
    _tamper_same_size(out / "model.onnx.data")
    res = run_py(out, "embed", "hello")
    assert res.returncode == 2 and "model.onnx.data: sha256 differs" in one_line_error(res.stderr.decode())


BAD_UTF8 = [b"\xff\xfeabc", b"abc\xe2\x82", b"\xed\xa0\x80 lone surrogate"]


@pytest.mark.parametrize("raw", BAD_UTF8)
def test_runner_refuses_text_that_is_not_utf8(bundle_copy, raw):
    """Item 'run.py embed $'\\xff\\xfeabc' (lone surrogates, truncated UTF-8): a traceback': one line, exit 2."""
    for cmd in ("embed", "tokenize", "fill-mask"):
        res = subprocess.run([sys.executable, str(bundle_copy / "run.py"), cmd, raw], capture_output=True,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert res.returncode == 2, res.stderr
        assert "not valid UTF-8" in one_line_error(res.stderr.decode())


@pytest.mark.parametrize("raw", BAD_UTF8)
def test_node_runner_refuses_text_that_is_not_utf8(bundle_copy, raw):
    """Item '... and run.mjs': Node decodes such bytes to U+FFFD and would embed another text; the
    runner reads the raw argument bytes and answers one line, exit 2 (before loading anything)."""
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    from encoderkit.deploy.common import template

    (bundle_copy / "run.mjs").write_text(template("run.mjs"))
    res = subprocess.run(["node", str(bundle_copy / "run.mjs"), "embed", raw], capture_output=True)
    assert res.returncode == 2, res.stderr
    assert "not valid UTF-8" in one_line_error(res.stderr.decode())


def test_node_runner_holds_the_bundle_rules(bundle_copy):
    """run.mjs reads bundle.json as run.py does: a bundle without `files`, with an unlisted file or a
    symlink is one line, exit 2 (not a TypeError), before any package is imported; without its npm
    packages it says what to install in one line."""
    if not shutil.which("node"):
        pytest.skip("node is not installed")
    from encoderkit.deploy.common import template

    (bundle_copy / "run.mjs").write_text(template("run.mjs"))
    node = lambda: subprocess.run(["node", str(bundle_copy / "run.mjs"), "embed", "hello"], capture_output=True)  # noqa: E731
    res = node()  # run.mjs itself is not listed in an onnx bundle
    assert res.returncode == 2 and "run.mjs: not listed in bundle.json" in one_line_error(res.stderr.decode())
    rewrite_bundle(bundle_copy, lambda d: d | {"files": d["files"] | {"run.mjs": file_entry(bundle_copy / "run.mjs")}})
    res = node()
    assert res.returncode == 2 and "npm install" in one_line_error(res.stderr.decode())
    rewrite_bundle(bundle_copy, lambda d: {k: v for k, v in d.items() if k != "files"})
    res = node()
    assert res.returncode == 2 and "'files' is missing" in one_line_error(res.stderr.decode())


def test_runner_usage_errors_are_one_line(bundle_copy):
    """The runner's argparse errors are one line listing the choices (as encoderkit's), exit 2."""
    for args, words in ((["embed", "x", "--pooling", "bogus"], "choose from 'mean', 'cls', 'max'"),
                        (["embed"], "the following arguments are required"),
                        (["fill-mask", "x", "--top-k"], "expected one argument"),
                        (["--threads", "0", "embed", "x"], "--threads must be in 1..1024")):
        res = run_py(bundle_copy, *args)
        assert res.returncode == 2 and words in one_line_error(res.stderr.decode()), (args, res.stderr)


def test_runner_closed_stdout_is_quiet(bundle_copy):
    """`run.py embed ... | head -1`: a quiet exit, no traceback."""
    proc = subprocess.Popen([sys.executable, str(bundle_copy / "run.py"), "embed", *[f"text {i}" for i in range(50)]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == b"", err


# =========================================================================== data mixed or destroyed

@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_resume_refuses_a_model_replaced_at_the_same_path(tmp_path):
    """Item '--resume can mix two models': a run stopped with finished shards, the model replaced at
    the same path (init-random --seed 7 --force): --resume is refused as a different model. The same
    model given as a relative path instead resumes, and every row comes from it."""
    from encoderkit.batch.io import read_output
    from encoderkit.storage.random_init import init_random

    model = tmp_path / "m"
    init_random(model, "tiny", seed=0)
    texts = [f"sentence number {i} about the river" for i in range(120)]
    texts[100] = ""  # stops the run after shards 0 and 1 (rows 1..80)
    inp = tmp_path / "in.txt"
    inp.write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out.parquet"
    res = cli("embed", model, "--input", inp, "--output", out, "--shard-rows", 40, "--window", 20, "--quiet",
              "--threads", "1")
    assert res.returncode == 2 and "--resume" in res.stderr.decode()
    assert len(json.loads((tmp_path / "out.parquet.shards" / "ledger.json").read_text())["shards"]) == 2
    init_random(model, "tiny", seed=7, force=True)  # another model at the same path
    res = cli("embed", model, "--input", inp, "--output", out, "--shard-rows", 40, "--window", 20, "--quiet",
              "--threads", "1", "--resume", "--on-error", "skip")
    assert res.returncode == 2 and "differs in: model" in one_line_error(res.stderr.decode())
    init_random(model, "tiny", seed=0, force=True)  # the first model again, byte for byte
    res = cli("embed", "m", "--input", "in.txt", "--output", "out.parquet", "--shard-rows", 40, "--window", 20,
              "--quiet", "--threads", "1", "--resume", "--on-error", "skip", cwd=tmp_path)  # relative spellings
    assert res.returncode == 0, res.stderr
    table = read_output(out)
    assert table.column("id").to_pylist() == [i for i in range(1, 121) if i != 101]
    want = encoderkit.load(model).embed([t for t in texts if t])
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _hash_everything(*paths: Path) -> dict:
    return {str(p): tree_digest(p) for p in paths}


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_force_never_deletes_an_input(tiny_roberta, conv, tmp_path, capfd):
    """Item '--force can delete the source': every command that writes refuses an output that is,
    contains or lies inside one of its inputs (resolved paths, symlinks and hard links too), before
    any work, and every input is left byte for byte."""
    src = tmp_path / "src"
    shutil.copytree(tiny_roberta, src)
    cconv = tmp_path / "cconv"
    shutil.copytree(conv, cconv)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = data_dir / "train.jsonl"
    shutil.copyfile(TOPICS_TEST, data)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello"}\n')
    (tmp_path / "link").symlink_to(src)
    os.link(inp, tmp_path / "hard.jsonl")
    before = _hash_everything(src, cconv, data_dir, inp)
    ft = ["--data", data, "--method", "probe", "--force", "--quiet"]
    cases = [
        (["convert", src, "--to", "safetensors", "--out", src, "--force"], "is the model"),
        (["convert", src, "--to", "safetensors", "--out", tmp_path / "link", "--force"], "is the model"),
        (["convert", src, "--to", "safetensors", "--out", src / "sub"], "lies inside the model"),
        (["convert", src, "--to", "safetensors", "--out", tmp_path, "--force"], "contains the model"),
        (["finetune", src, *ft, "--out", src], "is the model"),
        (["finetune", src, *ft, "--out", data_dir], "contains the --data file"),
        (["finetune", src, *ft, "--out", data], "is the --data file"),
        (["package", cconv, "--target", "onnx", "--out", cconv, "--force"], "is the converted model"),
        (["package", cconv, "--target", "onnx", "--out", cconv / "bundle"], "lies inside the converted model"),
        (["attention", src, "hello", "--out", src / "view.html"], "lies inside the model"),
        (["attention", src, "hello", "--out", tmp_path / "v.html", "--png", src / "grid.png"], "lies inside the model"),
        (["embed", src, "--input", inp, "--output", tmp_path / "hard.jsonl", "--force"], "is the --input file"),
        (["embed", src, "--input", inp, "--output", src / "out.jsonl"], "lies inside the model"),
        (["bench", cconv, "--out", cconv, "--quick", "--backends", "torch"], "is the model"),
    ]
    for args, words in cases:
        capfd.readouterr()
        t = time.perf_counter()
        assert main([str(a) for a in args]) == 2, args
        assert words in one_line_error(capfd.readouterr().err), args
        assert time.perf_counter() - t < 30, args  # refused before any work
    inp2 = tmp_path / "x.parquet.shards" / "in.txt"  # the input inside the shards folder --force removes
    inp2.parent.mkdir()
    inp2.write_text("hello\n")
    capfd.readouterr()
    assert main(["embed", str(src), "--input", str(inp2), "--output", str(tmp_path / "x.parquet"), "--force"]) == 2
    assert "contains the --input file" in one_line_error(capfd.readouterr().err)
    assert inp2.is_file()
    assert _hash_everything(src, cconv, data_dir, inp) == before
    assert not (src / "sub").exists() and not (cconv / "bundle").exists()


def test_attention_checks_every_output_before_writing(tiny_roberta, tmp_path, capfd):
    """Item 'attention --out x.html --png x.html overwrites the page; --png into a missing folder
    leaves the HTML behind and names a temp file': both outputs checked before either is written."""
    page = tmp_path / "x.html"
    cases = [(["--png", str(page)], "same file"),
             (["--png", str(tmp_path / "missing" / "grid.png")], "does not exist"),
             (["--png", str(tmp_path)], "is a directory")]
    for extra, words in cases:
        capfd.readouterr()
        assert main(["attention", str(tiny_roberta), "hello", "--out", str(page), *extra]) == 2
        err = one_line_error(capfd.readouterr().err)
        assert words in err and ".tmp" not in err and not page.exists(), (extra, err)
    page.write_text("my page")
    os.link(page, tmp_path / "grid.png")  # the PNG path is the page under another name
    capfd.readouterr()
    assert main(["attention", str(tiny_roberta), "hello", "--out", str(page), "--png", str(tmp_path / "grid.png")]) == 2
    assert "same file" in one_line_error(capfd.readouterr().err)
    assert page.read_text() == "my page"


# =========================================================================== bad numbers train garbage

TRAINING_CASES = [
    (["--method", "lora", "--lr", "inf"], "--lr must be a positive finite number"),
    (["--method", "full", "--lr", "nan"], "--lr must be a positive finite number"),
    (["--method", "lora", "--lr", "0"], "--lr must be a positive finite number"),
    (["--method", "lora", "--dropout", "1.5"], "--dropout must be a number in [0, 1)"),
    (["--method", "lora", "--max-steps", "0"], "--max-steps must be a positive integer"),
    (["--method", "lora", "--max-steps", str(10**30)], "--max-steps must be a positive integer up to 1e+09"),
    (["--method", "lora", "--epochs", "nan"], "--epochs must be a positive number up to 1e+06"),
    (["--method", "full", "--warmup", "1"], "--warmup must be a share of the steps in [0, 1)"),
    (["--method", "full", "--warmup", "-0.1"], "--warmup must be a share of the steps in [0, 1)"),
    (["--method", "probe", "--warmup", "0.1"], "--warmup applies to freeze/lora/full"),
    (["--method", "lora", "--epochs", "1e308"], "--epochs must be a positive number up to 1e+06"),
    (["--method", "lora", "--nproc", "3", "--batch-size", "16"], None),
    (["--method", "lora", "--nproc", "100000"], "more processes than this machine can run"),
    (["--method", "probe", "--lr", "nan"], "--lr must be a positive finite number"),
    (["--method", "probe", "--dropout", "-0.5"], "--dropout must be a number in [0, 1)"),
    (["--method", "lora", "--seed", "-1"], "--seed must be an integer in [0, 2**32)"),
    (["--method", "lora", "--lora-r", "0"], "--lora-r must be a positive integer"),
    (["--method", "freeze", "--unfreeze-top", "9"], "--unfreeze-top must be in 0..2"),
]


@pytest.mark.parametrize("args,words", TRAINING_CASES)
def test_training_numbers_are_refused_before_anything_starts(tiny_roberta, tmp_path, capfd, monkeypatch, args, words):
    """Item 'bad numbers train garbage': every training number is checked before data is read,
    a worker is spawned or a step is taken (the trainer and the probe are never reached)."""
    import encoderkit.finetune as ft

    monkeypatch.setattr(ft, "_train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(ft, "_probe", lambda *a, **k: pytest.fail("the probe started"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a process was spawned"))
    if words is None:  # --nproc 3: refused for the batch split, or (on a 2-core machine) for the machine
        words = "not divisible by --nproc 3" if (os.cpu_count() or 1) >= 3 else "more processes than"
    capfd.readouterr()
    assert main(["finetune", str(tiny_roberta), "--data", str(TOPICS_TEST),
                 "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    assert words in one_line_error(capfd.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_non_finite_weights_are_never_saved(tiny_roberta, tmp_path):
    """Item '--lr inf (lora) exits 0 and writes NaN weights': a run that diverges (a finite but absurd
    learning rate) is refused with one line and nothing is written."""
    pytest.importorskip("accelerate")
    res = cli("finetune", tiny_roberta, "--data", TOPICS_TEST, "--out",
              tmp_path / "out", "--method", "full", "--lr", "1e30", "--max-steps", "3", "--batch-size", "8", "--quiet")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "non-finite weights" in one_line_error(res.stderr.decode())
    assert list(tmp_path.iterdir()) == []


def test_labels_of_mixed_types_are_refused(tiny_roberta, tmp_path, capfd):
    """Item 'labels 1 and "1" silently become two classes': a file mixing integer and string labels
    is one line naming both rows."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a cat", "label": 1}\n{"text": "a dog", "label": 0}\n{"text": "a cow", "label": "1"}\n')
    capfd.readouterr()
    assert main(["finetune", str(tiny_roberta), "--data", str(data), "--out", str(tmp_path / "o"),
                 "--method", "probe", "--quiet"]) == 2
    err = one_line_error(capfd.readouterr().err)
    assert "row 3" in err and "row 1" in err and "one type" in err


@pytest.mark.parametrize("flag,value", [("--min-cosine", "nan"), ("--min-cosine", "2"), ("--min-top1", "-1"),
                                        ("--min-top5", "inf")])
def test_gate_thresholds_are_refused_before_the_export(tiny_roberta, tmp_path, capfd, monkeypatch, flag, value):
    """Item 'gate thresholds: nan or 2 refused only after the whole export; --min-top1 -1 turns the
    gate off': refused when the options are built, before the checkpoint is even read."""
    import encoderkit.conversion as conversion

    monkeypatch.setattr(conversion, "load_checkpoint", lambda *a, **k: pytest.fail("the export started"))
    capfd.readouterr()
    assert main(["convert", str(tiny_roberta), "--to", "onnx", "--quantize", "int8", "--out", str(tmp_path / "o"),
                 flag, value, "--quiet"]) == 2
    assert flag.lstrip("-").replace("-", "_") in one_line_error(capfd.readouterr().err).replace("-", "_")
    assert not (tmp_path / "o").exists()


# =========================================================================== rows, files and streams

def _embed_job(model, inp: Path, out: Path, *extra) -> int:
    return main(["embed", str(model), "--input", str(inp), "--output", str(out), "--quiet", "--threads", "1", *extra])


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_a_zero_width_row_is_a_bad_row(tiny_bert, tmp_path, capfd, suffix):
    """Item 'a zero-width-only text with --on-error skip aborts the whole job (no file:line) and
    leaves .shards': it is a bad row like any other (skip: set aside; stop: file and line)."""
    from encoderkit.batch.io import read_output

    texts = ["a fine sentence", "\u200b\u200b", "another fine one"]
    inp = tmp_path / f"in{suffix}"
    inp.write_text("".join((json.dumps({"text": t}) if suffix == ".jsonl" else t) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    capfd.readouterr()
    assert _embed_job(tiny_bert, inp, out, "--on-error", "skip") == 0
    assert len(read_output(out)) == 2 and not (tmp_path / "out.jsonl.shards").exists()
    rejects = [json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2] and "no tokens" in rejects[0]["reason"]
    assert _embed_job(tiny_bert, inp, tmp_path / "o2.jsonl") == 2
    assert f"{inp}:2: " in one_line_error(capfd.readouterr().err)
    assert not (tmp_path / "o2.jsonl.shards").exists()


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_csv_with_a_byte_order_mark(tiny_roberta, tmp_path, capfd):
    """Item 'a CSV with a UTF-8 BOM: no column text; it has: \\ufefftext': read as utf-8-sig."""
    from encoderkit.batch.io import read_output

    inp = tmp_path / "in.csv"
    inp.write_bytes("\ufeffid,text\nr1,hello there\nr2,general kenobi\n".encode())
    out = tmp_path / "out.jsonl"
    assert _embed_job(tiny_roberta, inp, out, "--id-column", "id") == 0, capfd.readouterr().err
    assert read_output(out).column("id").to_pylist() == ["r1", "r2"]
    txt = tmp_path / "in.txt"
    txt.write_bytes("\ufeffhello there\n".encode())
    assert _embed_job(tiny_roberta, txt, tmp_path / "t.jsonl") == 0
    want = encoderkit.load(tiny_roberta).embed(["hello there"])
    np.testing.assert_allclose(read_output(tmp_path / "t.jsonl").column("embedding").to_pylist(), want, atol=1e-5)


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_jsonl_ids_keep_their_type(tiny_roberta, tmp_path, capfd):
    """Item 'JSONL ids 1 and "1" both become "1"': integer ids stay integers; a file mixing the
    two types is refused with its line (or, with skip, the odd rows set aside)."""
    from encoderkit.batch.io import read_output

    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "text": "one"}\n{"id": 2, "text": "two"}\n')
    out = tmp_path / "out.parquet"
    assert _embed_job(tiny_roberta, inp, out, "--id-column", "id") == 0
    assert read_output(out).column("id").to_pylist() == [1, 2]
    assert str(read_output(out).schema.field("id").type) == "int64"
    inp.write_text('{"id": 1, "text": "one"}\n{"id": "1", "text": "two"}\n{"id": 3, "text": "three"}\n')
    capfd.readouterr()
    assert _embed_job(tiny_roberta, inp, tmp_path / "o2.parquet", "--id-column", "id") == 2
    assert f"{inp}:2: id '1' is a string" in one_line_error(capfd.readouterr().err)
    assert _embed_job(tiny_roberta, inp, tmp_path / "o3.parquet", "--id-column", "id", "--on-error", "skip") == 0
    assert read_output(tmp_path / "o3.parquet").column("id").to_pylist() == [1, 3]


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_nothing_produced_is_an_error(tiny_roberta, tmp_path, capfd):
    """Item 'an empty input, or every row bad with skip, exits 0 with 0 rows': it says so and exits
    2; no output is written, the rejects (the reasons) are kept."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    capfd.readouterr()
    assert _embed_job(tiny_roberta, empty, tmp_path / "o.jsonl") == 2
    assert "holds no records" in one_line_error(capfd.readouterr().err)
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.shards").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": ""}\n{"nope": 1}\nnot json\n')
    assert _embed_job(tiny_roberta, bad, tmp_path / "b.jsonl", "--on-error", "skip") == 2
    assert "all 3 rows" in one_line_error(capfd.readouterr().err)
    assert not (tmp_path / "b.jsonl").exists()
    assert len((tmp_path / "b.jsonl.rejects.jsonl").read_text().splitlines()) == 3


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_malformed_json_rows_read_well(tiny_roberta, tmp_path, capfd):
    """Small item '"starting at at column"', and a JSONL row nested 100,000 deep is a bad row."""
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "It was the best of times\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    assert _embed_job(tiny_roberta, inp, tmp_path / "o.jsonl", "--on-error", "skip") == 2  # nothing good
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "o.jsonl.rejects.jsonl").read_text().splitlines()]
    assert reasons[0] == "malformed JSON (Unterminated string starting at column 10)" and "at at" not in reasons[0]
    assert reasons[1] == "malformed JSON (nested too deeply)"


def _ckpt_copy(tiny_roberta: Path, dst: Path) -> Path:
    shutil.copytree(tiny_roberta, dst, ignore=shutil.ignore_patterns("manifest.json"))
    return dst


@pytest.mark.parametrize("name", ["config.json", "special_tokens_map.json", "tokenizer.json"])
def test_huge_and_deep_json_files_are_one_line(tiny_roberta, tmp_path, capfd, monkeypatch, name):
    """Item 'a 1 GiB sparse config.json: 6.8 s and 2.3 GB RSS; nested 100,000 deep: RecursionError,
    exit 1': every JSON read of a checkpoint is bounded (tokenizer.json before tokenizers parses it)
    and nesting is one line, exit 2."""
    for kind in ("huge", "deep"):
        ckpt = _ckpt_copy(tiny_roberta, tmp_path / f"{kind}-{name}")
        if kind == "huge":
            with open(ckpt / name, "r+b") as f:
                f.truncate(1 << 30)  # sparse: no disk used
            if name == "tokenizer.json":  # refused by its size, never handed to the tokenizers library
                import tokenizers

                for attr in ("from_file", "from_str"):
                    monkeypatch.setattr(tokenizers.Tokenizer, attr, lambda *a, **k: pytest.fail("parsed whole"))
        else:
            monkeypatch.undo()
            (ckpt / name).write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
        capfd.readouterr()
        t = time.perf_counter()
        assert main(["embed", str(ckpt), "hello"]) == 2, (kind, name)
        err = one_line_error(capfd.readouterr().err)
        assert time.perf_counter() - t < 20 and name in err, (kind, err)


def test_a_deep_probe_json_is_one_line(tiny_roberta, tmp_path, capfd):
    """Bounded JSON reads: a probe directory's probe.json nested 100,000 deep."""
    d = tmp_path / "probe"
    d.mkdir()
    (d / "probe.json").write_text("[" * 100_000 + "]" * 100_000)
    capfd.readouterr()
    assert main(["classify", str(d), "hello"]) == 2
    assert "not a readable probe" in one_line_error(capfd.readouterr().err)


def _closed_stdout(*args, timeout=600) -> tuple[int, bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "encoderkit.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    proc.stdout.close()  # the reader is gone before the first line: `| head -0`
    err = proc.stderr.read()
    return proc.wait(timeout=timeout), err


def test_a_closed_stdout_is_a_quiet_exit(tiny_roberta, conv, tmp_path):
    """Item '`embed ... | head -1` and `package ... | head -1`: Broken pipe plus a traceback, exit 1':
    a quiet exit (141, nothing on stderr), as every Unix tool."""
    rc, err = _closed_stdout("embed", tiny_roberta, *[f"text {i}" for i in range(40)])
    assert rc == 141 and err == b"", err
    if "onnx" in FORMATS:
        rc, err = _closed_stdout("package", conv, "--target", "onnx", "--out", tmp_path / "b", "--quiet")
        assert rc == 141 and err == b"", err
        assert (tmp_path / "b" / "bundle.json").is_file()  # the work was done; only the report line was lost


def test_usage_errors_are_one_line(tiny_roberta, capfd):
    """Item 'argparse errors print the 4-14-line usage block': one line with the valid choices, the
    closest flag for a misspelt one."""
    cases = [(["embed", str(tiny_roberta), "x", "--pooling", "bogus"], "choose from 'mean', 'cls', 'max'"),
             (["convert", str(tiny_roberta), "--to", "onnx", "--out", "o", "--quantise", "int8"],
              "did you mean --quantize?"),
             (["attention", str(tiny_roberta), "x", "--out", "o.html", "--pair"], "expected one argument"),
             (["classify", str(tiny_roberta), "x", "--pair"], "expected at least one argument"),
             (["package"], "required")]
    for args, words in cases:
        capfd.readouterr()
        assert main(args) == 2, args
        out = capfd.readouterr()
        assert words in one_line_error(out.err) and out.out == "", (args, out.err)


# =========================================================================== small ones

def test_stale_capture_logs_are_removed(tiny_roberta, tmp_path, monkeypatch):
    """Small item 'the encoderkit-*.log files a killed run leaves are never cleaned': a log whose
    writer is gone is removed by the next command; a live process's log and other files stay."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = tmp_path / f"encoderkit-{dead}-abc123.log"
    live = tmp_path / f"encoderkit-{os.getppid()}-abc123.log"
    other = tmp_path / "encoderkit-notes.log"
    for p in (stale, live, other):
        p.write_text("x")
    assert main(["info", str(tiny_roberta), "--quiet"]) == 0
    assert not stale.exists() and live.exists() and other.exists()
    assert not list(tmp_path.glob(f"encoderkit-{os.getpid()}-*.log"))  # its own log is gone too
    # and one a kill -9 left behind is gone after the next command
    child = subprocess.Popen([sys.executable, "-m", "encoderkit.cli", "embed", str(tiny_roberta), "x"],
                             env=ENV | {"TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(f"encoderkit-{child.pid}-*.log")) and time.time() < deadline:
        time.sleep(0.05)
    child.kill()
    child.wait()
    assert list(tmp_path.glob(f"encoderkit-{child.pid}-*.log"))
    assert main(["info", str(tiny_roberta), "--quiet"]) == 0
    assert not list(tmp_path.glob(f"encoderkit-{child.pid}-*.log"))


def test_init_random_manifest_is_checked(tiny_roberta, tmp_path, capfd):
    """Small item 'init-random checkpoints' manifests are not checked (a flipped byte loads)'."""
    ckpt = tmp_path / "c"
    shutil.copytree(tiny_roberta, ckpt)
    encoderkit.load(ckpt)  # untouched: loads
    _tamper_same_size(ckpt / "model.safetensors")
    capfd.readouterr()
    assert main(["embed", str(ckpt), "hello"]) == 2
    err = one_line_error(capfd.readouterr().err)
    assert "model.safetensors: sha256 differs" in err and "delete its manifest.json" in err
    assert main(["convert", str(ckpt), "--to", "safetensors", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert not (tmp_path / "o").exists()
    (ckpt / "manifest.json").unlink()  # the user's own edited checkpoint: read as a plain one, as told
    encoderkit.load(ckpt)


def test_a_target_spelt_as_its_token_is_not_warned_about(tiny_roberta, capfd):
    """Small item "--targets ' many' warns the token is not in the vocabulary and uses it anyway"."""
    capfd.readouterr()
    assert main(["fill-mask", str(tiny_roberta), "The capital of France is <mask>.", "--targets", " many"]) == 0
    assert "warning" not in capfd.readouterr().err
    assert main(["fill-mask", str(tiny_roberta), "The capital of France is <mask>.", "--targets", " manyfold"]) == 0
    assert "is not a vocabulary token; using its first token" in capfd.readouterr().err


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_lone_surrogate_escapes_in_data_files(tiny_roberta, tmp_path, capfd):
    """Found trying again: a JSONL text or id written as the escape "\\ud800" (valid JSON, no UTF-8
    can carry it) crashed the Arrow conversion (exit 1); it is a bad row like any other, and in
    training data one line naming the row. A FIFO as --data is refused instead of blocking."""
    from encoderkit.batch.io import read_output

    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad \\ud800 text"}\n'
                   '{"id": "c\\udfff", "text": "fine too"}\n{"id": "d", "text": "last"}\n')
    capfd.readouterr()
    assert _embed_job(tiny_roberta, inp, tmp_path / "o.jsonl", "--id-column", "id") == 2
    assert f"{inp}:2: text is not valid Unicode" in one_line_error(capfd.readouterr().err)
    assert _embed_job(tiny_roberta, inp, tmp_path / "s.jsonl", "--id-column", "id", "--on-error", "skip") == 0
    assert read_output(tmp_path / "s.jsonl").column("id").to_pylist() == ["a", "d"]
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a cat", "label": "x"}\n{"text": "a \\ud800 dog", "label": "y"}\n')
    capfd.readouterr()
    assert main(["finetune", str(tiny_roberta), "--data", str(data), "--out", str(tmp_path / "f"),
                 "--method", "probe", "--quiet"]) == 2
    assert "row 2: column 'text' is not valid Unicode" in one_line_error(capfd.readouterr().err)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert main(["finetune", str(tiny_roberta), "--data", str(fifo), "--out", str(tmp_path / "f"),
                 "--method", "probe", "--quiet"]) == 2
    assert "not a regular file" in one_line_error(capfd.readouterr().err)
    # every task's reader: a FIFO would block the corpus / tagged / SQuAD read forever
    for task, suffix in (("mlm", ".txt"), ("mlm", ".jsonl"), ("token-classification", ".jsonl"),
                         ("question-answering", ".jsonl")):
        pipe = tmp_path / f"pipe-{task}{suffix}"
        os.mkfifo(pipe)
        assert main(["finetune", str(tiny_roberta), "--task", task, "--data", str(pipe), "--out",
                     str(tmp_path / "f"), "--method", "full", "--quiet"]) == 2, (task, suffix)
        assert "not a regular file" in one_line_error(capfd.readouterr().err), (task, suffix)


@pytest.mark.skipif(not pyarrow, reason="batch jobs need pyarrow")
def test_a_device_or_fifo_is_never_written_over(tiny_roberta, tmp_path, capfd):
    """Found trying again: an output that is a FIFO (as /dev/null is a device) was renamed away and
    replaced (`convert --out /dev/null --force` as root would remove /dev/null); every writer refuses
    a target that is not a regular file or a directory, and leaves it in place."""
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    inp = tmp_path / "in.txt"
    inp.write_text("hello\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(fifo)
    for args in (["convert", str(tiny_roberta), "--to", "safetensors", "--out", str(fifo), "--force"],
                 ["attention", str(tiny_roberta), "hello", "--out", str(fifo)],
                 ["attention", str(tiny_roberta), "hello", "--out", str(tmp_path / "v.html"), "--png", str(fifo)],
                 ["embed", str(tiny_roberta), "--input", str(inp), "--output", str(link), "--force"],
                 ["init-random", str(fifo), "--force"]):
        capfd.readouterr()
        assert main(args) == 2, args
        assert "not a regular file or directory" in one_line_error(capfd.readouterr().err), args
        assert fifo.is_fifo() and link.is_symlink()
    assert not (tmp_path / "v.html").exists()
