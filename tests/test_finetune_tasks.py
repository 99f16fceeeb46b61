"""encoderkit finetune --task token-classification | question-answering | mlm: the shipped data sets,
sub-word label alignment (multi-piece and non-ASCII words), SQuAD windows and metric, dynamic seeded
masking, bad data and bad options as one line naming the row or the flag, freeze/LoRA/DDP on every
task, and outputs that transformers' pipelines and encoderkit read as they read any checkpoint."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from encoderkit.core.errors import InputError
from encoderkit.finetune import MLM_TEST, MLM_TRAIN, NER_TEST, NER_TRAIN, QA_TEST, QA_TRAIN, finetune

pytest.importorskip("accelerate")
pytest.importorskip("seqeval")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are 32 wide: one torch thread runs them as fast as two, and on a shared machine
    far faster (measured 0.05 s against 0.9 s a step with other jobs running)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def _tokenizer(model_dir):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(model_dir))


# ------------------------------------------------------------------ the shipped data sets

def test_shipped_ner_set_is_varied_and_split():
    from encoderkit.finetune.tokens import read_tagged, tag_names

    train, test = read_tagged(NER_TRAIN), read_tagged(NER_TEST)
    assert len(train) + len(test) >= 200 and len(test) >= 40
    kinds = {t[2:] for g in train.tags for t in g if t != "O"}
    assert len(kinds) >= 3 and kinds == {t[2:] for g in test.tags for t in g if t != "O"}
    assert not set(train.texts) & set(test.texts)
    assert tag_names(train)[0] == "O"
    text = " ".join(train.texts + test.texts)
    assert all(name in text for name in ("Zoë", "São Paulo", "Müller", "Kraków"))
    firsts = Counter(g[0] != "O" for g in train.tags)
    lasts = Counter(g[-2] != "O" for g in train.tags)  # before the final punctuation
    assert firsts[True] >= 30 and lasts[True] >= 30  # entities at the start and at the end
    assert sum(all(t == "O" for t in g) for g in train.tags + test.tags) >= 5  # sentences without any
    starts = Counter(" ".join(t.split()[:2]) for t in train.texts + test.texts)
    assert starts.most_common(1)[0][1] <= 4


def test_shipped_qa_set_has_unanswerable_questions_and_unseen_contexts():
    from encoderkit.finetune.qa import read_questions

    train, test = read_questions(QA_TRAIN), read_questions(QA_TEST)
    assert len(train) + len(test) >= 150
    assert train.unanswerable >= 20 and test.unanswerable >= 5
    assert not set(train.contexts) & set(test.contexts)  # held-out paragraphs, not only questions
    assert len(set(train.contexts)) >= 25


def test_shipped_corpus_is_split():
    from encoderkit.finetune.mlm import read_corpus

    train, test = read_corpus(MLM_TRAIN), read_corpus(MLM_TEST)
    assert len(train) >= 200 and len(test) >= 30 and not set(train.texts) & set(test.texts)


# ------------------------------------------------------------------ label alignment

WORDS = ["Zoë", "Müller-Lüdenscheidt", "moved", "to", "São", "Paulo", "with", "Wojciechowski", "."]
TAGS = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "B-PER", "O"]


@pytest.mark.parametrize("fixture", ["tiny_roberta", "tiny_bert"])
def test_labels_sit_on_the_first_piece_of_every_word(tmp_path, request, fixture):
    """Multi-piece and non-ASCII words: exactly one labelled piece per word, the first one, starting
    where the word starts; every other piece and every special token is -100."""
    from encoderkit.finetune.tokens import encode, read_tagged

    tok = _tokenizer(request.getfixturevalue(fixture))
    data = read_tagged(_write(tmp_path / "t.jsonl", [{"tokens": WORDS, "tags": TAGS}]))
    names = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    row = encode(tok, data.payload(names), 128)[0]
    enc = tok(data.texts[0], return_offsets_mapping=True, return_special_tokens_mask=True)
    labelled = [i for i, lab in enumerate(row["labels"]) if lab != -100]
    assert len(labelled) == len(WORDS)
    assert len(row["input_ids"]) > len(WORDS) + 4  # the words really are split into pieces
    for (start, _), i, tag in zip(data.words[0], labelled, TAGS):
        assert enc["offset_mapping"][i][0] == start, (tok.convert_ids_to_tokens(row["input_ids"][i]), tag)
        assert names[row["labels"][i]] == tag
    assert all(row["labels"][i] == -100 for i, s in enumerate(enc["special_tokens_mask"]) if s)


def test_span_rows_become_the_same_words_and_tags(tmp_path):
    """The text+entities form: words are the whitespace chunks cut again at entity boundaries (the
    possessive after an entity is its own word), an entity's first word B-, the others I-."""
    from encoderkit.finetune.tokens import read_tagged

    text = "Zoë Müller's bakery in São Paulo opened on 3 May."
    ents = [{"start": 0, "end": 10, "label": "PER"}, {"start": 23, "end": 32, "label": "LOC", "text": "São Paulo"},
            {"start": 43, "end": 48, "label": "DATE"}]
    data = read_tagged(_write(tmp_path / "s.jsonl", [{"text": text, "entities": ents}]))
    words = [text[a:b] for a, b in data.words[0]]
    assert words == ["Zoë", "Müller", "'s", "bakery", "in", "São", "Paulo", "opened", "on", "3", "May", "."]
    assert list(data.tags[0]) == ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC", "O", "O", "B-DATE",
                                  "I-DATE", "O"]


