"""`encoderkit package`: bundles for onnx, node, tflite, triton and tf-serving, each checked by
running its own runner (in a fresh venv without encoderkit/torch/transformers for onnx) against
encoderkit's backends and the torch reference."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

import onnxruntime  # noqa: F401  (the onnx extra is part of `make test`: missing = failing, never skipped)

import encoderkit  # noqa: E402
from encoderkit.cli import main as cli_main  # noqa: E402
from encoderkit.conversion import convert  # noqa: E402
from encoderkit.deploy import TARGETS, package  # noqa: E402
from encoderkit.core.errors import ArtifactError, InputError, UnknownNameError  # noqa: E402
from encoderkit.storage.random_init import init_random  # noqa: E402
from encoderkit.core.tokenization import TextTokenizer, load_tokenizer  # noqa: E402
from parity_tests.helpers import assert_cosine_above_floor  # noqa: E402

pytestmark = pytest.mark.xdist_group("deploy")

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Zürich's café — crème brûlée, 東京 🍣 ✓ naïve", "Short."]
INT8_COSINE = encoderkit.backends.catalog.backend("onnx-int8").tolerance.min_cosine  # and above the floor
INT8_TOP1 = encoderkit.backends.catalog.backend("onnx-int8").tolerance.min_top1


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random RoBERTa (byte-level BPE) converted to safetensors, onnx (+int8) and tf."""
    root = tmp_path_factory.mktemp("deploy-tiny")
    init_random(root / "ckpt", "tiny", seed=3)
    convert(root / "ckpt", ["safetensors", "onnx", "tf"], root / "conv", quantize="int8")
    return root / "conv"


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """The real all-MiniLM-L6-v2 (BertModel, WordPiece, no MLM head), safetensors + onnx (+int8)."""
    out = tmp_path_factory.mktemp("deploy-minilm") / "conv"
    convert("minilm", ["safetensors", "onnx"], out, quantize="int8")
    return out


@pytest.fixture(scope="module")
def fresh_python(tiny, tmp_path_factory):
    """A new venv with exactly what an onnx bundle's own requirements.txt pins (from the package
    index). A failed install fails the tests that need it: it is part of what users run."""
    root = tmp_path_factory.mktemp("fresh-venv")
    req = package(tiny, "onnx", root / "bundle", tasks="embed")["files"]
    assert "requirements.txt" in req
    d = root / "venv"
    venv.EnvBuilder(with_pip=True).create(d)
    py = d / "bin" / "python"
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(root / "bundle" / "requirements.txt")],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"pip install -r requirements.txt into a fresh venv failed: {res.stderr[-2000:]}"
    return py


