"""Single-text latency: ONNX Runtime session options for batch-1 calls, and our own per-call overhead.

For the onnx and onnx-int8 backends of MiniLM (embed: it has no MLM head) and a random
roberta-base (fill-mask), every option set gets its own ONNX Runtime sessions swapped into one
loaded runtime, and the same short texts go through ``rt.fill_mask([text])`` / ``rt.embed([text])``
one call at a time. Option sets run in blocks of all the texts, their order rotated every round,
so each sees the others' leftovers alike; ratios are p50 against the default options of the same
run. Then cProfile over single-text calls of the default runtime says how much of a call is ours
(tokenize, batch, pad, gather, softmax/top-k, decode) and how much is ONNX Runtime's.

    python -m benchmarks.latency_options [--rounds 5] [--out benchmarks/results/latency_options.md]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out" / "latency"

# name -> (session config entries, SessionOptions attributes); "default" is what the runtime does
OPTION_SETS: dict[str, tuple[dict[str, str], dict[str, object]]] = {
    "default": ({}, {}),  # ONNX Runtime's defaults (spinning on), what the runtime did before this study
    "intra=1": ({}, {"intra_op_num_threads": 1}),
    "intra=2": ({}, {"intra_op_num_threads": 2}),
    "no spinning": ({"session.intra_op.allow_spinning": "0"}, {}),
    "intra=2, no spinning": ({"session.intra_op.allow_spinning": "0"}, {"intra_op_num_threads": 2}),
    "parallel, inter=2": ({}, {"execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2}),
    "opt=extended": ({}, {"graph_optimization_level": "ORT_ENABLE_EXTENDED"}),
    "opt=basic": ({}, {"graph_optimization_level": "ORT_ENABLE_BASIC"}),
}


def models() -> dict[str, Path]:
    from encoderkit.conversion import convert
    from encoderkit.storage.random_init import init_random

    out = {}
    base = WORK / "roberta-base-random"
    if not (base / "manifest.json").is_file():
        init_random(base, "base", seed=0, force=base.exists())
    for name, src in (("minilm", "minilm"), ("roberta-base-random", base)):
        conv = WORK / f"{name}-onnx"
        if not (conv / "manifest.json").is_file():
            convert(src, ["safetensors", "onnx"], conv, quantize="int8", force=conv.exists())
        out[name] = conv
    return out


def sessions(rt, config: dict[str, str], attrs: dict[str, object]):
    """The runtime's encoder and head graphs as sessions built with these options."""
    import onnxruntime as ort

    def make(name: str):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        for k, v in attrs.items():
            if k == "execution_mode":
                v = getattr(ort.ExecutionMode, v)
            elif k == "graph_optimization_level":
                v = getattr(ort.GraphOptimizationLevel, v)
            setattr(opts, k, v)
        for k, v in config.items():
            opts.add_session_config_entry(k, v)
        return ort.InferenceSession(str(rt.directory / name), opts, providers=["CPUExecutionProvider"])

    enc = make(rt.info["files"][rt.encoder_key])
    head = make(rt.info["files"]["head"]) if rt.head is not None else None
    return enc, head


def measure(rt, texts: list[str], rounds: int) -> dict[str, list[float]]:
    call = (lambda x: rt.fill_mask([x])) if rt.spec.has_mlm_head else (lambda x: rt.embed([x]))
    variants = {name: sessions(rt, *opts) for name, opts in OPTION_SETS.items()}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            rt.encoder, rt.head = variants[name]
            call(texts[0])  # first call after a switch: not timed
            for x in texts:
                t = time.perf_counter()
                call(x)
                samples[name].append(time.perf_counter() - t)
    return samples


