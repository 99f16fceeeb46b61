"""Do converted backends give torch's tags and spans? A fine-tuned token-classification and a
fine-tuned question-answering checkpoint (e.g. from `benchmarks/finetune_tasks_minilm.py`) are
converted to every format (int8 and fp16 too); `ner` on the held-out NER sentences and `qa` on the
held-out questions run on every backend and are compared with torch: per backend, the sentences
whose entities (label, start, end) differ, the questions whose best answer span differs, and the
largest score difference. Prints one markdown table.

    PYTHONPATH=. python benchmarks/token_tasks_backends.py NER_CKPT QA_CKPT WORK
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import encoderkit
from encoderkit.backends.catalog import BACKENDS
from encoderkit.conversion import convert
from encoderkit.finetune import NER_TEST, QA_TEST


def _entities(result) -> list[tuple]:
    return [(e["entity_group"], e["start"], e["end"]) for e in result]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ner_ckpt")
    p.add_argument("qa_ckpt")
    p.add_argument("work")
    a = p.parse_args()
    work = Path(a.work)
    sentences = [" ".join(json.loads(line)["tokens"]) for line in NER_TEST.read_text().splitlines() if line.strip()]
    questions = [json.loads(line) for line in QA_TEST.read_text().splitlines() if line.strip()]
    pairs = [(q["question"], q["context"]) for q in questions]
    rows = []
    for task, ckpt in (("ner", a.ner_ckpt), ("qa", a.qa_ckpt)):
        out = work / f"{task}-converted"
        if not out.exists():
            convert(ckpt, list(BACKENDS[b].fmt for b in BACKENDS if not BACKENDS[b].pickle), out,
                    quantize="int8,fp16")
        if task == "ner":
            ref = encoderkit.load(ckpt).ner(sentences, aggregation="simple")
        else:
            ref = encoderkit.load(ckpt).qa(pairs, handle_impossible=True)
        for backend in encoderkit.backends.loading.available_backends(out):
            rt = encoderkit.load(out, backend)
            if task == "ner":
                got = rt.ner(sentences, aggregation="simple")
                differ = sum(_entities(g) != _entities(r) for g, r in zip(got, ref))
                diffs = [abs(ge["score"] - re_["score"]) for g, r in zip(got, ref) if _entities(g) == _entities(r)
                         for ge, re_ in zip(g, r)]
                n = len(sentences)
            else:
                got = rt.qa(pairs, handle_impossible=True)
                top = [g[0] if isinstance(g, list) else g for g in got]
                rtop = [r[0] if isinstance(r, list) else r for r in ref]
                differ = sum((g["start"], g["end"]) != (r["start"], r["end"]) for g, r in zip(top, rtop))
                diffs = [abs(g["score"] - r["score"]) for g, r in zip(top, rtop)
                         if (g["start"], g["end"]) == (r["start"], r["end"])]
                n = len(pairs)
            rows.append((task, backend, differ, n, max(diffs, default=0.0)))
    print(f"cores: {os.cpu_count()}; load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\n| task | backend | differ from torch | of | max |score diff| where equal |\n|---|---|---|---|---|")
    for task, backend, differ, n, worst in rows:
        print(f"| {task} | {backend} | {differ} | {n} | {worst:.2e} |")


if __name__ == "__main__":
    main()
