"""The varied real-text set int8 (and bf16) accuracy is judged on: at least 400 texts.

Sources, in order, duplicates removed, each cut (at a word boundary) to 256 tokens of the model's
tokenizer, the length sentence-transformers' all-MiniLM-L6-v2 truncates at, so every system sees
the same input:

- ``shipped``: ``encoderkit/corpus.txt`` and ``encoderkit/workloads/*.txt`` (249 distinct lines;
  static int8 calibrates on four in five of them);
- ``pairs``: the 32 sentences of ``parity_tests/test_real_minilm.py`` (multilingual, digits,
  punctuation, one long);
- ``varied``: ``benchmarks/data/varied_texts.txt``, 81 hand-written lines (one-word replies, code,
  SQL, URLs, logs, emoji, 8 scripts, reviews, legal, medical, repeated tokens);
- ``pydoc``: 100 prose paragraphs of Python's own reference documentation (``pydoc_data.topics``,
  shipped with CPython), a seeded sample: technical English of every length up to the cut;
- ``doc-sentences``: the long workload documents' sentences that are not already a shipped line.

Every source but ``shipped`` is held out from static calibration; ``held_out`` marks them.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
PYDOC_PARAGRAPHS = 100


def _pairs() -> list[str]:
    from parity_tests.test_real_minilm import TEXTS

    return list(TEXTS)


def _pydoc(n: int = PYDOC_PARAGRAPHS, seed: int = 0) -> list[str]:
    import pydoc_data.topics as topics

    paras = [re.sub(r"\s+", " ", p).strip() for v in topics.topics.values() for p in re.split(r"\n\s*\n", v)]
    prose = sorted({p for p in paras if len(p) > 40 and "." in p and not p.startswith((">>>", "*", "-", "=", "|"))})
    random.Random(seed).shuffle(prose)
    return prose[:n]


def _cut(text: str, count) -> str:
    words = text.split()
    while count(" ".join(words)) > MAX_TOKENS and len(words) > 1:
        words = words[: max(1, int(len(words) * 0.9))]
    return " ".join(words)


def varied_texts(tokenizer) -> tuple[list[str], list[str]]:
    """(texts, source of each) for a model whose TextTokenizer is ``tokenizer``."""
    from encoderkit.backends.onnx.static import shipped_texts
    from encoderkit.core.texts import read_workload

    mask = tokenizer.mask_token
    shipped = shipped_texts(mask)
    docs = read_workload("long_docs", mask)
    sentences = [s for d in docs for s in re.split(r"(?<=[.!?])\s+", d)]
    varied = [ln.replace("<mask>", mask) for ln in (DATA / "varied_texts.txt").read_text().splitlines() if ln.strip()]
    sources = {"shipped": shipped, "pairs": _pairs(), "varied": varied, "pydoc": _pydoc(),
               "doc-sentences": sentences}

    def count(t: str) -> int:
        return len(tokenizer.encode([t], truncate=True)[0])

    seen, texts, src = set(), [], []
    for name, items in sources.items():
        for t in items:
            t = _cut(t, count)
            if t and t not in seen:
                seen.add(t)
                texts.append(t)
                src.append(name)
    return texts, src