def test_plain_io_labels_are_scored_as_entities():
    from encoderkit.finetune.tokens import entity_scores

    gold = [["PER", "PER", "O", "LOC"], ["O", "ORG"]]
    pred = [["PER", "PER", "O", "PER"], ["O", "ORG"]]
    s = entity_scores(gold, pred)
    assert s["eval_precision"] == pytest.approx(2 / 3) and s["eval_recall"] == pytest.approx(2 / 3)
    conf = dict(zip(s["confusion"]["labels"], s["confusion"]["counts"]))
    assert conf["LOC"][s["confusion"]["labels"].index("PER")] == 1


# ------------------------------------------------------------------ bad data, bad options: one line

NER_OK = {"tokens": ["Ada", "lives", "in", "Oslo"], "tags": ["B-PER", "O", "O", "B-LOC"]}
QA_CTX = "The mill on the Alder river was built in 1820 by Ruth Hale."
QA_OK = {"question": "When was the mill built?", "context": QA_CTX, "answers": {"text": ["1820"], "answer_start": [41]}}

BAD_DATA = [
    ("token-classification", "len.jsonl", [NER_OK, {"tokens": ["a", "b", "c"], "tags": ["O", "O"]}],
     "row 2: 3 tokens but 2 tags"),
    ("token-classification", "int.jsonl", [NER_OK, {"tokens": ["a"], "tags": [3]}], "row 2: tag 0 must be"),
    ("token-classification", "span.jsonl", [NER_OK, {"text": "Ada in Oslo", "entities": [{"start": 7, "end": 40,
                                                                                            "label": "LOC"}]}],
     "row 2: entity 0: start 7 / end 40"),
    ("token-classification", "overlap.jsonl",
     [{"text": "New York City", "entities": [{"start": 0, "end": 8, "label": "LOC"},
                                             {"start": 4, "end": 13, "label": "LOC"}]}], "row 1: entities 0 and 1 overlap"),
    ("token-classification", "mixed.jsonl", [NER_OK, {"tokens": ["Oslo"], "tags": ["LOC"]}],
     "row 2: tag 'LOC' has no B-/I- prefix"),
    ("token-classification", "neither.jsonl", [NER_OK, {"words": ["a"]}], "row 2: expected \"tokens\""),
    ("question-answering", "start.jsonl", [QA_OK, QA_OK | {"answers": {"text": ["1820"], "answer_start": [40]}}],
     "row 2: answer_start 40 does not match the answer '1820'"),
    ("question-answering", "missing.jsonl", [QA_OK, {"question": "Who?", "context": QA_CTX}], "row 2: no field 'answers'"),
    ("question-answering", "empty.jsonl", [QA_OK | {"question": "  "}], "row 1: 'question' must be"),
    ("mlm", "empty.txt", ["", "   "], "the corpus is empty"),
    ("mlm", "col.jsonl", [{"text": "bread"}, {"body": "beer"}], "row 2: no column 'text'"),
]


