"""Quantized fill-mask judged on a trained masked LM (not random weights, whose flat distributions
make top-1 agreement meaningless): a checkpoint trained with `encoderkit finetune --task mlm` (e.g.
MiniLM on the baking corpus, `benchmarks/finetune_tasks_minilm.py`) is converted with every
quantized variant; each held-out corpus line gets one word masked at a time (every third word), and
each quantized backend's top-1 / top-5 is compared with torch fp32's; also how often torch's own
top-1 is the masked word (the model's accuracy, so the agreement figure means something).

    PYTHONPATH=. python benchmarks/int8_trained_mlm.py MLM_CKPT WORK
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import encoderkit
from encoderkit.backends.catalog import BACKENDS
from encoderkit.conversion import convert
from encoderkit.finetune import MLM_TEST


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("work")
    a = p.parse_args()
    out = Path(a.work) / "mlm-converted"
    if not out.exists():
        # no gate: the point is to measure every variant here, including one the gate would refuse
        convert(a.ckpt, ["safetensors", "onnx", "ctranslate2"], out, quantize="int8,fp16", validate=False)
    ref_rt = encoderkit.load(a.ckpt)
    mask = ref_rt.tokenizer.mask_token
    texts, words = [], []
    for line in MLM_TEST.read_text().splitlines():
        ws = line.split()
        for i in range(1, len(ws), 3):
            if ws[i].isalpha():
                texts.append(" ".join(ws[:i] + [mask] + ws[i + 1:]))
                words.append(ws[i].lower())
    ref = ref_rt.fill_mask(texts, top_k=5)
    ref_top = [r[0][0]["token_str"].strip().lower() for r in ref]
    acc = sum(t == w for t, w in zip(ref_top, words)) / len(texts)
    print(f"cores: {os.cpu_count()}; load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{len(texts)} masked words from {MLM_TEST.name}; torch fp32 top-1 = the masked word: {acc:.3f}")
    print("\n| backend | top-1 agreement with torch | top-5 overlap with torch |\n|---|---|---|")
    for backend in encoderkit.backends.loading.available_backends(out):
        if not BACKENDS[backend].quantized:
            continue
        got = encoderkit.load(out, backend).fill_mask(texts, top_k=5)
        top1 = sum(g[0][0]["token"] == r[0][0]["token"] for g, r in zip(got, ref)) / len(texts)
        top5 = sum(len({x["token"] for x in g[0]} & {x["token"] for x in r[0]}) / 5 for g, r in zip(got, ref)) / len(texts)
        print(f"| {backend} | {top1:.3f} | {top5:.3f} |")


if __name__ == "__main__":
    main()
