"""Extractive question answering: SQuAD-format JSON Lines in, ``*ForQuestionAnswering`` out, exact
match and F1 (the official SQuAD v2 normalisation) on held-out questions.

A row: ``{"question": str, "context": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}``
(SQuAD's own layout; a single ``"text"`` / ``"answer_start"`` instead of lists is accepted too;
``{"text": [], "answer_start": []}`` marks a question the context does not answer). Every answer
must sit where its ``answer_start`` says (``context[start:start + len(text)] == text``); an optional
``"id"`` names the question in predictions.

Training features are the usual sliding windows: question first, the context truncated
(``only_second``) into windows of ``max_length`` tokens that overlap by ``doc_stride``; a window
that does not hold the whole (first) answer, and every window of an unanswerable question, points
both positions at the first token (``<s>`` / ``[CLS]``).

Held-out answers are decoded as transformers' question-answering pipeline decodes them (the v4
``QuestionAnsweringPipeline``, ``top_k=1``): per window a softmax of the start and of the end logits
over the context tokens and the first token, candidate spans scored by p(start) * p(end) with
``start <= end < start + max_answer_length``, the span widened to whole words; the empty answer
when the model learnt to abstain (its training data had unanswerable questions) and the smallest
null score p(start=0) * p(end=0) over the windows beats the best span.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .data import _rows


@dataclass(frozen=True)
class Questions:
    ids: tuple[str, ...]
    questions: tuple[str, ...]
    contexts: tuple[str, ...]
    answers: tuple[tuple[tuple[str, int], ...], ...]  # (text, answer_start) each; () when unanswerable
    rows: tuple[int, ...]
    source: str

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def unanswerable(self) -> int:
        return sum(not a for a in self.answers)

    def payload(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "questions": list(self.questions), "contexts": list(self.contexts),
                "answers": [[list(a) for a in ans] for ans in self.answers], "rows": list(self.rows),
                "source": self.source}


def _answers(obj: dict, context: str, path: Path, n: int) -> tuple[tuple[str, int], ...]:
    ans = obj["answers"]
    if not isinstance(ans, dict) or not {"text", "answer_start"} <= set(ans):
        raise InputError(f"{path}: row {n}: \"answers\" must be {{\"text\": [...], \"answer_start\": [...]}} "
                         "(empty lists for an unanswerable question)")
    texts, starts = ans["text"], ans["answer_start"]
    if not isinstance(texts, list):
        texts = [texts]
    if not isinstance(starts, list):
        starts = [starts]
    if len(texts) != len(starts):
        raise InputError(f"{path}: row {n}: {len(texts)} answer texts but {len(starts)} answer_start values")
    out = []
    for t, s in zip(texts, starts):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{path}: row {n}: an answer text must be a non-empty string, got {t!r} "
                             "(an unanswerable question has empty lists)")
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= len(context) - len(t):
            raise InputError(f"{path}: row {n}: answer_start {s!r} of {t!r} is not a position in the context "
                             f"(0..{len(context) - len(t)})")
        if context[s:s + len(t)] != t:
            found = context.find(t)
            hint = f"; the text occurs at {found}" if found >= 0 else "; the text is not in the context"
            raise InputError(f"{path}: row {n}: answer_start {s} does not match the answer {t!r}: the context there "
                             f"reads {context[s:s + len(t)]!r}{hint}")
        out.append((t, s))
    return tuple(out)


def read_questions(path: str | Path) -> Questions:
    """Read and validate SQuAD-format rows.

    Raises:
        InputError: naming the file and row (a missing field, an answer_start that does not match its
            text, an empty question or context, no rows).
    """
    path = Path(path)
    ids, qs, cs, ans, rows = [], [], [], [], []
    for n, obj in _rows(path):
        for col in ("question", "context", "answers"):
            if col not in obj:
                raise InputError(f"{path}: row {n}: no field {col!r} (it has: {', '.join(map(str, obj))}); "
                                 "expected SQuAD's question, context, answers")
        q, c = obj["question"], obj["context"]
        for name, v in (("question", q), ("context", c)):
            if not isinstance(v, str) or not v.strip():
                raise InputError(f"{path}: row {n}: {name!r} must be a non-empty string, got {v!r}")
        ans.append(_answers(obj, c, path, n))
        ids.append(str(obj.get("id", n)))
        qs.append(q)
        cs.append(c)
        rows.append(n)
    if not qs:
        raise InputError(f"{path}: no questions")
    return Questions(tuple(ids), tuple(qs), tuple(cs), tuple(ans), tuple(rows), str(path))


# ------------------------------------------------------------------ features

def _tokenize(tokenizer, data: dict, max_length: int, doc_stride: int):
    """Windows of every question (question first, context truncated with overlap ``doc_stride``).

    Raises:
        InputError: a question so long that no context token fits beside it (naming its row).
    """
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    q_lens = [len(x) for x in tokenizer(list(data["questions"]), add_special_tokens=False)["input_ids"]]
    for row, ql in zip(data["rows"], q_lens):
        room = max_length - specials - ql
        if room <= doc_stride:
            raise InputError(f"{data['source']}: row {row}: the question is {ql} tokens, which leaves {max(room, 0)} "
                             f"of --max-length {max_length} for the context, not more than --doc-stride {doc_stride}; "
                             "shorten the question, raise --max-length or lower --doc-stride")
    return tokenizer(list(data["questions"]), list(data["contexts"]), truncation="only_second",
                     max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, return_special_tokens_mask=True)


def dataset(tokenizer, data: dict, cfg, max_length: int) -> list[dict[str, Any]]:
    """Training windows with ``start_positions`` / ``end_positions`` (0 where the window lacks the answer)."""
    enc = _tokenize(tokenizer, data, max_length, cfg.doc_stride)
    rows = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ex = enc["overflow_to_sample_mapping"][i]
        seq = enc.sequence_ids(i)
        start = end = 0
        answers = data["answers"][ex]
        if answers:
            text, char_start = answers[0]
            char_end = char_start + len(text)
            ctx = [t for t, s in enumerate(seq) if s == 1 and offsets[t][1] > offsets[t][0]]
            if ctx and offsets[ctx[0]][0] <= char_start and offsets[ctx[-1]][1] >= char_end:
                start = next(t for t in ctx if offsets[t][1] > char_start)
                end = next(t for t in reversed(ctx) if offsets[t][0] < char_end)
        row = {k: enc[k][i] for k in enc if k not in ("offset_mapping", "special_tokens_mask",
                                                      "overflow_to_sample_mapping")}
        rows.append(row | {"start_positions": start, "end_positions": end})
    return rows


def collator(tokenizer, cfg):
    import transformers

    return transformers.DataCollatorWithPadding(tokenizer)


# ------------------------------------------------------------------ decoding (the pipeline's)

def _decode_window(start: np.ndarray, end: np.ndarray, context_mask: np.ndarray, max_answer_length: int):
    """One window: (best start, best end, its score, the null score), scores as the pipeline has them."""
    allowed = context_mask.copy()
    allowed[0] = True  # the first token: the pipeline's p_mask leaves it in the softmax
    s = np.where(allowed, start, -10000.0)
    e = np.where(allowed, end, -10000.0)
    s = np.exp(s - s.max())
    s /= s.sum()
    e = np.exp(e - e.max())
    e /= e.sum()
    null = float(s[0] * e[0])
    s[0] = e[0] = 0.0
    outer = np.tril(np.triu(np.outer(s, e)), max_answer_length - 1)
    flat = int(np.argmax(outer))
    i, j = divmod(flat, outer.shape[1])
    if not (context_mask[i] and context_mask[j]):
        return None, None, -1.0, null
    return i, j, float(outer[i, j]), null


def predict_answers(model, tokenizer, data: dict, max_length: int, doc_stride: int, *, max_answer_length: int = 15,
                    handle_impossible_answer: bool = False, batch_size: int = 32) -> list[dict[str, Any]]:
    """Each question's answer ``{"answer", "start", "end", "score"}`` (``""`` / 0 / 0 when it abstains)."""
    import torch

    enc = _tokenize(tokenizer, data, max_length, doc_stride)
    n_win = len(enc["input_ids"])
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    starts, ends = [], []
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for b in range(0, n_win, batch_size):
            batch = tokenizer.pad([{k: enc[k][i] for k in keys} for i in range(b, min(b + batch_size, n_win))],
                                  return_tensors="pt")
            out = model(**{k: v.to(device) for k, v in batch.items()})
            for r in range(out.start_logits.shape[0]):
                n = len(enc["input_ids"][b + r])
                starts.append(out.start_logits[r, :n].float().cpu().numpy())
                ends.append(out.end_logits[r, :n].float().cpu().numpy())
    best: dict[int, dict[str, Any]] = {}
    null: dict[int, float] = {}
    for w in range(n_win):
        ex = enc["overflow_to_sample_mapping"][w]
        seq = enc.sequence_ids(w)
        context_mask = np.array([s == 1 for s in seq])
        i, j, score, nul = _decode_window(starts[w], ends[w], context_mask, max_answer_length)
        null[ex] = min(null.get(ex, 1e6), nul)
        if i is None or score <= best.get(ex, {"score": -1.0})["score"]:
            continue
        a, b = _word_chars(enc, w, i, j)
        best[ex] = {"answer": data["contexts"][ex][a:b], "start": a, "end": b, "score": score}
    out = []
    for ex in range(len(data["questions"])):
        ans = best.get(ex, {"answer": "", "start": 0, "end": 0, "score": 0.0})
        if handle_impossible_answer and null[ex] > ans["score"]:
            ans = {"answer": "", "start": 0, "end": 0, "score": null[ex]}
        out.append(ans)
    return out