@pytest.mark.parametrize("task,name,rows,match", BAD_DATA, ids=[f"{t}-{n}" for t, n, _, _ in BAD_DATA])
def test_bad_data_is_one_line_naming_the_row(tmp_path, tiny_roberta, capfd, task, name, rows, match):
    from encoderkit.cli import main

    path = _write(tmp_path / name, rows)
    assert main(["finetune", str(tiny_roberta), "--task", task, "--data", str(path), "--out",
                 str(tmp_path / "out"), "--method", "full", "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and str(path) in err[0], err
    assert not (tmp_path / "out").exists()


def test_an_eval_tag_the_training_data_lacks_names_its_row(tmp_path, tiny_roberta):
    ev = _write(tmp_path / "ev.jsonl", [NER_OK, {"tokens": ["March"], "tags": ["B-DATE"]}])
    with pytest.raises(InputError, match=r"ev.jsonl: row 2: tag 'B-DATE' is not one of the training tags"):
        finetune(tiny_roberta, _write(tmp_path / "tr.jsonl", [NER_OK]), tmp_path / "out",
                 task="token-classification", eval_data=ev, quiet=True)


BAD_OPTIONS = [
    (["--task", "mlm", "--mlm-probability", "0"], "--mlm-probability must be in (0, 1)"),
    (["--task", "mlm", "--mlm-probability", "1.5"], "--mlm-probability must be in (0, 1)"),
    (["--task", "question-answering", "--max-length", "64", "--doc-stride", "64"],
     "--doc-stride 64 must be less than --max-length 64"),
    (["--task", "question-answering", "--doc-stride", "400"], "--doc-stride 400 must be less than --max-length 384"),
    (["--task", "mlm", "--doc-stride", "32"], "--doc-stride applies to --task question-answering"),
    (["--task", "token-classification", "--whole-word-mask"], "--whole-word-mask applies to --task mlm"),
    (["--task", "token-classification", "--method", "probe"], "--method probe fits a classifier"),
    (["--task", "mlm", "--max-length", "4"], "--max-length must be an integer >= 8"),
    (["--task", "mlm", "--max-length", "4096"], "--max-length 4096 exceeds what the model holds (128 tokens)"),
]


@pytest.mark.parametrize("args,match", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_are_one_line_before_anything_starts(tmp_path, tiny_roberta, capfd, args, match):
    from encoderkit.cli import main

    data = {"mlm": MLM_TRAIN, "question-answering": QA_TRAIN, "token-classification": NER_TRAIN}[args[1]]
    assert main(["finetune", str(tiny_roberta), "--data", str(data), "--out", str(tmp_path / "out"), "--quiet",
                 *args]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_question_too_long_for_the_window_names_its_row(tmp_path, tiny_bert):
    long_q = QA_OK | {"question": "When " + "exactly " * 40 + "was the mill built?"}
    with pytest.raises(InputError, match=r"q.jsonl: row 2: the question is \d+ tokens"):
        finetune(tiny_bert, _write(tmp_path / "q.jsonl", [QA_OK, long_q]), tmp_path / "out",
                 task="question-answering", method="full", max_length=32, doc_stride=8, max_steps=1, quiet=True)


# ------------------------------------------------------------------ token classification

@pytest.fixture(scope="module")
def ner_model(tmp_path_factory):
    """tiny BERT trained for a few epochs on the shipped NER set (full), with its metrics."""
    from encoderkit.storage.random_init import init_random

    root = tmp_path_factory.mktemp("ner")
    init_random(root / "base", "tiny", arch="bert", seed=5)
    m = finetune(root / "base", NER_TRAIN, root / "out", task="token-classification", method="full",
                 eval_data=NER_TEST, epochs=6, lr=5e-3, batch_size=16, quiet=True)
    return root / "out", m


def test_ner_checkpoint_report_and_seqeval(ner_model):
    import transformers
    from seqeval.metrics import f1_score

    from encoderkit.finetune.tokens import _seqeval_tags, predict_tags, read_tagged

    out, m = ner_model
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BertForTokenClassification"]
    assert cfg["id2label"]["0"] == "O" and {"B-PER", "I-LOC", "B-DATE", "B-ORG"} <= set(cfg["id2label"].values())
    report = (out / "train_report.md").read_text()
    assert "held-out entity F1" in report and "| gold \\ predicted |" in report and "| PER |" in report
    assert m["task"] == "token-classification" and 0 <= m["eval_f1"] <= 1
    # the reported F1 is seqeval's over the predictions a fresh load makes
    test = read_tagged(NER_TEST)
    names = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(out))
    pred = predict_tags(model, _tokenizer(out), test.payload(tuple(names)), 510, names)
    gold = [list(g) for g in test.tags]
    assert f1_score(_seqeval_tags(gold), _seqeval_tags(pred)) == pytest.approx(m["eval_f1"])
    assert sum(t != "O" for g in pred for t in g) > 0  # it has learnt to tag something


def test_ner_predictions_equal_the_pipelines_first_aggregation(ner_model):
    """On held-out sentences the entities the evaluator scores are the ones transformers'
    token-classification pipeline (aggregation_strategy="first") returns."""
    import transformers

    from encoderkit.finetune.tokens import predict_tags, read_tagged

    out, _ = ner_model
    cfg = json.loads((out / "config.json").read_text())
    names = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
    test = read_tagged(NER_TEST)
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(out))
    preds = predict_tags(model, _tokenizer(out), test.payload(tuple(names)), 510, names)
    pipe = transformers.pipeline("token-classification", model=str(out), aggregation_strategy="first", device="cpu")
    compared = 0
    for text, words, tags in zip(test.texts, test.words, preds):
        ours, cur = [], None
        for (a, b), t in zip(words, tags):
            kind = t[2:] if t != "O" else None
            if kind and cur and cur[2] == kind and not t.startswith("B-"):
                cur[1] = b
            else:
                if cur:
                    ours.append(tuple(cur))
                cur = [a, b, kind] if kind else None
        if cur:
            ours.append(tuple(cur))
        theirs = [(e["start"], e["end"], e["entity_group"]) for e in pipe(text)]
        assert ours == theirs, text
        compared += len(ours)
    assert compared > 0


def test_ner_from_span_rows_trains_with_lora(tmp_path, tiny_roberta):
    """The text+entities form end to end, with LoRA: adapter kept, merged checkpoint loads."""
    import transformers

    rows = [{"text": "Zoë Müller lives in São Paulo.", "entities": [{"start": 0, "end": 10, "label": "PER"},
                                                                   {"start": 20, "end": 29, "label": "LOC"}]},
            {"text": "Kraków is far from Lisbon.", "entities": [{"start": 0, "end": 6, "label": "LOC"},
                                                               {"start": 19, "end": 25, "label": "LOC"}]}] * 4
    data = _write(tmp_path / "spans.jsonl", rows)
    m = finetune(tiny_roberta, data, tmp_path / "out", task="token-classification", method="lora",
                 eval_data=data, max_steps=3, quiet=True)
    assert m["trainable_parameters"] < 0.2 * m["parameters"]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path / "out"))
    assert model.config.id2label == {0: "O", 1: "B-LOC", 2: "I-LOC", 3: "B-PER", 4: "I-PER"}


