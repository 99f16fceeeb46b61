"""Token classification (NER): tagged words in, ``*ForTokenClassification`` out, entity-level
precision/recall/F1 (seqeval) on held-out sentences.

Data (JSON Lines), either form on any row:

- CoNLL style: ``{"tokens": ["Zoë", "lives", "in", "São", "Paulo"], "tags": ["B-PER", "O", "O", "B-LOC", "I-LOC"]}``
- spans: ``{"text": "Zoë lives in São Paulo", "entities": [{"start": 0, "end": 3, "label": "PER"}, ...]}``
  (character offsets, end exclusive; an optional ``"text"`` in an entity must equal the span).
  Words are the whitespace-separated chunks, cut again at every entity boundary; an entity's first
  word is tagged ``B-label``, the others ``I-label``.

The label set is the training data's own: BIO (``B-``/``I-``, also ``E-``/``S-``) or IO tags, or
plain labels (``PER``: IO without prefixes; seqeval reads them as ``I-PER``). Every row becomes one
text, its words joined by single spaces (the CoNLL form) or the text as written (the span form), and
is tokenized as raw text -- as a pipeline tokenizes what it is given -- with the sub-word pieces
mapped to words by their character offsets: a word's first piece carries its tag, every other piece
and every special token is -100 (not in the loss). A word's prediction is its first piece's label
(``aggregation_strategy="first"`` in transformers' token-classification pipeline).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .data import _rows

PREFIXES = ("B-", "I-", "E-", "S-")
OUTSIDE = "O"


@dataclass(frozen=True)
class Tagged:
    texts: tuple[str, ...]
    words: tuple[tuple[tuple[int, int], ...], ...]  # each word's character span in its text
    tags: tuple[tuple[str, ...], ...]
    rows: tuple[int, ...]  # the file's row of each sentence (errors name it)
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def tag_ids(self, names: tuple[str, ...]) -> list[list[int]]:
        """Indices of the tags in ``names``.

        Raises:
            InputError: a tag the training data never had (naming its row).
        """
        index = {n: i for i, n in enumerate(names)}
        for row, tags in zip(self.rows, self.tags):
            for t in tags:
                if t not in index:
                    raise InputError(f"{self.source}: row {row}: tag {t!r} is not one of the training tags "
                                     f"({', '.join(names)})")
        return [[index[t] for t in tags] for tags in self.tags]

    def payload(self, names: tuple[str, ...]) -> dict[str, Any]:
        """JSON-safe (handed to torchrun workers)."""
        return {"texts": list(self.texts), "words": [[list(w) for w in ws] for ws in self.words],
                "tags": self.tag_ids(names)}


def _kind(tag: str) -> str:
    """``B-PER`` -> ``PER``; ``PER`` -> ``PER``; ``O`` -> ``O``."""
    return tag[2:] if tag[:2] in PREFIXES else tag


def _from_tokens(obj: dict, path: Path, n: int) -> tuple[str, list[tuple[int, int]], list[str]]:
    tokens, tags = obj["tokens"], obj.get("tags")
    if tags is None:
        hint = " (\"ner_tags\" holds numbers: write the tag names as \"tags\")" if "ner_tags" in obj else ""
        raise InputError(f"{path}: row {n}: has \"tokens\" but no \"tags\"{hint}")
    if not isinstance(tokens, list) or not tokens:
        raise InputError(f"{path}: row {n}: \"tokens\" must be a non-empty list of strings")
    if not isinstance(tags, list):
        raise InputError(f"{path}: row {n}: \"tags\" must be a list of strings")
    if len(tokens) != len(tags):
        raise InputError(f"{path}: row {n}: {len(tokens)} tokens but {len(tags)} tags; every token needs one tag")
    spans, pos = [], 0
    for i, (tok, tag) in enumerate(zip(tokens, tags)):
        if not isinstance(tok, str) or not tok.strip():
            raise InputError(f"{path}: row {n}: token {i} must be a non-empty string, got {tok!r}")
        if not isinstance(tag, str) or not tag.strip():
            what = " (integer tags need their names: write the tag strings)" if isinstance(tag, int) else ""
            raise InputError(f"{path}: row {n}: tag {i} must be a non-empty string, got {tag!r}{what}")
        tok = tok.strip()
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(t.strip() for t in tokens), spans, [t.strip() for t in tags]


def _from_spans(obj: dict, path: Path, n: int, text_column: str) -> tuple[str, list[tuple[int, int]], list[str]]:
    text, entities = obj[text_column], obj["entities"]
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{path}: row {n}: {text_column!r} must be a non-empty string, got {text!r}")
    if not isinstance(entities, list):
        raise InputError(f"{path}: row {n}: \"entities\" must be a list of {{\"start\", \"end\", \"label\"}}")
    ents = []
    for j, e in enumerate(entities):
        if not isinstance(e, dict) or not {"start", "end", "label"} <= set(e):
            raise InputError(f"{path}: row {n}: entity {j} must have \"start\", \"end\" and \"label\", got {e!r}")
        s, t, lab = e["start"], e["end"], e["label"]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (s, t)) or not 0 <= s < t <= len(text):
            raise InputError(f"{path}: row {n}: entity {j}: start {s!r} / end {t!r} must be integers with "
                             f"0 <= start < end <= {len(text)} (the text's length)")
        if not isinstance(lab, str) or not lab.strip() or lab.strip() == OUTSIDE or lab[:2] in PREFIXES:
            raise InputError(f"{path}: row {n}: entity {j}: label {lab!r} must be a plain entity type "
                             "such as \"PER\" (the B-/I- tags are made from the spans)")
        if "text" in e and e["text"] != text[s:t]:
            raise InputError(f"{path}: row {n}: entity {j}: text {e['text']!r} is not what [{s}:{t}] holds "
                             f"({text[s:t]!r})")
        if not text[s:t].strip():
            raise InputError(f"{path}: row {n}: entity {j}: [{s}:{t}] is only whitespace")
        ents.append((s, t, lab.strip(), j))
    ents.sort()
    for (s1, t1, _, j1), (s2, _, _, j2) in zip(ents, ents[1:]):
        if s2 < t1:
            raise InputError(f"{path}: row {n}: entities {j1} and {j2} overlap; one label per character")
    cuts = {b for s, t, _, _ in ents for b in (s, t)}
    spans: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(text + " "):
        if ch.isspace() or i in cuts:
            if start is not None:
                spans.append((start, i))
            start = None if ch.isspace() else i
        elif start is None:
            start = i
    tags = []
    for ws, we in spans:
        inside = next(((s, lab) for s, t, lab, _ in ents if s <= ws and we <= t), None)
        tags.append(OUTSIDE if inside is None else ("B-" if inside[0] == ws else "I-") + inside[1])
    return text, spans, tags


def read_tagged(path: str | Path, *, text_column: str = "text") -> Tagged:
    """Read and validate tagged sentences (either form, per row).

    Raises:
        InputError: naming the file and row of the first problem (tokens/tags length mismatch,
            bad spans, a mix of prefixed and plain tags, no rows).
    """
    path = Path(path)
    texts, words, tags, rows = [], [], [], []
    for n, obj in _rows(path):
        if "tokens" in obj:
            t, w, g = _from_tokens(obj, path, n)
        elif "entities" in obj and text_column in obj:
            t, w, g = _from_spans(obj, path, n, text_column)
        else:
            raise InputError(f"{path}: row {n}: expected \"tokens\" and \"tags\", or {text_column!r} and "
                             f"\"entities\" (it has: {', '.join(map(str, obj))})")
        texts.append(t)
        words.append(tuple(w))
        tags.append(tuple(g))
        rows.append(n)
    if not texts:
        raise InputError(f"{path}: no sentences")
    prefixed = plain = None
    for n, g in zip(rows, tags):
        for tag in g:
            if tag == OUTSIDE:
                continue
            if tag[:2] in PREFIXES:
                prefixed = prefixed or (n, tag)
            else:
                plain = plain or (n, tag)
    if prefixed and plain:
        raise InputError(f"{path}: row {plain[0]}: tag {plain[1]!r} has no B-/I- prefix while row {prefixed[0]}'s "
                         f"{prefixed[1]!r} has one; use one scheme (BIO, or IO without prefixes)")
    return Tagged(tuple(texts), tuple(words), tuple(tags), tuple(rows), str(path))


def tag_names(train: Tagged) -> tuple[str, ...]:
    """``O`` first, then the tags by entity type and prefix (B, I, E, S).

    Raises:
        InputError: no entity at all (every tag ``O``).
    """
    names = {t for g in train.tags for t in g}
    if names <= {OUTSIDE}:
        raise InputError(f"{train.source}: every tag is {OUTSIDE!r}; there is no entity to learn")
    order = {p: i for i, p in enumerate(PREFIXES)}
    rest = sorted(names - {OUTSIDE}, key=lambda t: (_kind(t), order.get(t[:2], -1)))
    return (OUTSIDE, *rest) if OUTSIDE in names else tuple(rest)


# ------------------------------------------------------------------ alignment

def first_pieces(offsets, special, words) -> list[int]:
    """The token index of each word's first piece (-1: the word lost to truncation).

    ``offsets``: each token's (start, end) characters; ``special``: 1 for special tokens; ``words``:
    each word's (start, end). A token belongs to the word holding its first character; pieces
    without characters (a lone byte-level space) belong to none.
    """
    first = [-1] * len(words)
    spans = sorted((s, e, i) for i, (s, e) in enumerate(words))
    j = 0
    for t, ((a, b), sp) in enumerate(zip(offsets, special)):
        if sp or b <= a:
            continue
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        if j == len(spans):
            break
        s, e, w = spans[j]
        if a < e and b > s and first[w] < 0:  # overlaps word w: its first piece
            first[w] = t
    return first


def encode(tokenizer, data: dict, max_length: int, *, labels: bool = True) -> list[dict[str, Any]]:
    """Tokenized rows: input ids, attention mask (token types where the model has them), the labels
    of the first pieces (-100 elsewhere) and, for evaluation, the first piece of each word."""
    enc = tokenizer(list(data["texts"]), truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    rows = []
    for i in range(len(data["texts"])):
        first = first_pieces(enc["offset_mapping"][i], enc["special_tokens_mask"][i], data["words"][i])
        row = {k: enc[k][i] for k in enc if k not in ("offset_mapping", "special_tokens_mask")}
        if labels:
            lab = [-100] * len(row["input_ids"])
            for w, t in enumerate(first):
                if t >= 0:
                    lab[t] = int(data["tags"][i][w])
            row["labels"] = lab
        else:
            row["first"] = first
        rows.append(row)
    return rows


def dataset(tokenizer, data: dict, cfg, max_length: int) -> list[dict[str, Any]]:
    return encode(tokenizer, data, max_length)


def collator(tokenizer, cfg):
    import transformers

    return transformers.DataCollatorForTokenClassification(tokenizer)


# ------------------------------------------------------------------ evaluation

def predict_tags(model, tokenizer, data: dict, max_length: int, names: list[str], batch_size: int = 32) -> list[list[str]]:
    """Each word's predicted tag: its first piece's argmax (``O`` for a word truncated away)."""
    import torch

    rows = encode(tokenizer, data, max_length, labels=False)
    out: list[list[str]] = []
    model.eval()
    with torch.no_grad():
        for b in range(0, len(rows), batch_size):
            chunk = rows[b:b + batch_size]
            batch = tokenizer.pad([{k: v for k, v in r.items() if k != "first"} for r in chunk], return_tensors="pt")
            device = next(model.parameters()).device
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            for r, lg in zip(chunk, logits):
                best = lg.argmax(-1)
                out.append([names[int(best[t])] if t >= 0 else OUTSIDE for t in r["first"]])
    return out


def _seqeval_tags(tags: list[list[str]]) -> list[list[str]]:
    """Plain (IO) labels as seqeval reads them: ``PER`` -> ``I-PER``."""
    return [[t if t == OUTSIDE or t[:2] in PREFIXES else f"I-{t}" for t in g] for g in tags]


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 and per type (seqeval, its default CoNLL mode), plus the
    word-level confusion of entity types (``O`` included)."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    g, p = _seqeval_tags(gold), _seqeval_tags(pred)
    report = classification_report(g, p, output_dict=True, zero_division=0)
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                    "support": int(v["support"])}
                for k, v in report.items() if k not in ("micro avg", "macro avg", "weighted avg")}
    kinds = sorted({_kind(t) for s in gold + pred for t in s} - {OUTSIDE}) + [OUTSIDE]
    confusion = Counter((_kind(a), _kind(b)) for gs, ps in zip(gold, pred) for a, b in zip(gs, ps))
    return {"eval_precision": float(precision_score(g, p, zero_division=0)),
            "eval_recall": float(recall_score(g, p, zero_division=0)),
            "eval_f1": float(f1_score(g, p, zero_division=0)),
            "eval_word_accuracy": float(np.mean([a == b for gs, ps in zip(gold, pred) for a, b in zip(gs, ps)])),
            "per_type": per_type,
            "confusion": {"labels": kinds, "counts": [[confusion[(a, b)] for b in kinds] for a in kinds]}}


def evaluator(tokenizer, data: dict, cfg, max_length: int):
    """``model -> metrics`` on the held-out sentences."""
    names = list(cfg.labels)
    gold = [[names[i] for i in tags] for tags in data["tags"]]

    lost = sum(t < 0 for r in encode(tokenizer, data, max_length, labels=False) for t in r["first"])

    def evaluate(model) -> dict[str, Any]:
        # a word cut off by --max-length is predicted O (it counts against recall)
        return entity_scores(gold, predict_tags(model, tokenizer, data, max_length, names)) | {
            "eval_words_truncated": lost}

    return evaluate


def report_lines(m: dict[str, Any], labels, train: Tagged, ev: Tagged | None) -> list[str]:
    counts = Counter(_kind(t) for g in train.tags for t in g if t != OUTSIDE and not t.startswith(("I-", "E-")))
    lines = [f"- data: `{m['data']}` ({len(train)} sentences, {sum(len(g) for g in train.tags)} words)",
             f"- tags: {', '.join(labels)}",
             f"- training entities: {', '.join(f'{k} ({v})' for k, v in sorted(counts.items()))}",
             f"- held-out sentences: {len(ev) if ev is not None else 'none'}"]
    if m.get("eval_f1") is None:
        return lines
    lines += [f"- held-out entity F1 {m['eval_f1']:.4f} (precision {m['eval_precision']:.4f}, recall "
              f"{m['eval_recall']:.4f}; seqeval, entity level); word accuracy {m['eval_word_accuracy']:.4f}"
              + (f"; {m['eval_words_truncated']} held-out words beyond --max-length {m['max_length']} "
                 "count as O" if m.get("eval_words_truncated") else ""),
              "", "| entity type | precision | recall | F1 | held-out entities |", "|---|---|---|---|---|"]
    for k, v in m["per_type"].items():
        lines.append(f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    conf = m["confusion"]
    lines += ["", "Confusion of entity types per word (rows: held-out tag, columns: predicted):", "",
              "| gold \\ predicted | " + " | ".join(conf["labels"]) + " |", "|---" * (len(conf["labels"]) + 1) + "|"]
    for lab, row in zip(conf["labels"], conf["counts"]):
        lines.append(f"| {lab} | " + " | ".join(str(c) for c in row) + " |")
    return lines + [""]
