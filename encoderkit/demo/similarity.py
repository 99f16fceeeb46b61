"""The semantic-similarity table on the real packaged MiniLM, one cosine column per backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PAIRS = [
    ("A man is eating food.", "Someone is having a meal."),
    ("A man is eating food.", "A man is riding a horse."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("How do I reset my password?", "The train to Munich is late."),
    ("The stock market fell 3% on Tuesday.", "Shares dropped by three percent on Tuesday."),
    ("Tokyo is the capital of Japan.", "東京は日本の首都です。"),
]


def similarity_table(model: str | Path, backends: list[str]) -> str:
    """Markdown: cosine of mean-pooled, normalised embeddings per sentence pair and backend."""
    from ..backends.loading import load

    texts = sorted({t for pair in PAIRS for t in pair})
    index = {t: i for i, t in enumerate(texts)}
    cols = {}
    for b in backends:
        emb = load(model, b).embed(texts, normalize=True)
        cols[b] = [float(emb[index[a]] @ emb[index[c]]) for a, c in PAIRS]
    head = "| sentence A | sentence B | " + " | ".join(cols) + " |"
    lines = [head, "|---|---|" + "---|" * len(cols)]
    for i, (a, c) in enumerate(PAIRS):
        lines.append(f"| {a} | {c} | " + " | ".join(f"{cols[b][i]:.4f}" for b in cols) + " |")
    from ..backends.catalog import backend

    fp32 = [b for b in cols if not backend(b).quantized]
    spread = max(np.ptp([cols[b][i] for b in fp32]) for i in range(len(PAIRS))) if fp32 else 0.0
    lines.append("")
    lines.append(f"Largest spread between fp32 backends on one pair: {spread:.1e}.")
    return "\n".join(lines)