def test_ner_ddp_two_processes(tmp_path, tiny_roberta):
    """--nproc applies to token classification too: two gloo processes end with the same weights."""
    from encoderkit.finetune import rank_digests

    m = finetune(tiny_roberta, NER_TRAIN, tmp_path / "two", task="token-classification", method="full",
                 eval_data=NER_TEST, nproc=2, max_steps=2, batch_size=8, dropout=0.0, quiet=True)
    assert m["world_size"] == 2 and m["steps"] == 2 and m["eval_f1"] is not None
    digests = rank_digests(tmp_path / "two")
    assert sorted(digests) == [0, 1] and digests[0] == digests[1]


# ------------------------------------------------------------------ question answering

def test_squad_metric_uses_the_official_normalisation():
    from encoderkit.finetune.qa import f1, normalize_answer, squad_scores

    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert f1("the red barn", "a red barn door") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    s = squad_scores([[("1820", 41)], [], [("Ruth Hale", 48), ("Hale", 53)]], ["in 1820", "", "Hale"])
    assert s["eval_exact_match"] == pytest.approx(100 * 2 / 3)  # "in 1820" is not exact; "" and "Hale" are
    assert s["eval_no_answer_exact_match"] == 100 and s["eval_has_answer_count"] == 2


@pytest.mark.parametrize("fixture", ["tiny_roberta", "tiny_bert"])
def test_qa_windows_point_at_the_answer(tmp_path, request, fixture):
    """A context longer than one window: the windows overlap by the stride, every window holding the
    whole answer points at its tokens (non-ASCII, multi-piece), the others at the first token."""
    from types import SimpleNamespace

    from encoderkit.finetune.qa import _tokenize, dataset, read_questions

    tok = _tokenizer(request.getfixturevalue(fixture))
    ctx = ("The old mill stood by the river for two centuries. " * 3 + "Its last miller was Zoë Wojciechowska, "
           "who ground rye until the flood. " + "Nobody rebuilt the wheel afterwards. " * 3)
    ans = "Zoë Wojciechowska"
    rows = [{"question": "Who was the last miller?", "context": ctx,
             "answers": {"text": [ans], "answer_start": [ctx.index(ans)]}},
            {"question": "Who built the mill?", "context": ctx, "answers": {"text": [], "answer_start": []}}]
    data = read_questions(_write(tmp_path / "q.jsonl", rows)).payload()
    feats = dataset(tok, data, SimpleNamespace(doc_stride=16), 48)
    first = dataset(tok, {k: v[:1] for k, v in data.items() if isinstance(v, list)} | {"source": "q"},
                    SimpleNamespace(doc_stride=16), 48)
    assert len(first) > 4  # one context, many windows

    enc = _tokenize(tok, {k: v[:1] for k, v in data.items() if isinstance(v, list)} | {"source": "q"}, 48, 16)
    a, b = ctx.index(ans), ctx.index(ans) + len(ans)
    pointing = [(w, f) for w, f in enumerate(first) if f["start_positions"]]
    assert pointing
    for w, f in pointing:  # exactly the answer's characters, from its first piece to its last
        offsets = enc["offset_mapping"][w]
        assert offsets[f["start_positions"]][0] == a and offsets[f["end_positions"]][1] == b
    assert all(f["end_positions"] == 0 for f in first if not f["start_positions"])
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in feats[len(first):])  # unanswerable