def _run(py, bundle: Path, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([str(py), str(bundle / "run.py"), *args], capture_output=True, text=True, env=env,
                         cwd=bundle.parent)
    if check:
        assert res.returncode == 0, res.stderr[-2000:]
    return res


def _cli_json(capfd, *argv) -> object:
    capfd.readouterr()
    assert cli_main(list(argv)) == 0
    return json.loads(capfd.readouterr().out)


def _same_fill_mask(got, want, atol):
    """Equal JSON shape and strings; scores within atol."""
    assert len(got) == len(want)
    for g_text, w_text in zip(got, want):
        assert len(g_text) == len(w_text)
        for g_mask, w_mask in zip(g_text, w_text):
            assert [set(p) for p in g_mask] == [{"token", "token_str", "score", "sequence"}] * len(w_mask)
            assert [p["token"] for p in g_mask] == [p["token"] for p in w_mask]
            assert [p["token_str"] for p in g_mask] == [p["token_str"] for p in w_mask]
            assert [p["sequence"] for p in g_mask] == [p["sequence"] for p in w_mask]
            assert np.abs(np.array([p["score"] for p in g_mask]) - [p["score"] for p in w_mask]).max() <= atol


# ----------------------------------------------------------------------------- onnx target
def test_fresh_venv_has_no_encoderkit_torch_transformers(fresh_python):
    code = ("import importlib.util as u, sys; "
            "missing = [m for m in ('encoderkit', 'torch', 'transformers') if u.find_spec(m) is None]; "
            "import onnxruntime, tokenizers, numpy; print(','.join(missing))")
    res = subprocess.run([str(fresh_python), "-c", code], capture_output=True, text=True, cwd=fresh_python.parent,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "encoderkit,torch,transformers"


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_onnx_bundle_tiny_roberta_in_fresh_venv(tiny, fresh_python, tmp_path, capfd, quantize):
    out = tmp_path / "bundle"
    bundle = package(tiny, "onnx", out, quantize=quantize)
    assert bundle["tasks"] == ["embed", "fill-mask"] and bundle["quantize"] == quantize
    assert set(bundle["files"]) >= {"model.onnx", "head.onnx", "tokenizer.json", "run.py", "requirements.txt"}
    assert bundle["footprint"]["peak_rss_mb"] > 0 and bundle["footprint"]["bundle_bytes"] > 0
    assert "self-test passed" in _run(fresh_python, out, "--self-test").stdout

    backend = "onnx" if quantize == "none" else "onnx-int8"
    got = np.array(json.loads(_run(fresh_python, out, "embed", *TEXTS, "--json").stdout), dtype=np.float32)
    want = np.array(_cli_json(capfd, "embed", str(tiny), *TEXTS, "--backend", backend, "--json"), dtype=np.float32)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5  # the same graph as encoderkit's backend
    ref = encoderkit.load(tiny, "torch").embed(TEXTS)
    if quantize == "none":
        assert np.abs(got - ref).max() <= 1e-4
    else:
        assert_cosine_above_floor(got, ref, INT8_COSINE, "onnx int8 bundle")

    masked = ["The capital of France is <mask>.", "Zürich <mask> café and <mask> 東京."]
    got = json.loads(_run(fresh_python, out, "fill-mask", *masked, "--top-k", "3", "--json").stdout)
    want = _cli_json(capfd, "fill-mask", str(tiny), *masked, "--backend", backend, "--top-k", "3", "--json")
    _same_fill_mask(got, want, 1e-5)


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_onnx_bundle_minilm_in_fresh_venv(minilm, fresh_python, tmp_path, capfd, quantize):
    out = tmp_path / "bundle"
    bundle = package(minilm, "onnx", out, quantize=quantize, pooling="mean", normalize=True)
    assert bundle["tasks"] == ["embed"] and bundle["graphs"]["head"] is None
    assert bundle["pooling"] == {"default": "mean", "normalize": True, "in_graph": True}
    assert "self-test passed" in _run(fresh_python, out, "--self-test").stdout
    backend = "onnx" if quantize == "none" else "onnx-int8"
    got = np.array(json.loads(_run(fresh_python, out, "embed", *TEXTS, "--json").stdout), dtype=np.float32)
    want = np.array(_cli_json(capfd, "embed", str(minilm), *TEXTS, "--backend", backend, "--normalize", "--json"))
    assert np.abs(got - want).max() <= 1e-5
    ref = encoderkit.load(minilm, "torch").embed(TEXTS, normalize=True)
    if quantize == "none":
        assert np.abs(got - ref).max() <= 1e-4
    else:
        assert_cosine_above_floor(got, ref, INT8_COSINE, "minilm int8 bundle")
    # the runner can still pool differently from the graph's default, in numpy
    got_cls = np.array(json.loads(_run(fresh_python, out, "embed", *TEXTS, "--pooling", "cls", "--no-normalize",
                                       "--json").stdout))
    want_cls = encoderkit.load(minilm, backend).embed(TEXTS, pooling="cls")
    assert np.abs(got_cls - want_cls).max() <= 1e-5
    res = _run(fresh_python, out, "fill-mask", "a [MASK] here", "--json", check=False)
    assert res.returncode == 2 and "no masked-LM head" in res.stderr


@pytest.mark.parametrize("pooling,normalize", [("mean", False), ("cls", True), ("max", False)])
def test_in_graph_pooling_equals_embed(tiny, tmp_path, pooling, normalize):
    import onnxruntime as ort

    out = tmp_path / "bundle"
    package(tiny, "onnx", out, pooling=pooling, normalize=normalize, tasks="embed")
    rt = encoderkit.load(tiny, "onnx")
    ids = rt.tokenizer.encode(TEXTS)  # padded together: pooling must ignore the padding
    n = max(map(len, ids))
    input_ids = np.array([x + [rt.spec.pad_token_id] * (n - len(x)) for x in ids], dtype=np.int64)
    mask = np.array([[1] * len(x) + [0] * (n - len(x)) for x in ids], dtype=np.int64)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["last_hidden_state", "sentence_embedding"]
    (got,) = sess.run(["sentence_embedding"], {"input_ids": input_ids, "attention_mask": mask})
    want = rt.embed(TEXTS, pooling=pooling, normalize=normalize)
    assert got.shape == (len(TEXTS), rt.spec.hidden_size)
    assert np.abs(got - want).max() <= 1e-5
    if normalize:
        assert np.abs(np.linalg.norm(got, axis=1) - 1).max() <= 1e-5


def _perturb_onnx_weights(bundle: Path, delta: float = 0.05) -> str:
    """A wrong model with a right hash: one weight of model.onnx shifted, bundle.json's sha256 and
    size of it updated (what a packaging bug would ship)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    hidden = json.loads((bundle / "bundle.json").read_text())["model"]["hidden_size"]
    init = next(t for t in model.graph.initializer
                if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [hidden])
    arr = numpy_helper.to_array(init).copy()
    arr[0] += delta
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(bundle / "model.onnx"))
    info = json.loads((bundle / "bundle.json").read_text())
    from encoderkit.storage.files import sha256_file

    info["files"]["model.onnx"] = {"sha256": sha256_file(bundle / "model.onnx"),
                                   "bytes": (bundle / "model.onnx").stat().st_size}
    (bundle / "bundle.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return init.name


@pytest.mark.parametrize("optimize", [False, True], ids=["python", "python-O"])
def test_self_test_fails_on_a_wrong_model_with_a_right_hash(tiny, tmp_path, optimize):
    """--self-test is what a user runs to trust a bundle: it must fail when the model's numbers are
    wrong, also under `python -O` (which strips assert statements)."""
    out = tmp_path / "bundle"
    package(tiny, "onnx", out)
    opt = ["-O"] if optimize else []
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}

    def self_test():
        return subprocess.run([sys.executable, *opt, str(out / "run.py"), "--self-test"], capture_output=True,
                              text=True, env=env, cwd=tmp_path)

    ok = self_test()
    assert ok.returncode == 0 and "self-test passed" in ok.stdout, ok.stderr[-2000:]
    name = _perturb_onnx_weights(out)
    bad = self_test()
    assert bad.returncode == 1, (name, bad.stdout, bad.stderr[-2000:])
    assert "self-test passed" not in bad.stdout
    assert bad.stderr.strip().splitlines()[-1].startswith("self-test FAILED: embed: max |diff| "), bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr


def test_tampered_model_is_refused_naming_the_file(tiny, tmp_path):
    out = tmp_path / "bundle"
    package(tiny, "onnx", out, tasks="embed")
    data = bytearray((out / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (out / "model.onnx").write_bytes(bytes(data))
    res = _run(sys.executable, out, "embed", "hello", check=False)
    assert res.returncode == 2
    assert "model.onnx: sha256 differs from bundle.json" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("which", ["roberta-bpe", "bert-wordpiece"])
def test_bundle_tokenizer_gives_encoderkit_ids(tiny, minilm, tmp_path, which):
    conv = tiny if which == "roberta-bpe" else minilm
    out = tmp_path / "bundle"
    bundle = package(conv, "onnx", out, tasks="embed", max_length=40)
    long_text = "Zürich café naïve 東京 🍣 " + "a fairly long sentence that goes on " * 20
    texts = TEXTS + ["  spaces\tand\nnewlines  ", "ÀÉÎÕÜ ß ﬁ ŉ", long_text]
    ids = json.loads(_run(sys.executable, out, "tokenize", *texts, "--truncate").stdout)
    tok = TextTokenizer(load_tokenizer(conv / "onnx"), 40, bundle["mask_token"])
    assert ids == tok.encode(texts, truncate=True)
    assert len(ids[-1]) == 40  # truncated, specials kept
    res = _run(sys.executable, out, "tokenize", long_text, check=False)  # no --truncate: refused
    assert res.returncode == 2 and "more than the bundle's 40" in res.stderr


def test_option_errors(tiny, minilm, tmp_path):
    with pytest.raises(UnknownNameError, match="choose one of: onnx, node, tflite, triton, tf-serving, web"):
        package(tiny, "coreml", tmp_path / "x")
    with pytest.raises(InputError, match="no sequence-classification head; fine-tune one"):
        package(tiny, "onnx", tmp_path / "x", tasks="classify")
    with pytest.raises(InputError, match="no masked-LM head"):
        package(minilm, "onnx", tmp_path / "x", tasks="fill-mask")
    with pytest.raises(InputError, match="exceeds the model's"):
        package(tiny, "onnx", tmp_path / "x", max_length=10_000)
    with pytest.raises(InputError, match="--normalize goes with --pooling"):
        package(tiny, "onnx", tmp_path / "x", normalize=True)
    with pytest.raises(ArtifactError, match="no 'tf' export"):
        package(minilm, "tf-serving", tmp_path / "x")
    with pytest.raises(ArtifactError, match="not an `encoderkit convert` output"):
        package(tmp_path, "onnx", tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_cli_package(tiny, tmp_path, capfd):
    import onnxruntime as ort

    out = tmp_path / "b"
    assert cli_main(["package", str(tiny), "--target", "onnx", "--out", str(out), "--tasks", "embed", "--ort",
                     "--quiet"]) == 0
    printed = capfd.readouterr().out
    assert f"wrote {out} (onnx, none" in printed and "self-test: token ids: identical" in printed
    # --ort: ONNX Runtime Mobile's format of the same encoder gives the same hidden states
    feeds = {"input_ids": np.array([[0, 5, 9, 2]], np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    a, b = (ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            for f in ("model.onnx", "model.ort"))
    assert np.abs(a - b).max() <= 1e-5
    assert cli_main(["package", str(tiny), "--target", "onnx", "--out", str(out)]) == 2  # exists, no --force
    assert "already exists" in capfd.readouterr().err


# ----------------------------------------------------------------------------- node target
@pytest.fixture(scope="module")
def npm_cache(tmp_path_factory):
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (apt-get install nodejs npm)")
    return tmp_path_factory.mktemp("npm-cache")


def _npm_install(bundle: Path, cache: Path) -> None:
    # --ignore-scripts: onnxruntime-node's postinstall downloads CUDA binaries from outside the
    # registry; its CPU binaries ship in the package. A failed install is a failure: it is what a
    # user of the bundle runs.
    res = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", str(cache)],
                         cwd=bundle, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"npm install of the node bundle failed: {res.stderr[-2000:]}"


def _node(bundle: Path, *args, check=True):
    res = subprocess.run(["node", str(bundle / "run.mjs"), *args], capture_output=True, text=True)
    if check:
        assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.mark.parametrize("which", ["roberta-bpe", "bert-wordpiece"])
def test_node_runner_matches_python_runner(tiny, minilm, npm_cache, tmp_path, which):
    conv = tiny if which == "roberta-bpe" else minilm
    out = tmp_path / "bundle"
    bundle = package(conv, "node", out)
    assert json.loads((out / "package.json").read_text())["dependencies"]["onnxruntime-node"] == "1.30.0"
    _npm_install(out, npm_cache)
    assert "self-test passed" in _node(out, "--self-test").stdout

    long_text = "Zürich café 東京 " + "a long text that needs cutting " * 120
    texts = TEXTS + ["ΣΊΣΥΦΟΣ Σ ΟΔΟΣ", long_text]  # Greek: JS lowercases a word-final Σ to ς, Python to σ
    ids_js = json.loads(_node(out, "tokenize", *texts, "--truncate").stdout)
    ids_py = json.loads(_run(sys.executable, out, "tokenize", *texts, "--truncate").stdout)
    assert ids_js == ids_py
    assert len(ids_js[-1]) == bundle["max_length"]

    e_js = np.array(json.loads(_node(out, "embed", *texts, "--truncate", "--json").stdout))
    e_py = np.array(json.loads(_run(sys.executable, out, "embed", *texts, "--truncate", "--json").stdout))
    assert e_js.shape == e_py.shape and np.abs(e_js - e_py).max() <= 1e-4
    e_js = np.array(json.loads(_node(out, "embed", *TEXTS, "--pooling", "max", "--normalize", "--json").stdout))
    e_py = np.array(json.loads(_run(sys.executable, out, "embed", *TEXTS, "--pooling", "max", "--normalize",
                                    "--json").stdout))
    assert np.abs(e_js - e_py).max() <= 1e-4
    if bundle["graphs"]["head"]:
        masked = ["The capital of France is <mask>.", "Zürich <mask> café and <mask> 東京."]
        got = json.loads(_node(out, "fill-mask", *masked, "--top-k", "4", "--json").stdout)
        want = json.loads(_run(sys.executable, out, "fill-mask", *masked, "--top-k", "4", "--json").stdout)
        _same_fill_mask(got, want, 1e-4)

    data = bytearray((out / "model.onnx").read_bytes())
    data[-10] ^= 0x01
    (out / "model.onnx").write_bytes(bytes(data))
    res = _node(out, "embed", "hello", check=False)
    assert res.returncode == 2 and "model.onnx: sha256 differs from bundle.json" in res.stderr


# ----------------------------------------------------------------------------- tflite target
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_tflite_bundle_runs_on_litert_alone(tiny, tmp_path, quantize):
    import ai_edge_litert  # noqa: F401  (the deploy extra is part of `make test`)

    out = tmp_path / "bundle"
    bundle = package(tiny, "tflite", out, quantize=quantize)
    assert bundle["engine"] == "litert" and bundle["tflite"]["sequence_length"] == "dynamic"
    # The runner in a process where TensorFlow cannot be imported at all.
    code = ("import sys, runpy; sys.modules['tensorflow'] = None; sys.argv = ['run.py', *sys.argv[1:]]; "
            "runpy.run_path('run.py', run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args):
        res = subprocess.run([sys.executable, "-c", code, *args], cwd=out, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    assert "self-test passed" in run("--self-test")
    got = np.array(json.loads(run("embed", *TEXTS, "--json")), dtype=np.float32)
    ref = encoderkit.load(tiny, "torch").embed(TEXTS)
    if quantize == "none":
        assert np.abs(got - encoderkit.load(tiny, "tf").embed(TEXTS)).max() <= 1e-4
        assert np.abs(got - ref).max() <= 1e-4
        masked = ["The capital of France is <mask>.", "Zürich <mask> café and <mask> 東京."]
        want = encoderkit.load(tiny, "tf").fill_mask(masked, top_k=3)
        _same_fill_mask(json.loads(run("fill-mask", *masked, "--top-k", "3", "--json")), want, 1e-4)
    else:
        assert_cosine_above_floor(got, ref, INT8_COSINE, "tflite int8 bundle")


# ----------------------------------------------------------------------------- serving layouts
@pytest.fixture(scope="module")
def triton_model_config(tmp_path_factory):
    """Triton's own ModelConfig protobuf class, from the tritonclient wheel.

    Installed without dependencies into a temp dir and loaded by path: tritonclient's grpc extra
    pins protobuf 6 and ml_dtypes < 0.6, which would downgrade TensorFlow's in this venv; the
    generated model_config_pb2 itself loads with the installed protobuf.
    """
    import importlib.util

    d = tmp_path_factory.mktemp("tritonclient")
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(d),
                          "tritonclient"], capture_output=True, text=True)
    assert res.returncode == 0, f"cannot pip install tritonclient: {res.stderr[-2000:]}"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2",
                                                  d / "tritonclient" / "grpc" / "model_config_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig


def test_triton_layout_parses_with_tritons_protobuf(tiny, tmp_path, triton_model_config):
    import onnx
    from google.protobuf import text_format

    out = tmp_path / "repo"
    bundle = package(tiny, "triton", out, pooling="mean", name="tiny-enc")
    assert bundle["triton"]["models"] == ["tiny-enc", "tiny-enc-head"]
    h = bundle["model"]["hidden_size"]
    for name in bundle["triton"]["models"]:
        cfg = text_format.Parse((out / name / "config.pbtxt").read_text(), triton_model_config())
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
        assert cfg.max_batch_size == 32 and cfg.HasField("dynamic_batching")
        graph = onnx.load(str(out / name / "1" / "model.onnx"), load_external_data=False).graph
        assert [i.name for i in cfg.input] == [i.name for i in graph.input]
        assert [o.name for o in cfg.output] == [o.name for o in graph.output]
    enc = text_format.Parse((out / "tiny-enc" / "config.pbtxt").read_text(), triton_model_config())
    assert [list(o.dims) for o in enc.output] == [[-1, h], [h]]
    assert [list(i.dims) for i in enc.input] == [[-1], [-1]]
    assert "tritonserver --model-repository=/models" in (out / "README.md").read_text()
    assert "self-test passed" in _run(sys.executable, out, "--self-test").stdout


def test_tf_serving_layout(tiny, tmp_path):
    out = tmp_path / "serving"
    bundle = package(tiny, "tf-serving", out, name="tiny")
    assert (out / "tiny" / "1" / "saved_model.pb").is_file()
    config = (out / "models.config").read_text()
    assert 'name: "tiny"' in config and 'base_path: "/models/tiny"' in config
    cli = Path(sys.executable).with_name("saved_model_cli")
    res = subprocess.run([str(cli), "show", "--all", "--dir", str(out / "tiny" / "1")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1000:]
    for sig in ("serving_default", "fill_mask", "hidden_states", "attentions"):
        assert f"signature_def['{sig}']" in res.stdout
    assert "inputs['input_ids'] tensor_info" in res.stdout and "dtype: DT_INT64" in res.stdout
    assert "outputs['last_hidden_state'] tensor_info" in res.stdout
    assert bundle["self_test"][0].startswith("token ids: identical")
    assert any(line.startswith("embed:") for line in bundle["self_test"])


def test_every_target_has_a_test():  # web: tests/test_deploy_web.py
    assert set(TARGETS) == {"onnx", "node", "tflite", "triton", "tf-serving", "web"}


# ----------------------------------------------------------------------------- classify
CLASSIFY_TEXTS = ["The striker scored twice in the second half.", "Add the garlic once the onions turn golden.",
                  "Restart your router if the wifi keeps dropping.", "Zürich café 東京 🍣", "ok"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny BERT fine-tuned for topic classification (full, 6 steps; see tests/test_classify.py),
    converted to safetensors + onnx (+int8)."""
    from encoderkit.finetune import TOPICS_TEST, TOPICS_TRAIN, finetune

    root = tmp_path_factory.mktemp("deploy-cls")
    init_random(root / "base", "tiny", arch="bert", seed=3)
    finetune(root / "base", TOPICS_TRAIN, root / "tuned", method="full", eval_data=TOPICS_TEST, max_steps=6, lr=5e-3,
             batch_size=16, quiet=True)
    convert(root / "tuned", ["safetensors", "onnx"], root / "conv", quantize="int8")
    return root / "conv"


def _same_classes(got, want, atol):
    """Equal JSON shape and labels; scores within atol (the max |diff| in the message)."""
    assert [[set(p) for p in row] for row in got] == [[{"label", "score"}] * len(row) for row in want]
    assert [[p["label"] for p in row] for row in got] == [[p["label"] for p in row] for row in want]
    diff = np.abs(np.array([[p["score"] for p in row] for row in got])
                  - np.array([[p["score"] for p in row] for row in want])).max()
    assert diff <= atol, f"classify scores: max |diff| {diff:.3g} > {atol:g}"


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_classify_in_onnx_bundle_equals_encoderkit_classify(classifier, tmp_path, capfd, quantize):
    out = tmp_path / "bundle"
    bundle = package(classifier, "onnx", out, quantize=quantize)
    labels = list(encoderkit.load(classifier, "torch").spec.labels)
    assert bundle["tasks"] == ["embed", "classify"] and bundle["model"]["labels"] == labels
    assert bundle["graphs"]["classifier"] == "classifier.onnx" and len(bundle["probes"]["classify"]) == 3
    assert any(line.startswith("classify: 3 probes") for line in bundle["self_test"])
    backend = "onnx" if quantize == "none" else "onnx-int8"
    got = json.loads(_run(sys.executable, out, "classify", *CLASSIFY_TEXTS, "--top-k", "3", "--json").stdout)
    want = _cli_json(capfd, "classify", str(classifier), *CLASSIFY_TEXTS, "--backend", backend, "--top-k", "3", "--json")
    _same_classes(got, want, 1e-5)  # the same graphs as encoderkit's backend
    ref = encoderkit.load(classifier, "torch").classify(CLASSIFY_TEXTS, top_k=None)
    got_all = json.loads(_run(sys.executable, out, "classify", *CLASSIFY_TEXTS, "--top-k", str(len(labels)),
                              "--json").stdout)
    if quantize == "none":
        _same_classes(got_all, ref, 1e-4)
    else:  # label agreement, the registry's int8 top-1 bound
        agree = np.mean([g[0]["label"] == r[0]["label"] for g, r in zip(got_all, ref)])
        assert agree >= INT8_TOP1, f"label agreement {agree:.2f} < {INT8_TOP1}"
    one = json.loads(_run(sys.executable, out, "classify", CLASSIFY_TEXTS[0], "--json").stdout)
    assert len(one) == 1 and len(one[0]) == 1  # default top_k 1, as `encoderkit classify`
    res = _run(sys.executable, out, "classify", "   ", check=False)
    assert res.returncode == 2 and res.stderr.strip() == "error: texts[0] is empty"


def test_classify_in_node_and_triton_bundles(classifier, npm_cache, tmp_path):
    out = tmp_path / "node"
    package(classifier, "node", out)
    _npm_install(out, npm_cache)
    assert "classify: 3 probes" in _node(out, "--self-test").stdout
    got = json.loads(_node(out, "classify", *CLASSIFY_TEXTS, "--top-k", "2", "--json").stdout)
    want = json.loads(_run(sys.executable, out, "classify", *CLASSIFY_TEXTS, "--top-k", "2", "--json").stdout)
    _same_classes(got, want, 1e-4)
    res = _node(out, "classify", "ok", "--top-k", "0", check=False)
    assert res.returncode == 2 and "top_k must be a positive integer" in res.stderr

    repo = tmp_path / "triton"
    bundle = package(classifier, "triton", repo, name="topics")
    assert bundle["triton"]["models"] == ["topics", "topics-classifier"]
    config = (repo / "topics-classifier" / "config.pbtxt").read_text()
    assert 'name: "hidden"' in config and 'name: "logits"' in config and f"dims: [ {len(bundle['model']['labels'])} ]" in config
    assert "classify: 3 probes" in _run(sys.executable, repo, "--self-test").stdout


def test_classify_only_where_a_head_and_a_runner_are(classifier, tiny, tmp_path):
    from encoderkit.deploy.common import Converted, PackageOptions, plan

    def tasks(conv, target, asked=None):
        opts = PackageOptions.parse(target=target, quantize="none", tasks=asked, max_length=None, pooling=None,
                                    normalize=False, ort_format=False, name=None)
        return plan(Converted.open(conv), opts).tasks

    assert tasks(classifier, "onnx") == ("embed", "classify")  # default: every task the model supports
    assert tasks(classifier, "tflite") == ("embed",)  # no classification head in TFLite exports yet
    with pytest.raises(InputError, match="packaged for the ONNX-based targets"):
        tasks(classifier, "tf-serving", "embed,classify")
    assert tasks(tiny, "web") == ("embed", "fill-mask")