def _word_chars(enc, w: int, i: int, j: int) -> tuple[int, int]:
    """The pipeline's ``align_to_words``: the characters of the whole words holding tokens i and j."""
    e = enc.encodings[w] if enc.encodings else None
    try:
        sw, ew = e.token_to_word(i), e.token_to_word(j)
        return e.word_to_chars(sw, sequence_index=1)[0], e.word_to_chars(ew, sequence_index=1)[1]
    except Exception:  # a tokenizer without words: the token offsets (as the pipeline falls back)
        offsets = enc["offset_mapping"][w]
        return offsets[i][0], offsets[j][1]


# ------------------------------------------------------------------ the official SQuAD metric

def normalize_answer(s: str) -> str:
    """SQuAD v2's ``normalize_answer``: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s, flags=re.UNICODE)
    return " ".join(s.split())


def exact_match(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)
    same = sum((collections.Counter(g) & collections.Counter(p)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(answers: list[list], predictions: list[str]) -> dict[str, Any]:
    """Exact match and F1 (0..100) over all questions, the answerable and the unanswerable ones
    (the v2 script: max over the gold answers; an unanswerable question's gold is ``""``)."""
    em, f = [], []
    for gold, pred in zip(answers, predictions):
        golds = [t for t, _ in gold if normalize_answer(t)] or [""]
        em.append(max(exact_match(g, pred) for g in golds))
        f.append(max(f1(g, pred) for g in golds))
    has = [i for i, g in enumerate(answers) if g]
    no = [i for i, g in enumerate(answers) if not g]

    def mean(xs, idx):
        return 100.0 * float(np.mean([xs[i] for i in idx])) if idx else None

    return {"eval_exact_match": mean(em, range(len(em))), "eval_f1": mean(f, range(len(f))),
            "eval_has_answer_exact_match": mean(em, has), "eval_has_answer_f1": mean(f, has),
            "eval_no_answer_exact_match": mean(em, no), "eval_no_answer_count": len(no),
            "eval_has_answer_count": len(has)}


def evaluator(tokenizer, data: dict, cfg, max_length: int):
    def evaluate(model) -> dict[str, Any]:
        preds = predict_answers(model, tokenizer, data, max_length, cfg.doc_stride,
                                max_answer_length=cfg.max_answer_length,
                                handle_impossible_answer=cfg.handle_impossible_answer)
        scores = squad_scores(data["answers"], [p["answer"] for p in preds])
        scores["predictions"] = [{"id": i, "answer": p["answer"], "score": p["score"]}
                                 for i, p in zip(data["ids"], preds)]
        return scores

    return evaluate


def report_lines(m: dict[str, Any], train: Questions, ev: Questions | None) -> list[str]:
    lines = [f"- data: `{m['data']}` ({len(train)} questions over {len(set(train.contexts))} contexts, "
             f"{train.unanswerable} unanswerable)",
             f"- held-out questions: {f'{len(ev)} ({ev.unanswerable} unanswerable)' if ev is not None else 'none'}",
             f"- windows: --max-length {m['max_length']} tokens, --doc-stride {m['doc_stride']}; answers up to "
             f"{m['max_answer_length']} tokens; empty answer {'allowed' if m['handle_impossible_answer'] else 'never predicted'}"]
    if m.get("eval_f1") is None:
        return lines
    lines.append(f"- held-out exact match {m['eval_exact_match']:.2f}, F1 {m['eval_f1']:.2f} (SQuAD v2 normalisation)")
    if m.get("eval_has_answer_count") and m.get("eval_no_answer_count"):
        lines.append(f"  - answerable ({m['eval_has_answer_count']}): exact match {m['eval_has_answer_exact_match']:.2f}, "
                     f"F1 {m['eval_has_answer_f1']:.2f}; unanswerable ({m['eval_no_answer_count']}): "
                     f"abstained on {m['eval_no_answer_exact_match']:.2f} %")
    return lines
