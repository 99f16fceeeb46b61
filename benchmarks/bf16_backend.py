"""The torch-bf16 backend against torch fp32 on the packaged MiniLM, side by side in one process:
min/mean cosine of mean-pooled embeddings on benchmarks/data/varied_texts.txt, fill-mask-free
(MiniLM has no MLM head), and embed texts/s over interleaved rounds (best of --repeats).

    python -m benchmarks.bf16_backend [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import encoderkit

TEXTS = Path(__file__).resolve().parent / "data" / "varied_texts.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    texts = [t for t in TEXTS.read_text().splitlines() if t.strip()]
    th = {"threads": args.threads} if args.threads else {}
    systems = {b: encoderkit.load("minilm", b, device="cpu", **th) for b in ("torch", "torch-bf16")}
    ref = systems["torch"].embed(texts)
    got = systems["torch-bf16"].embed(texts)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    print(f"{len(texts)} texts; torch-bf16 vs torch: min cosine {cos.min():.5f}, mean {cos.mean():.6f}, "
          f"< 0.999: {(cos < 0.999).sum()}")
    best = {b: float("inf") for b in systems}
    loads = []
    for _ in range(args.repeats):  # interleaved rounds: both see the same load
        for b, rt in systems.items():
            t = time.perf_counter()
            rt.embed(texts)
            best[b] = min(best[b], time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    for b in systems:
        print(f"{b}: {len(texts) / best[b]:.1f} texts/s (best of {args.repeats}), "
              f"{best['torch'] / best[b]:.2f}x torch")
    print(f"load average (1 min) after each round: {', '.join(f'{x:.2f}' for x in loads)} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
