"""ONNX int8 modes side by side: fp32, dynamic int8, static int8 (--int8-mode static); --modes may name
token too (the default --int8-mode now; benchmarks/int8_search.py compares every mode with CTranslate2
int8 on 470 varied texts).

Converts MODEL twice (``--quantize int8`` dynamic, then static; reused if present under --work),
then in ONE process, interleaving the systems over --repeats rounds: texts/s of embed on the
256-text embed workload and of fill-mask on the short masked workload (models with an MLM head),
and single-text embed latency p50 (32 texts, one per call). Accuracy: the convert gate's figures
(report parity vs torch) and the per-sentence cosine of mean-pooled embeddings vs torch on the
embed workload's first 64 texts. Writes benchmarks/results/int8_modes_<name>.{md,json}.

    python -m benchmarks.int8_modes minilm --name minilm
    python -m benchmarks.int8_modes CKPT_DIR --name roberta-base-random   # encoderkit init-random CKPT_DIR --size base
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--name", required=True)
    p.add_argument("--work", type=Path, default=Path("bench-out/int8_modes"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default="dynamic,static",
                   help="int8 variants: dynamic, static, or MODE-s8 / MODE-u8 for a weight type (e.g. dynamic-s8)")
    a = p.parse_args(argv)
    import encoderkit
    from encoderkit.bench import fit_workload, read_workload
    from encoderkit.conversion import convert

    work = a.work / a.name
    modes = [m for m in a.modes.split(",") if m]
    dirs = {m: work / m for m in modes}
    reports = {}
    for mode, d in dirs.items():
        if not (d / "report.md").exists():
            t = time.perf_counter()
            kind, _, weights = mode.partition("-")
            convert(a.model, ["onnx"], d, quantize="int8", int8_mode=kind, force=True,
                    **({"int8_weights": weights} if weights else {}))
            print(f"converted {mode} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        reports[mode] = (d / "report.md").read_text()
    systems = {"onnx fp32": encoderkit.load(dirs[modes[0]], "onnx"),
               **{f"onnx-int8 {m}": encoderkit.load(dirs[m], "onnx-int8") for m in modes}}
    ref = encoderkit.load(a.model)  # torch
    tok = ref.tokenizer
    embed_texts, _ = fit_workload(read_workload("embed_corpus", tok.mask_token), tok, need_mask=False)
    masked = None
    if ref.spec.has_mlm_head:
        masked, _ = fit_workload(read_workload("short_masked", tok.mask_token), tok, need_mask=True)
    single = embed_texts[:32]
    jobs = {"embed texts/s": (lambda rt: rt.embed(embed_texts), len(embed_texts))}
    if masked:
        jobs["fill-mask texts/s"] = (lambda rt: rt.fill_mask(masked), len(masked))
    times: dict[str, dict[str, list[float]]] = {s: {j: [] for j in jobs} for s in systems}
    lat: dict[str, list[float]] = {s: [] for s in systems}
    for rt in systems.values():  # warm-up
        for fn, _ in jobs.values():
            fn(rt)
    for r in range(a.repeats):
        for s, rt in systems.items():
            for j, (fn, _) in jobs.items():
                t = time.perf_counter()
                fn(rt)
                times[s][j].append(time.perf_counter() - t)
            for text in single:
                t = time.perf_counter()
                rt.embed([text])
                lat[s].append(time.perf_counter() - t)
        print(f"repeat {r + 1}/{a.repeats}", file=sys.stderr, flush=True)
    acc_texts = embed_texts[:64]
    want = ref.embed(acc_texts, normalize=True)
    rows = {}
    for s, rt in systems.items():
        row = {j: n / statistics.median(times[s][j]) for j, (_, n) in jobs.items()}
        row["latency p50 ms"] = 1000 * statistics.median(lat[s])
        cos = (rt.embed(acc_texts, normalize=True) * want).sum(1)
        row["min cosine vs torch (64 texts)"] = float(cos.min())
        rows[s] = row
    for mode in dirs:
        info = json.loads((dirs[mode] / "onnx" / "onnx_info.json").read_text())
        rows[f"onnx-int8 {mode}"]["encoder MB"] = (dirs[mode] / "onnx" / "encoder.int8.onnx").stat().st_size / 1e6
        if "int8_static" in info:
            st = info["int8_static"]
            rows["onnx-int8 static"]["static: MatMuls int8 / kept fp32"] = \
                f"{st['quantized_matmuls']} / {len(st['excluded'])}"
    gate = {m: [ln for ln in reports[m].splitlines() if ln.startswith("| onnx-int8 |")] for m in dirs}
    cols = list(jobs) + ["latency p50 ms", "min cosine vs torch (64 texts)"]
    fp32 = rows["onnx fp32"]
    md = [f"# ONNX int8 modes: {a.name}", "", f"`python -m benchmarks.int8_modes {a.model} --name {a.name} --modes {a.modes}` "
          f"({a.repeats} interleaved repeats, medians; 2 shared cores: compare ratios, not absolutes)", "",
          "| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for s, row in rows.items():
        cells = []
        for c in cols:
            v = row[c]
            if c.endswith("texts/s"):
                cells.append(f"{v:.1f} ({v / fp32[c]:.2f}× fp32)")
            elif c.startswith("latency"):
                cells.append(f"{v:.1f} ({fp32[c] / v:.2f}× fp32)")
            else:
                cells.append(f"{v:.4f}")
        md.append(f"| {s} | " + " | ".join(cells) + " |")
    md += ["", "Convert gate (report.md, vs torch on the probe batches):", ""]
    for m, lines in gate.items():
        md += [f"- {m}: " + "; ".join(" ".join(x.strip() for x in ln.split("|")[2:4]) for ln in lines
                                       if "random-weight" not in ln)]
    if "static: MatMuls int8 / kept fp32" in rows.get("onnx-int8 static", {}):
        md.append(f"- static MatMuls int8 / kept fp32: {rows['onnx-int8 static']['static: MatMuls int8 / kept fp32']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"int8_modes_{a.name}.md").write_text("\n".join(md) + "\n")
    (RESULTS / f"int8_modes_{a.name}.json").write_text(json.dumps({"rows": rows, "gate": gate, "times": times},
                                                                  indent=2) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