def throughput(rt, texts: list[str], rounds: int, names=("default", "no spinning", "intra=2, no spinning")
               ) -> dict[str, list[float]]:
    """Whole-workload calls (the runtime's own token-budget batches): does an option that helps one
    text cost throughput?"""
    call = (lambda xs: rt.fill_mask(xs)) if rt.spec.has_mlm_head else (lambda xs: rt.embed(xs))
    variants = {name: sessions(rt, *OPTION_SETS[name]) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            rt.encoder, rt.head = variants[name]
            call(texts[:2])
            t = time.perf_counter()
            call(texts)
            samples[name].append(len(texts) / (time.perf_counter() - t))
    return samples


def profile(rt, texts: list[str], calls: int = 200) -> tuple[float, list[tuple[str, float]], str]:
    """Share of single-text call time spent outside ONNX Runtime's ``run``, and the top own costs."""
    call = (lambda x: rt.fill_mask([x])) if rt.spec.has_mlm_head else (lambda x: rt.embed([x]))
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        call(texts[i % len(texts)])
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    ort_run = sum(v[3] for k, v in stats.stats.items() if k[2] == "run" and "onnxruntime" in k[0])
    own = sorted(((f"{Path(k[0]).name}:{k[2]}", v[2]) for k, v in stats.stats.items()
                  if "onnxruntime" not in k[0] and "onnxruntime" not in k[2]), key=lambda kv: -kv[1])[:8]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(18)
    return 1 - ort_run / total, own, buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_options.md")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import encoderkit
    from encoderkit.bench import machine, read_workload

    m = machine()
    lines = ["# Single-text latency: ONNX Runtime session options", "",
             f"`python -m benchmarks.latency_options --rounds {a.rounds}` on {m['cpu']}, {m['cores']} cores "
             "(shared with other jobs: read the ratios, taken within one run, not the absolute ms). One text per "
             "call through encoderkit's own task code (fill-mask; MiniLM has no MLM head: embed). Ratio: p50 of "
             "the option set / p50 of the default options (lower is faster).", ""]
    profiles = []
    for mname, path in models().items():
        for backend in ("onnx", "onnx-int8"):
            rt = encoderkit.load(path, backend)
            texts = read_workload("short_masked", rt.tokenizer.mask_token)[:24]
            print(f"{mname} {backend} ...", file=sys.stderr, flush=True)
            samples = measure(rt, texts, a.rounds)
            base = statistics.median(samples["default"])
            lines += [f"## {mname}, {backend} ({'fill-mask' if rt.spec.has_mlm_head else 'embed'}, "
                      f"{len(texts)} texts x {a.rounds} rounds)", "",
                      "| options | p50 ms | p95 ms | p50 / default |", "|---|---|---|---|"]
            for name, xs in samples.items():
                p50 = statistics.median(xs)
                lines.append(f"| {name} | {p50 * 1e3:.2f} | {np.percentile(xs, 95) * 1e3:.2f} | {p50 / base:.2f} |")
            lines.append("")
            work = read_workload("short_masked" if rt.spec.has_mlm_head else "embed_corpus", rt.tokenizer.mask_token)
            tput = throughput(rt, work, max(3, a.rounds // 2))
            base = statistics.median(tput["default"])
            lines += [f"Whole workload at once ({len(work)} texts, token-budget batches): "
                      + ", ".join(f"{n} {statistics.median(v):.1f} texts/s ({statistics.median(v) / base:.2f}x)"
                                  for n, v in tput.items()), ""]
            rt = encoderkit.load(path, backend, spinning=True)  # the profile: ORT's defaults, as before
            share, own, text = profile(rt, texts)
            profiles.append((mname, backend, share, own, text))
    lines += ["## Per-call time outside ONNX Runtime (cProfile, 200 single-text calls, default options)", "",
              "| model, backend | share of call time not in `InferenceSession.run` | top own functions (tottime s) |",
              "|---|---|---|"]
    for mname, backend, share, own, _ in profiles:
        lines.append(f"| {mname}, {backend} | {share:.1%} | " + ", ".join(f"`{n}` {t:.3f}" for n, t in own[:5]) + " |")
    lines += ["", "<details><summary>cProfile, cumulative (roberta-base-random, onnx-int8)</summary>", "", "```",
              next(t for mm, b, _, _, t in profiles if b == "onnx-int8" and mm.startswith("roberta")).strip(),
              "```", "</details>", ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
