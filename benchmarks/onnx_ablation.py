"""Which change buys what for fill-mask on ONNX Runtime, and which graph int8 should quantize.

Runs side by side in one process (interleaved repeats) on the short masked sentences:
pipeline at batch 1 (the baseline), ORT unfused one text per call, unfused batched, fused batched,
int8 quantized from the fused graph and from the unfused graph; reports texts/s, the ratio to the
pipeline, and int8 accuracy against fp32 (top-1, top-5 overlap, mean-pooled cosine).

    python -m benchmarks.onnx_ablation FUSED_CONVERT_DIR UNFUSED_CONVERT_DIR [--repeats 3]
(both made with `encoderkit convert ... --to onnx --quantize int8`, the second with --no-fuse)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("fused", type=Path)
    p.add_argument("unfused", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench-out/onnx_ablation.json"))
    a = p.parse_args(argv)
    import encoderkit
    from encoderkit.bench import read_workload
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    fused = encoderkit.load(a.fused, "onnx")
    unfused = encoderkit.load(a.unfused, "onnx")
    int8_fused = encoderkit.load(a.fused, "onnx-int8")
    int8_unfused = encoderkit.load(a.unfused, "onnx-int8")
    ckpt = a.fused / "safetensors"
    pipe = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(ckpt),
                    tokenizer=AutoTokenizer.from_pretrained(ckpt), device="cpu")
    texts = read_workload("short_masked", fused.tokenizer.mask_token)
    systems = {
        "pipeline, batch 1": lambda: [pipe(t) for t in texts],
        "ORT unfused, one text per call": lambda: [unfused.fill_mask([t]) for t in texts],
        "ORT unfused, token-budget batches": lambda: unfused.fill_mask(texts),
        "ORT fused, token-budget batches": lambda: fused.fill_mask(texts),
        "int8 from fused graph": lambda: int8_fused.fill_mask(texts),
        "int8 from unfused graph": lambda: int8_unfused.fill_mask(texts),
    }
    for fn in systems.values():
        fn()  # warm-up
    times = {k: [] for k in systems}
    for r in range(a.repeats):
        for k, fn in systems.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
        print(f"repeat {r + 1}/{a.repeats}", file=sys.stderr, flush=True)
    base = len(texts) / statistics.median(times["pipeline, batch 1"])
    rows = {k: {"texts_per_s": len(texts) / statistics.median(v), "times": v} for k, v in times.items()}
    ref = fused.fill_mask(texts, top_k=5)
    emb_texts = read_workload("embed_corpus", "", limit=64)
    ref_emb = fused.embed(emb_texts, normalize=True)
    for name, rt in (("int8 from fused graph", int8_fused), ("int8 from unfused graph", int8_unfused)):
        got = rt.fill_mask(texts, top_k=5)
        pairs = [(g, w) for gt, wt in zip(got, ref) for g, w in zip(gt, wt)]
        rows[name]["top1"] = float(np.mean([g[0]["token"] == w[0]["token"] for g, w in pairs]))
        rows[name]["top5_overlap"] = float(np.mean([len({x["token"] for x in g} & {x["token"] for x in w}) / 5
                                                    for g, w in pairs]))
        rows[name]["cosine_min"] = float((rt.embed(emb_texts, normalize=True) * ref_emb).sum(1).min())
        rows[name]["encoder_mb"] = (rt.directory / rt.info["files"]["encoder_int8"]).stat().st_size / 1e6
    print("| system | texts/s | × pipeline bs1 | top-1 | top-5 overlap | min cosine |\n|---|---|---|---|---|---|")
    for k, v in rows.items():
        acc = (f"{v['top1']:.3f} | {v['top5_overlap']:.3f} | {v['cosine_min']:.4f}" if "top1" in v else " | | ")
        print(f"| {k} | {v['texts_per_s']:.2f} | {v['texts_per_s'] / base:.2f}× | {acc} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