def test_qa_decoding_is_the_pipelines(tiny_bert):
    """Per window softmax over context + first token, best p(start) * p(end) with start <= end <
    start + max_answer_length, widened to whole words; the empty answer when the smallest null score
    beats the best span and abstaining is allowed."""
    from encoderkit.finetune.qa import _decode_window

    start = np.array([0.0, 9, 9, 1, 2, 8, 0, 0])
    end = np.array([0.0, 9, 9, 1, 2, 0, 7, 0])
    ctx = np.array([False, False, False, True, True, True, True, False])  # question tokens 1-2 excluded
    i, j, score, null = _decode_window(start, end, ctx, max_answer_length=15)
    assert (i, j) == (5, 6)
    s = np.exp(np.where(ctx | (np.arange(8) == 0), start, -1e4))
    e = np.exp(np.where(ctx | (np.arange(8) == 0), end, -1e4))
    assert score == pytest.approx((s[5] / s.sum()) * (e[6] / e.sum()))
    assert null == pytest.approx((s[0] / s.sum()) * (e[0] / e.sum()))
    assert _decode_window(start, end, ctx, max_answer_length=1)[:2] != (5, 6)  # too long a span


def test_qa_trains_reports_and_answers(tmp_path, tiny_bert):
    import transformers

    m = finetune(tiny_bert, QA_TRAIN, tmp_path / "qa", task="question-answering", method="full",
                 eval_data=QA_TEST, epochs=1, lr=5e-3, max_length=128, doc_stride=32, quiet=True)
    cfg = json.loads((tmp_path / "qa" / "config.json").read_text())
    assert cfg["architectures"] == ["BertForQuestionAnswering"]
    assert m["handle_impossible_answer"] is True  # the training set has unanswerable questions
    assert 0 <= m["eval_exact_match"] <= 100 and 0 <= m["eval_f1"] <= 100 and m["eval_no_answer_count"] >= 5
    assert len(m["predictions"]) == len(QA_TEST.read_text().splitlines())
    report = (tmp_path / "qa" / "train_report.md").read_text()
    assert "exact match" in report and "--doc-stride 32" in report
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "qa"))
    assert model.config.architectures == ["BertForQuestionAnswering"]


