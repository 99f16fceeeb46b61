"""Token-level heads as records (the proof that a new head and a new task are a record and a module):
named entities with the semantics of transformers' pipeline("token-classification") (every
aggregation strategy) and extractive QA with those of transformers 4.57's
pipeline("question-answering") (long contexts in several windows, unanswerable questions), on tiny
random RoBERTa and BERT whose heads are scaled so their predictions are confident (random heads
give near-ties that any float noise flips), converted to every format and run on every backend."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.backends.catalog import BACKENDS, installed_backends
from encoderkit.backends.loading import available_backends
from encoderkit.cli import main
from encoderkit.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
FP32 = [b for b in installed_backends() if not BACKENDS[b].quantized and not BACKENDS[b].pickle]
QUANTIZED = [b for b in installed_backends() if BACKENDS[b].quantized]
NER_TEXTS = ["Ada Lovelace met Charles Babbage in London in 1833.",
             "Zoë Müller flew from São Paulo to Zürich with   three colleagues.",
             "unbelievably, the Anglo-Saxon chronicles mention Æthelred's reign twice",
             "东京 is the capital; Kraków and Łódź are in Poland."]
CONTEXT = ("The Analytical Engine was a proposed mechanical general-purpose computer designed by the English "
           "mathematician Charles Babbage. Ada Lovelace wrote the first algorithm intended for it in 1843, "
           "and she is often regarded as the first computer programmer.")
QUESTIONS = ["Who designed the Analytical Engine?", "When did Ada Lovelace write the first algorithm?",
             "What is Lovelace often regarded as?"]


def _peaked(root: Path, head: str, arch: str, seed: int, scale: float) -> Path:
    """A tiny random checkpoint with ``head`` whose head weights are scaled up (confident answers)."""
    from safetensors.numpy import load_file, save_file

    from encoderkit.storage.manifest import write_manifest
    from encoderkit.storage.random_init import init_random

    out = root / f"{arch}-{head}"
    init_random(out, "tiny", arch=arch, seed=seed, head=head)
    state = load_file(str(out / "model.safetensors"))
    name = "classifier.weight" if head == "token-classification" else "qa_outputs.weight"
    state[name] = state[name] * np.float32(scale)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    manifest = json.loads((out / "manifest.json").read_text())
    write_manifest(out, {k: v for k, v in manifest.items() if k not in ("files", "encoderkit_manifest")})
    return out


@pytest.fixture(scope="module", params=["roberta", "bert"])
def ner_model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"ner-{request.param}")
    ckpt = _peaked(root, "token-classification", request.param, seed=11, scale=40.0)
    encoderkit.convert(ckpt, "all", root / "conv", quantize="int8")
    return request.param, ckpt, root / "conv"


@pytest.fixture(scope="module", params=["roberta", "bert"])
def qa_model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"qa-{request.param}")
    ckpt = _peaked(root, "question-answering", request.param, seed=12, scale=40.0)
    encoderkit.convert(ckpt, "all", root / "conv", quantize="int8")
    return request.param, ckpt, root / "conv"


def _same_entities(got: list, want: list, what: str, atol: float = 1e-4) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} texts vs {len(want)}"
    for t, (g, w) in enumerate(zip(got, want)):
        strip = lambda xs: [{k: v for k, v in x.items() if k != "score"} for x in xs]  # noqa: E731
        assert strip(g) == strip(w), f"{what}: text {t}:\n{strip(g)}\n!=\n{strip(w)}"
        diff = max([abs(a["score"] - float(b["score"])) for a, b in zip(g, w)], default=0.0)
        assert diff <= atol, f"{what}: text {t}: max score |diff| {diff:.3g} > {atol:g}"


# --------------------------------------------------------------------------- ner
@pytest.mark.parametrize("aggregation", ["none", "simple", "first", "average", "max"])
def test_ner_equals_the_pipeline(ner_model, aggregation):
    import warnings

    from transformers import pipeline

    arch, ckpt, _ = ner_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tokenizer does not support real words" (byte-level BPE)
        pipe = pipeline("token-classification", model=str(ckpt), aggregation_strategy=aggregation, device="cpu")
        want = [pipe(t) for t in NER_TEXTS]
    got = encoderkit.load(ckpt).ner(NER_TEXTS, aggregation=aggregation)  # every task is a method
    assert sum(len(x) for x in want) > 3, "the fixture's head predicts entities"  # not vacuous
    _same_entities(got, want, f"{arch} {aggregation}")
    for text, entities in zip(NER_TEXTS, got):  # offsets point into the original text
        for e in entities:
            assert 0 <= e["start"] <= e["end"] <= len(text)


@pytest.mark.parametrize("backend", FP32[1:])
def test_ner_is_the_same_on_every_backend(ner_model, backend):
    from encoderkit.tasks import TASKS

    _, _, conv = ner_model
    ner = TASKS["ner"]
    want = ner.run(encoderkit.load(conv, "torch"), NER_TEXTS, aggregation="simple")
    got = ner.run(encoderkit.load(conv, backend), NER_TEXTS, aggregation="simple")
    _same_entities(got, want, backend, atol=BACKENDS[backend].tolerance.atol)


def test_ner_quantized_tags_mostly_agree(ner_model):
    from encoderkit.tasks import TASKS

    _, _, conv = ner_model
    want = TASKS["ner"].run(encoderkit.load(conv, "torch"), NER_TEXTS, aggregation="none")
    quantized = [b for b in available_backends(conv) if BACKENDS[b].quantized]
    assert set(quantized) == {b for b in QUANTIZED if BACKENDS[b].variant in ("int8", None)}  # int8s, torch-bf16
    for b in quantized:
        got = TASKS["ner"].run(encoderkit.load(conv, b), NER_TEXTS, aggregation="none")
        pairs = [(x["index"], x["entity"]) for xs in got for x in xs]
        ref = [(x["index"], x["entity"]) for xs in want for x in xs]
        agree = len(set(pairs) & set(ref)) / max(len(set(pairs) | set(ref)), 1)
        assert agree >= 0.9, f"{b}: token tags agree on {agree:.2f} of the tokens"


def test_ner_cli_json_batch_and_errors(ner_model, tmp_path, capfd):
    arch, ckpt, conv = ner_model
    assert main(["ner", str(conv), NER_TEXTS[0], "--aggregation", "first", "--json", "--backend", "onnx"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert out and all({"entity_group", "score", "word", "start", "end"} == set(e) for e in out[0])
    assert main(["ner", str(conv), NER_TEXTS[1]]) == 0
    text_out = capfd.readouterr().out
    assert text_out.startswith(NER_TEXTS[1])
    # a file in, a file out: the entities column
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(NER_TEXTS)))
    assert main(["ner", str(conv), "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--id-column", "id",
                 "--aggregation", "simple", "--quiet"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    want = encoderkit.tasks.TASKS["ner"].run(encoderkit.load(conv), NER_TEXTS, aggregation="simple")
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    _same_entities([r["entities"] for r in rows], want, "batch")
    # errors: one line each
    assert main(["ner", str(conv), "x", "--aggregation", "bogus"]) == 2
    assert "--aggregation" in capfd.readouterr().err
    assert main(["ner", encoderkit.__file__, "x"]) == 2  # a file that exists but is no model
    assert "error:" in capfd.readouterr().err
    if arch == "roberta":
        from encoderkit.storage.random_init import init_random

        init_random(tmp_path / "mlm", "tiny")
        assert main(["ner", str(tmp_path / "mlm"), "x"]) == 2
        assert "no token-classification head" in capfd.readouterr().err.strip().splitlines()[-1]
        with pytest.raises(InputError, match="longer|tokens"):
            encoderkit.tasks.TASKS["ner"].run(encoderkit.load(ckpt), ["word " * 400])


# --------------------------------------------------------------------------- qa
QA_VENV = ROOT / "build" / "qa-ref-venv"
QA_REF = r'''
import json, sys, warnings
warnings.simplefilter("ignore")
from transformers import pipeline
model, spec = sys.argv[1], json.loads(sys.stdin.read())
pipe = pipeline("question-answering", model=model, tokenizer=model, device="cpu")
out = []
for q, c in spec["pairs"]:
    r = pipe(question=q, context=c, **spec["kwargs"])
    out.append(r if isinstance(r, list) else [r])
print(json.dumps(out))
'''


def qa_reference_python() -> str:
    """transformers 4.57 (the last with pipeline("question-answering")) in a venv of its own under
    build/ (built once, then reused); the test skips, saying why, only where it cannot be built."""
    import fcntl

    py = QA_VENV / "bin" / "python"
    QA_VENV.parent.mkdir(exist_ok=True)
    with open(QA_VENV.parent / ".qa-ref-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder among the test workers
        if not (QA_VENV / ".ok").is_file():
            steps = [[sys.executable, "-m", "venv", "--clear", str(QA_VENV)],
                     [str(py), "-m", "pip", "install", "-q", "torch==2.13.0"],
                     [str(py), "-m", "pip", "install", "-q", "transformers==4.57.3", "torch==2.13.0"]]
            for cmd in steps:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if res.returncode != 0:
                    pytest.skip(f"cannot build the transformers 4.57 reference venv ({' '.join(cmd[2:5])}: "
                                f"{(res.stderr.strip().splitlines() or ['?'])[-1][:200]})")
            (QA_VENV / ".ok").write_text("ok\n")
    return str(py)


def qa_reference(model: Path, pairs: list, **kwargs) -> list:
    res = subprocess.run([qa_reference_python(), "-c", QA_REF, str(model)], input=json.dumps(
        {"pairs": pairs, "kwargs": kwargs}), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": "", "TOKENIZERS_PARALLELISM": "false"})
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _same_answers(got: list, want: list, what: str, rtol: float = 1e-4) -> None:
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert [(a["answer"], a["start"], a["end"]) for a in g] == [(a["answer"], a["start"], a["end"]) for a in w], \
            f"{what}: pair {i}:\n{g}\n!=\n{w}"
        for a, b in zip(g, w):
            assert abs(a["score"] - b["score"]) <= rtol * max(abs(b["score"]), 1e-12) + 1e-9, \
                f"{what}: pair {i}: score {a['score']} vs {b['score']}"


def _long_context() -> str:
    from encoderkit.core.texts import corpus_lines

    filler = " ".join(corpus_lines())
    return f"{filler} {CONTEXT} {filler} The engine's designer lived in London. {filler}"


@pytest.mark.xdist_group("qa-reference")
@pytest.mark.parametrize("kwargs", [{"top_k": 3}, {"top_k": 2, "handle_impossible_answer": True},
                                    {"top_k": 1, "max_answer_len": 4, "doc_stride": 40}])
def test_qa_equals_the_transformers_457_pipeline(qa_model, kwargs):
    from encoderkit.tasks import TASKS

    arch, ckpt, _ = qa_model
    long_ctx = _long_context()
    pairs = [(q, CONTEXT) for q in QUESTIONS] + [(QUESTIONS[0], long_ctx), ("Who was the queen?", CONTEXT)]
    rt = encoderkit.load(ckpt)
    assert len(rt.tokenizer.encode_windows(QUESTIONS[0], long_ctx, max_length=rt.spec.max_tokens_per_text,
                                           stride=kwargs.get("doc_stride", 64))) >= 5  # several windows
    want = qa_reference(ckpt, pairs, **kwargs)
    ours = {"handle_impossible": kwargs.get("handle_impossible_answer", False),
            **{k: v for k, v in kwargs.items() if k != "handle_impossible_answer"}}
    got = TASKS["qa"].run(rt, pairs, **ours)
    _same_answers(got, want, f"{arch} {kwargs}")


@pytest.mark.parametrize("backend", FP32[1:])
def test_qa_is_the_same_on_every_backend(qa_model, backend):
    from encoderkit.tasks import TASKS

    _, _, conv = qa_model
    pairs = [(q, CONTEXT) for q in QUESTIONS] + [(QUESTIONS[1], _long_context())]
    want = TASKS["qa"].run(encoderkit.load(conv, "torch"), pairs, top_k=2, handle_impossible=True)
    got = TASKS["qa"].run(encoderkit.load(conv, backend), pairs, top_k=2, handle_impossible=True)
    _same_answers(got, want, backend, rtol=1e-3)


def test_qa_a_3000_token_context_and_the_cli(qa_model, tmp_path, capfd):
    from encoderkit.tasks import TASKS

    arch, ckpt, conv = qa_model
    rt = encoderkit.load(conv, "onnx")
    ctx = " ".join([_long_context()] * 6)
    assert len(rt.tokenizer.encode_plain(ctx)) >= 3000
    (ans,) = TASKS["qa"].run(rt, [(QUESTIONS[0], ctx)], top_k=1)
    assert ctx[ans[0]["start"]:ans[0]["end"]] == ans[0]["answer"]
    assert main(["qa", str(conv), "--question", QUESTIONS[0], QUESTIONS[1], "--context", CONTEXT, CONTEXT,
                 "--top-k", "2", "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert len(out) == 2 and all(len(x) == 2 and CONTEXT[a["start"]:a["end"]] == a["answer"] for x in out for a in x)
    src = tmp_path / "qa.csv"
    src.write_text("q,c\n" + "".join(f'"{q}","{CONTEXT}"\n' for q in QUESTIONS))
    assert main(["qa", str(conv), "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--question-column", "q",
                 "--context-column", "c", "--quiet"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    _same_answers([r["answers"] for r in rows], TASKS["qa"].run(rt, [(q, CONTEXT) for q in QUESTIONS]), "batch")
    assert main(["qa", str(conv), "--question", "a", "b", "--context", CONTEXT]) == 2
    assert "as many --question as --context" in capfd.readouterr().err
    assert main(["qa", str(conv), "--question", "x " * 200, "--context", CONTEXT]) == 2
    assert "question is too long" in capfd.readouterr().err
    with pytest.raises(InputError, match="doc_stride"):
        TASKS["qa"].run(rt, [("q", CONTEXT)], doc_stride=10_000)


def test_heads_are_records_read_from_any_checkpoint(tmp_path):
    """A token-classification / QA checkpoint saved by transformers itself (not by us) reads as
    that head, labels included, and the reading refuses nothing it should take."""
    import transformers

    from encoderkit.storage.checkpoint import load_checkpoint
    from encoderkit.storage.random_init import init_random

    init_random(tmp_path / "base", "tiny", arch="bert")
    for cls, head in (("BertForTokenClassification", "token-classification"),
                      ("BertForQuestionAnswering", "question-answering")):
        cfg = transformers.AutoConfig.from_pretrained(tmp_path / "base")
        cfg.id2label, cfg.label2id = {0: "O", 1: "B-X"}, {"O": 0, "B-X": 1}
        model = getattr(transformers, cls).from_pretrained(tmp_path / "base", config=cfg)
        out = tmp_path / head
        model.save_pretrained(out)
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (out / f).write_bytes((tmp_path / "base" / f).read_bytes())
        spec = load_checkpoint(out).spec
        assert spec.heads == (head,)
        assert spec.labels == (("O", "B-X") if head == "token-classification" else ())
