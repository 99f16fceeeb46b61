"""ONNX int8 variants against CTranslate2 int8, in one process: accuracy on varied texts, then speed.

Converts MODEL once per int8 variant (``--quantize int8`` with ``--int8-mode dynamic|static|token``;
``dynamic-s8`` = dynamic with ``--int8-weights s8``), the first one with CTranslate2 too (reused
from --work when present). Then, in ONE process:

- accuracy: cosine of mean-pooled, normalised embeddings against the reference (sentence-
  transformers' own ``encode`` for ``minilm``, else the torch backend) on the varied text set of
  ``benchmarks/minilm_texts.py`` (470 texts for MiniLM): min, mean, min over texts held out of
  every calibration, count below 0.99, min per source, the worst text; for a model with an MLM
  head also fill-mask top-1 agreement with torch on the short masked workload;
- speed, interleaving the systems over --repeats rounds: embed of the varied set and fill-mask of
  the short masked workload (texts/s: best and median wall time, and texts per CPU-second, the
  process's CPU time, which the other jobs on a shared machine disturb far less than the wall
  clock), single-text embed latency p50/p99 on 40 texts. The load average is printed per round.

``--threads 1`` (the default) times every system on one intra-op thread: CPU time then equals
compute time, whatever spin-waiting policy a runtime's thread pool has. ``--threads 0`` leaves
each runtime its own default.

    python -m benchmarks.int8_search minilm --name minilm
    python -m benchmarks.int8_search CKPT --name roberta-base-random   # encoderkit init-random CKPT --size base
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _convert(model: str, out: Path, mode: str, with_ct2: bool) -> None:
    from encoderkit.conversion import convert

    kind, _, weights = mode.partition("-")
    formats = ["onnx", "ctranslate2"] if with_ct2 else ["onnx"]
    t = time.perf_counter()
    convert(model, formats, out, quantize="int8", int8_mode=kind, force=True,
            **({"int8_weights": weights} if weights else {}))
    print(f"converted {mode} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)


def _reference(model: str, texts: list[str]) -> tuple[np.ndarray, str]:
    import encoderkit

    if model == "minilm":
        from sentence_transformers import SentenceTransformer

        from encoderkit.storage.checkpoint import packaged_model_dir

        st = SentenceTransformer(str(packaged_model_dir("minilm")), device="cpu")
        return st.encode(texts, normalize_embeddings=True, batch_size=32), "sentence-transformers"
    return encoderkit.load(model).embed(texts, normalize=True), "torch"


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--name", required=True)
    p.add_argument("--work", type=Path, default=Path("bench-out/int8_search"))
    p.add_argument("--modes", default="dynamic,dynamic-s8,static,token")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of every system (0: each one's default)")
    p.add_argument("--no-speed", action="store_true")
    a = p.parse_args(argv)
    import encoderkit
    from encoderkit.bench import fit_workload
    from encoderkit.core.texts import read_workload

    from .minilm_texts import varied_texts

    modes = [m for m in a.modes.split(",") if m]
    dirs = {m: a.work / a.name / m for m in modes}
    for i, (m, d) in enumerate(dirs.items()):
        if not (d / "report.md").exists():
            _convert(a.model, d, m, with_ct2=i == 0)
    th = {"threads": a.threads} if a.threads else {}
    first = dirs[modes[0]]
    systems = {"onnx fp32": encoderkit.load(first, "onnx", **th),
               **{f"onnx-int8 {m}": encoderkit.load(d, "onnx-int8", **th) for m, d in dirs.items()},
               "ctranslate2-int8": encoderkit.load(first, "ctranslate2-int8", **th)}
    tok = systems["onnx fp32"].tokenizer
    texts, src = varied_texts(tok)
    src = np.array(src)
    ref, refname = _reference(a.model, texts)
    masked = None
    if systems["onnx fp32"].spec.has_mlm_head:
        masked, _ = fit_workload(read_workload("short_masked", tok.mask_token), tok, need_mask=True)
        want = [r[0][0]["token"] for r in encoderkit.load(a.model).fill_mask(masked, top_k=1)]
    acc = {}
    for s, rt in systems.items():
        cos = (rt.embed(texts, normalize=True) * ref).sum(1)
        w = int(np.argmin(cos))
        held = src != "shipped"
        acc[s] = {"min cosine": float(cos.min()), "mean cosine": float(cos.mean()),
                  "held-out min": float(cos[held].min()), "texts < 0.99": int((cos < 0.99).sum()),
                  "worst": f"{texts[w][:40]!r} ({src[w]})",
                  "min by source": {k: round(float(cos[src == k].min()), 4) for k in dict.fromkeys(src)}}
        if masked:
            got = [r[0][0]["token"] for r in rt.fill_mask(masked, top_k=1)]
            acc[s]["fill-mask top-1 vs torch"] = float(np.mean([g == x for g, x in zip(got, want)]))
        print(f"{s:24s} " + json.dumps(acc[s]), flush=True)
    rows: dict[str, dict] = {s: {} for s in systems}
    loads = []
    if not a.no_speed:
        jobs = {"embed": (lambda rt: rt.embed(texts), len(texts))}
        if masked:
            jobs["fill-mask"] = (lambda rt: rt.fill_mask(masked), len(masked))
        single = texts[:40]
        wall = {s: {j: [] for j in jobs} for s in systems}
        cpu = {s: {j: [] for j in jobs} for s in systems}
        lat: dict[str, list[float]] = {s: [] for s in systems}
        for rt in systems.values():
            for fn, _ in jobs.values():
                fn(rt)
        for r in range(a.repeats):
            for s, rt in systems.items():
                for j, (fn, _) in jobs.items():
                    c, t = time.process_time(), time.perf_counter()
                    fn(rt)
                    wall[s][j].append(time.perf_counter() - t)
                    cpu[s][j].append(time.process_time() - c)
                for text in single:
                    t = time.perf_counter()
                    rt.embed([text])
                    lat[s].append(time.perf_counter() - t)
            loads.append(os.getloadavg())
            print(f"repeat {r + 1}/{a.repeats}, load average {loads[-1][0]:.2f}", file=sys.stderr, flush=True)
        for s in systems:
            for j, (_, n) in jobs.items():
                rows[s][f"{j} texts/s (best)"] = n / min(wall[s][j])
                rows[s][f"{j} texts/s (median)"] = n / statistics.median(wall[s][j])
                rows[s][f"{j} texts/CPU-s"] = n / statistics.median(cpu[s][j])
            rows[s]["latency p50 ms"] = 1000 * statistics.median(lat[s])
            rows[s]["latency p99 ms"] = 1000 * float(np.percentile(lat[s], 99))
    md = [f"# ONNX int8 variants vs CTranslate2 int8: {a.name}", "",
          f"`python -m benchmarks.int8_search {a.model} --name {a.name} --modes {a.modes} --repeats {a.repeats} "
          f"--threads {a.threads}`; {len(texts)} texts ({', '.join(f'{k} {int((src == k).sum())}' for k in dict.fromkeys(src))}), "
          f"reference: {refname}. Load average per repeat: "
          + (", ".join(f"{x[0]:.2f}" for x in loads) or "-") + " (2 cores).", "",
          "## Accuracy", "", "| system | min cosine | mean | held-out min | texts < 0.99 | worst text |"
          + (" fill-mask top-1 vs torch |" if masked else ""),
          "|---|---|---|---|---|---|" + ("---|" if masked else "")]
    for s, r in acc.items():
        md.append(f"| {s} | {r['min cosine']:.4f} | {r['mean cosine']:.5f} | {r['held-out min']:.4f} | "
                  f"{r['texts < 0.99']} | {r['worst']} |" + (f" {r['fill-mask top-1 vs torch']:.2f} |" if masked else ""))
    if rows["onnx fp32"]:
        cols = list(rows["onnx fp32"])
        md += ["", "## Speed (ratios: to ctranslate2-int8, same run)", "", "| system | " + " | ".join(cols) + " |",
               "|---" * (len(cols) + 1) + "|"]
        ct = rows["ctranslate2-int8"]
        for s, r in rows.items():
            cells = []
            for c in cols:
                if c.startswith("latency"):
                    cells.append(f"{r[c]:.1f} ({ct[c] / r[c]:.2f}×)")
                else:
                    cells.append(f"{r[c]:.1f} ({r[c] / ct[c]:.2f}×)")
            md.append(f"| {s} | " + " | ".join(cells) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"int8_search_{a.name}.md").write_text("\n".join(md) + "\n")
    (RESULTS / f"int8_search_{a.name}.json").write_text(json.dumps({"accuracy": acc, "speed": rows, "load": loads},
                                                                   indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