def test_qa_freeze_trains_only_the_head_and_the_top_layer(tmp_path, tiny_roberta):
    from encoderkit.storage.checkpoint import load_checkpoint

    out = tmp_path / "frozen"
    finetune(tiny_roberta, QA_TRAIN, out, task="question-answering", method="freeze", unfreeze_top=1,
             max_steps=2, lr=1e-2, max_length=96, doc_stride=32, quiet=True)
    before = load_checkpoint(tiny_roberta).state
    from safetensors.numpy import load_file

    after = load_file(str(out / "model.safetensors"))
    assert "qa_outputs.weight" in after
    for name, value in before.items():
        if name.startswith("lm_head.") or name not in after:
            continue
        moved = not np.array_equal(after[name], value)
        assert moved == name.startswith("roberta.encoder.layer.1."), name


# ------------------------------------------------------------------ masked LM

def test_mlm_masking_is_dynamic_seeded_and_80_10_10(tmp_path, tiny_roberta):
    """Two epochs: each epoch masks about 15 % of the tokens, of those about 80 % become the mask
    token, 10 % a random token, 10 % stay; the second epoch masks other tokens (about 15 % of its
    masked tokens were masked before, static masking would give 100 %); the same seed gives the
    same masks, another seed others. Held-out perplexity falls."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(MLM_TRAIN.read_text().splitlines()[:120]) + "\n")
    common = dict(task="mlm", method="full", eval_data=MLM_TEST, epochs=2, lr=3e-3, max_length=64, quiet=True)
    a = finetune(tiny_roberta, corpus, tmp_path / "a", seed=3, **common)
    b = finetune(tiny_roberta, corpus, tmp_path / "b", seed=3, **common)
    c = finetune(tiny_roberta, corpus, tmp_path / "c", seed=4, **common)
    ea, eb, ec = a["masking"], b["masking"], c["masking"]
    assert [e["digest"] for e in ea] == [e["digest"] for e in eb]
    assert ea[0]["digest"] != ea[1]["digest"] and ea[0]["digest"] != ec[0]["digest"]
    for e in ea:
        assert 0.12 < e["masked"] / e["tokens"] < 0.18
        assert 0.75 < e["mask_token"] / e["masked"] < 0.85
        assert 0.06 < e["random"] / e["masked"] < 0.14 and 0.06 < e["kept"] / e["masked"] < 0.14
    assert ea[1]["masked_again"] < 0.3
    assert a["eval_perplexity"] < a["eval_perplexity_before"]
    report = (tmp_path / "a" / "train_report.md").read_text()
    assert "held-out perplexity" in report and "masked in the epoch before too" in report


def test_whole_word_mask_masks_every_piece_of_a_word(tiny_roberta):
    from types import SimpleNamespace

    from encoderkit.finetune.mlm import collator, dataset

    tok = _tokenizer(tiny_roberta)
    texts = MLM_TRAIN.read_text().splitlines()[:40]
    cfg = SimpleNamespace(whole_word_mask=True, mlm_probability=0.3, seed=0)
    rows = list(dataset(tok, {"texts": texts}, cfg, 64))
    batch = collator(tok, cfg)(rows[:8])
    checked = 0
    for r, labels in zip(rows[:8], batch["labels"]):
        offsets, special = r["offset_mapping"], r["special_tokens_mask"]
        word, words = -1, []
        for t, ((s, e), sp) in enumerate(zip(offsets, special)):
            if sp:
                words.append(None)
                continue
            if t == 0 or special[t - 1] or offsets[t - 1][1] != s:
                word += 1
            words.append(word)
        masked = {words[t] for t in range(len(words)) if labels[t] != -100}
        for w in masked:
            pieces = [t for t in range(len(words)) if words[t] == w]
            assert all(labels[t] != -100 for t in pieces)
            checked += len(pieces) > 1
    assert checked > 0
    assert (batch["input_ids"][batch["labels"] != -100] == tok.mask_token_id).all()  # transformers: all [MASK]


def test_mlm_lora_keeps_the_decoder_tied(tmp_path, tiny_bert):
    """LoRA on a masked LM trains the head's transform, not a copy of the word embeddings: the
    merged checkpoint's decoder is still the embeddings and fill-mask reads it."""
    import transformers

    import encoderkit

    m = finetune(tiny_bert, MLM_TRAIN, tmp_path / "lora", task="mlm", method="lora", max_steps=3, lr=1e-2,
                 max_length=64, quiet=True)
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "lora"))
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert m["trainable_parameters"] < 0.2 * m["parameters"]
    out = encoderkit.load(tmp_path / "lora", "torch").fill_mask(["bake the [MASK] until golden."], top_k=2)
    assert len(out[0][0]) == 2


