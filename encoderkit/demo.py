"""`make demo`: the main job on the embedded default, with no network.

Builds a random-weight roberta-large (no hub is reachable here), runs fill-mask and embed on it
through the torch reference backend, and says how to do the same with the real weights.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("demo-out")
SENTENCES = ["The capital of France is <mask>.", "Engineers ship one <mask> to several runtimes.",
             "The <mask> flows through the valley and into the <mask>."]


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    import encoderkit
    from encoderkit.random_init import init_random

    ckpt = OUT / "roberta-large-random"
    banner("random-weight roberta-large")
    print("No model hub is reachable here, so the weights are RANDOM (seed 0): the architecture,\n"
          "vocabulary size and tokenizer are roberta-large's, the predictions are noise. Where a hub\n"
          "is reachable, the same pipeline runs on the real model with:\n"
          "    encoderkit convert FacebookAI/roberta-large --to all --out roberta-large-converted")
    if not (ckpt / "manifest.json").is_file():
        t = time.perf_counter()
        init_random(ckpt, "large", seed=0, force=ckpt.exists())
        print(f"built {ckpt} in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    rt = encoderkit.load(ckpt)
    print(f"loaded on torch in {time.perf_counter() - t:.1f}s: {rt.spec.num_layers} layers, "
          f"hidden {rt.spec.hidden_size}, vocab {rt.spec.vocab_size}")

    banner("fill-mask (torch backend)")
    t = time.perf_counter()
    results = rt.fill_mask(SENTENCES, top_k=3)
    dt = time.perf_counter() - t
    for text, per_mask in zip(SENTENCES, results):
        print(text)
        for m, preds in enumerate(per_mask):
            shown = ", ".join(f"{p['token_str']!r} {p['score']:.5f}" for p in preds)
            print(f"  mask {m + 1}: {shown}")
    print(f"({len(SENTENCES)} texts in {dt:.2f}s)")

    banner("embed (mean pooling, normalised)")
    texts = ["A cat sat on the mat.", "A dog lay on the rug.", "Quarterly revenue rose by three percent."]
    emb = rt.embed(texts, normalize=True)
    sims = emb @ emb.T
    for i, t in enumerate(texts):
        print(f"  {t:<45} " + " ".join(f"{s:+.3f}" for s in sims[i]))
    print(f"  shape {emb.shape}, dtype {emb.dtype}; similarities of random weights carry no meaning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