def test_tiny_mlm_from_scratch_beats_the_most_frequent_token(tiny_mlm):
    """init-random tiny + the shipped corpus: on every token of the held-out lines, masked one at a
    time, the top-1 prediction is right more often than always guessing the corpus's most frequent
    token; its predictions are peaked; fill-mask (encoderkit's and transformers' pipeline) agree."""
    import torch
    import transformers

    import encoderkit

    tok = _tokenizer(tiny_mlm)
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(tiny_mlm)).eval()
    train = MLM_TRAIN.read_text().splitlines()
    freq = Counter(t for line in train for t in tok(line, add_special_tokens=False)["input_ids"])
    top = freq.most_common(1)[0][0]
    hits = base = n = 0
    peaks = []
    for line in MLM_TEST.read_text().splitlines():
        ids = tok(line)["input_ids"]
        rows = []
        for pos in range(1, len(ids) - 1):
            x = list(ids)
            x[pos] = tok.mask_token_id
            rows.append(x)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(rows)).logits
        for k, pos in enumerate(range(1, len(ids) - 1)):
            p = logits[k, pos].softmax(-1)
            hits += int(p.argmax()) == ids[pos]
            base += ids[pos] == top
            n += 1
            peaks.append(float(p.max()))
    assert n > 1000
    assert hits / n > 1.5 * base / n, (hits / n, base / n)
    assert max(peaks) > 0.3  # a random model's softmax over 1000 tokens is ~0.002 everywhere
    metrics = json.loads((tiny_mlm / "train_metrics.json").read_text())
    assert metrics["eval_perplexity"] < 0.5 * metrics["eval_perplexity_before"]
    texts = ["Bake the loaf until the crust is deep brown<mask>", "Feed the starter with flour and <mask>."]
    ours = encoderkit.load(tiny_mlm, "torch").fill_mask(texts, top_k=3)
    pipe = transformers.pipeline("fill-mask", model=str(tiny_mlm), device="cpu")
    for got, want in zip(ours, pipe(texts, top_k=3)):
        assert [g["token"] for g in got[0]] == [w["token"] for w in want]
