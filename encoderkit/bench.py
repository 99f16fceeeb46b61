"""`encoderkit bench`: every backend against the tools people use today, side by side.

All systems run in ONE process, interleaved repeat by repeat (r1: A B C, r2: A B C, ...), so
machine drift hits all alike; ratios are only ever taken between figures of the same run.
Peers: transformers' fill-mask pipeline (batch 1 and 8), sentence-transformers ``encode`` (mean
pooling) and plain AutoModel + mean pooling at a fixed batch size.
"""
from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import resolve_model
from .io import read_manifest
from .progress import bar, say
from .registry import BACKENDS, REFERENCE, backend

# The workloads ship inside the package (a non-editable install runs `encoderkit bench` too).
WORKLOADS = Path(__file__).resolve().parent / "workloads"
PEER_BATCH = 32  # AutoModel + mean pooling batch size


def read_workload(name: str, mask_token: str, workloads: Path = WORKLOADS, limit: int | None = None) -> list[str]:
    lines = [ln for ln in (workloads / f"{name}.txt").read_text().splitlines() if ln.strip()]
    return [ln.replace("<mask>", mask_token) for ln in lines][:limit]


def fit_workload(texts: list[str], tokenizer, *, need_mask: bool) -> tuple[list[str], dict[str, int]]:
    """Cut texts longer than the model (by ITS tokenizer) at a token boundary, so that every
    system gets the same valid input (a peer would otherwise fail, or truncate its own way).
    A fill-mask text whose mask falls beyond the cut is dropped.

    Returns:
        (fitted texts, {"truncated": n, "dropped": m})
    """
    out, truncated, dropped = [], 0, 0
    for text in texts:
        cut = tokenizer.cut_to_fit(text)
        if cut != text:
            if not cut.strip() or (need_mask and tokenizer.mask_token not in cut):
                dropped += 1
                continue
            truncated += 1
        out.append(cut)
    return out, {"truncated": truncated, "dropped": dropped}


def gemm_peak_gflops(n: int = 1024, k: int = 4096, repeats: int = 5) -> float:
    """fp32 matmul peak of this machine (torch, all threads), measured now."""
    import torch

    a, b = torch.randn(n, k), torch.randn(k, n)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n * k * n / best / 1e9


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_flops(spec, n_tokens: list[int], n_masks: int) -> float:
    """FLOPs of the real (unpadded) tokens: encoder matmuls + attention, and the LM head at masks."""
    h, i, L = spec.hidden_size, spec.intermediate_size, spec.num_layers
    per_token = 2 * L * (4 * h * h + 2 * h * i)
    attention = sum(2 * L * 2 * t * t * h for t in n_tokens)
    head = n_masks * 2 * (h * h + spec.vocab_size * h)
    return per_token * sum(n_tokens) + attention + head


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


class System:
    """One contender: a name, what it runs per task, and how it was loaded."""

    def __init__(self, name: str, kind: str, runners: dict[str, Callable[[list[str]], Any]],
                 single: Callable[[str], Any] | None, load_s: float, rss_mb: float, size_mb: float):
        self.name, self.kind, self.runners, self.single = name, kind, runners, single
        self.load_s, self.rss_mb, self.size_mb = load_s, rss_mb, size_mb


def _load_systems(model: Path, backends: list[str], tasks: list[str]) -> tuple[list[System], Any]:
    import torch

    import encoderkit

    manifest = read_manifest(model)
    ckpt_dir = model / "safetensors" if manifest and manifest.get("kind") == "convert" else model
    systems: list[System] = []
    ref = None
    for b in backends:
        rss, t = _rss_mb(), time.perf_counter()
        # the peers run on the CPU, so the torch backend does too (it would pick CUDA where present)
        rt = encoderkit.load(model, b, **dict(backend(b).cpu_options))
        load_s = time.perf_counter() - t
        fmt = backend(b).fmt
        loaded = rt.artifact_bytes()
        size = loaded / 1e6 if loaded is not None else _dir_mb(ckpt_dir if fmt == "safetensors" else model / fmt)
        runners = {"fill-mask": lambda xs, rt=rt: rt.fill_mask(xs, truncate=True),
                   "embed": lambda xs, rt=rt: rt.embed(xs, truncate=True)}
        systems.append(System(b, "encoderkit", runners, lambda x, rt=rt: rt.fill_mask([x], truncate=True),
                              load_s, _rss_mb() - rss, size))
        ref = ref or rt
        say(f"loaded {b} in {load_s:.1f}s")
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline

    tok = AutoTokenizer.from_pretrained(ckpt_dir)
    if "fill-mask" in tasks and ref.spec.has_mlm_head:
        rss, t = _rss_mb(), time.perf_counter()
        pipe = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(ckpt_dir), tokenizer=tok,
                        device="cpu")
        load_s = time.perf_counter() - t
        kw = {"tokenizer_kwargs": {"truncation": True}}
        systems.append(System("pipeline-bs1", "peer", {"fill-mask": lambda xs: [pipe(x, **kw) for x in xs]},
                              lambda x: pipe(x, **kw), load_s, _rss_mb() - rss, _dir_mb(ckpt_dir)))
        systems.append(System("pipeline-bs8", "peer", {"fill-mask": lambda xs: pipe(xs, batch_size=8, **kw)},
                              None, load_s, 0.0, _dir_mb(ckpt_dir)))
    if "embed" in tasks:
        from sentence_transformers import SentenceTransformer, models

        rss, t = _rss_mb(), time.perf_counter()
        word = models.Transformer(str(ckpt_dir), max_seq_length=ref.spec.max_tokens_per_text)
        dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension  # renamed in ST 5
        st = SentenceTransformer(modules=[word, models.Pooling(dim(), "mean")],
                                 device="cpu")
        load_s = time.perf_counter() - t
        systems.append(System("sentence-transformers", "peer",
                              {"embed": lambda xs: st.encode(xs, batch_size=32)}, None, load_s,
                              _rss_mb() - rss, _dir_mb(ckpt_dir)))
        rss, t = _rss_mb(), time.perf_counter()
        auto = AutoModel.from_pretrained(ckpt_dir).eval()
        load_s = time.perf_counter() - t

        @torch.inference_mode()
        def automodel(xs):
            out = []
            for i in range(0, len(xs), PEER_BATCH):
                enc = tok(xs[i:i + PEER_BATCH], padding=True, truncation=True, return_tensors="pt")
                h = auto(**enc).last_hidden_state
                m = enc["attention_mask"][:, :, None].float()
                out.append(((h * m).sum(1) / m.sum(1)).numpy())
            return np.concatenate(out)

        systems.append(System(f"automodel-bs{PEER_BATCH}", "peer", {"embed": automodel}, None, load_s,
                              _rss_mb() - rss, _dir_mb(ckpt_dir)))
    return systems, ref


def run_bench(model: str | Path, *, backends: list[str] | None = None, tasks: list[str], out: Path,
              repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; write bench.json, bench.md and PNG plots into ``out``.

    Args:
        backends: names from ``registry.BACKENDS``; None: every installed backend ``model`` holds.
    Raises:
        UnknownNameError / InputError: unknown backend or task, bad repeats.
    """
    from .errors import InputError
    from .runtimes import available_backends

    for t in tasks:
        if t not in ("fill-mask", "embed"):
            raise InputError(f"unknown task {t!r}; choose from fill-mask, embed")
    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    path = resolve_model(model)
    backends = available_backends(path) if backends is None else [backend(b).name for b in backends]
    systems, ref = _load_systems(path, backends, tasks)
    mask = ref.tokenizer.mask_token
    limit = 4 if quick else None
    workloads = {}
    if "fill-mask" in tasks and ref.spec.has_mlm_head:
        workloads["fill-mask/short"] = ("fill-mask", read_workload("short_masked", mask, limit=limit))
        workloads["fill-mask/long"] = ("fill-mask", read_workload("long_docs", mask, limit=2 if quick else None))
    if "embed" in tasks:
        workloads["embed/corpus"] = ("embed", read_workload("embed_corpus", mask, limit=16 if quick else None))
    peak = gemm_peak_gflops()
    say(f"fp32 GEMM peak measured now: {peak:.0f} GFLOP/s")
    results: dict[str, Any] = {}
    fitted: dict[str, dict[str, int]] = {}
    for wname, (task, texts) in list(workloads.items()):
        texts, fitted[wname] = fit_workload(texts, ref.tokenizer, need_mask=task == "fill-mask")
        workloads[wname] = (task, texts)
        if not texts:
            raise InputError(f"workload {wname}: no text fits this model's {ref.tokenizer.max_length} tokens")
    for wname, (task, texts) in workloads.items():
        ids = ref.tokenizer.encode(texts, truncate=True)
        lens = [len(x) for x in ids]
        n_masks = sum(x.count(ref.spec.mask_token_id) for x in ids) if task == "fill-mask" else 0
        flops = model_flops(ref.spec, lens, n_masks)
        contenders = [s for s in systems if task in s.runners]
        for s in contenders:
            # Warm-up, timed and reported separately: a full pass where compilation depends on
            # shapes (flax jit: one compile per bucket), one short call elsewhere (ORT arenas).
            compiles = s.name in BACKENDS and BACKENDS[s.name].compiles_per_shape
            warm = texts if compiles else texts[:2]
            t = _time(lambda s=s, warm=warm: s.runners[task](warm))
            results.setdefault(wname, {}).setdefault(s.name, {"warmup_s": t, "times": []})
        with bar(total=repeats * len(contenders), desc=wname, unit="run") as progress:
            for r in range(repeats):
                for s in contenders:
                    gc.collect()
                    results[wname][s.name]["times"].append(_time(lambda s=s: s.runners[task](texts)))
                    progress.update()
                if progress.disable:
                    say(f"{wname}: repeat {r + 1}/{repeats} done")
        for s in contenders:
            times = results[wname][s.name]["times"]
            med = statistics.median(times)
            results[wname][s.name] |= {
                "texts_per_s": len(texts) / med, "tokens_per_s": sum(lens) / med,
                "texts_per_s_min": len(texts) / max(times), "texts_per_s_max": len(texts) / min(times),
                "roofline_fraction": flops / med / (peak * 1e9),
                "roofline_texts_per_s": len(texts) / (flops / (peak * 1e9))}
        results[wname]["_meta"] = {"texts": len(texts), "tokens": sum(lens), "mean_tokens": float(np.mean(lens)),
                                   "masks": n_masks, "gflop": flops / 1e9, **fitted[wname]}
    latency: dict[str, Any] = {}
    if "fill-mask/short" in workloads:
        texts = workloads["fill-mask/short"][1]
        singles = [s for s in systems if s.single]
        lat: dict[str, list[float]] = {s.name: [] for s in singles}
        for _ in range(repeats):
            for x in texts:  # interleaved text by text
                for s in singles:
                    lat[s.name].append(_time(lambda s=s, x=x: s.single(x)))
        for name, xs in lat.items():
            latency[name] = {"p50_ms": float(np.percentile(xs, 50) * 1e3), "p95_ms": float(np.percentile(xs, 95) * 1e3),
                             "samples": xs}
    report = {"model": str(model), "spec": ref.spec.to_dict(), "machine": machine(), "gemm_peak_gflops": peak,
              "repeats": repeats, "results": results, "latency_bs1": latency,
              "systems": {s.name: {"kind": s.kind, "load_s": s.load_s, "rss_mb_after_load": s.rss_mb,
                                   "size_mb": s.size_mb} for s in systems},
              "process_peak_rss_mb": _peak_rss_mb()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(render_markdown(report))
    plot(report, out)
    say(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and plots")
    return report


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    import os

    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def ratios(report: dict[str, Any], workload: str) -> dict[str, dict[str, float]]:
    """texts/s of each encoderkit system divided by each peer's, same workload, same run."""
    res = report["results"][workload]
    kinds = report["systems"]
    ours = [n for n in res if n != "_meta" and kinds[n]["kind"] == "encoderkit"]
    peers = [n for n in res if n != "_meta" and kinds[n]["kind"] == "peer"]
    return {o: {p: res[o]["texts_per_s"] / res[p]["texts_per_s"] for p in peers} for o in ours}


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    spec = report["spec"]
    lines = ["# encoderkit benchmark", "",
             f"Model: `{report['model']}` ({spec['arch']}, {spec['num_layers']} layers, hidden {spec['hidden_size']}). "
             f"Machine: {m['cpu']}, {m['cores']} cores. fp32 GEMM peak measured in this run: "
             f"{report['gemm_peak_gflops']:.0f} GFLOP/s. Median of {report['repeats']} interleaved repeats "
             "(min–max in brackets).", ""]
    for wname, res in report["results"].items():
        meta = res["_meta"]
        fit = (f" ({meta['truncated']} cut to the model's length, {meta['dropped']} dropped: the same "
               "texts for every system)") if meta.get("truncated") or meta.get("dropped") else ""
        lines += [f"## {wname} — {meta['texts']} texts, mean {meta['mean_tokens']:.0f} tokens{fit}", "",
                  "| system | texts/s | tokens/s | × peers (same run) | roofline | warm-up s | load s | size MB |",
                  "|---|---|---|---|---|---|---|---|"]
        r = ratios(report, wname)
        for name, x in sorted(((n, v) for n, v in res.items() if n != "_meta"), key=lambda kv: -kv[1]["texts_per_s"]):
            sysinfo = report["systems"][name]
            vs = ", ".join(f"{v:.2f}× {p}" for p, v in r.get(name, {}).items()) or "(peer)"
            lines.append(f"| {name} | {x['texts_per_s']:.2f} [{x['texts_per_s_min']:.2f}–{x['texts_per_s_max']:.2f}] "
                         f"| {x['tokens_per_s']:.0f} | {vs} | {x['roofline_fraction']:.0%} | {x['warmup_s']:.1f} "
                         f"| {sysinfo['load_s']:.1f} "
                         f"| {sysinfo['size_mb']:.0f} |")
        lines.append("")
    if report["latency_bs1"]:
        lines += ["## fill-mask latency, one text per call (short sentences)", "", "| system | p50 ms | p95 ms |",
                  "|---|---|---|"]
        for name, x in sorted(report["latency_bs1"].items(), key=lambda kv: kv[1]["p50_ms"]):
            lines.append(f"| {name} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} |")
        lines.append("")
    targets = target_rows(report)
    if targets:
        lines += ["## Targets (ratios from this run)", "", "| target | measured | bound | met |", "|---|---|---|---|"]
        lines += [f"| {name} | {value:.2f} | {op} {bound} | {'yes' if ok else f'no (by {miss:.0%})'} |"
                  for name, value, op, bound, ok, miss in targets]
        lines.append("")
    lines.append(f"Process peak RSS: {report['process_peak_rss_mb']:.0f} MB (all systems loaded in one process).")
    return "\n".join(lines) + "\n"


def target_rows(report: dict[str, Any]) -> list[tuple[str, float, str, float, bool, float]]:
    """The speed targets, evaluated on this run: (name, value, op, bound, met, miss)."""
    res, lat, rows = report["results"], report["latency_bs1"], []
    fp32 = [b.name for b in BACKENDS.values() if not b.quantized]
    int8 = next((b.name for b in BACKENDS.values() if b.variant == "int8"), None)

    def add(name, value, op, bound):
        ok = value >= bound if op == "≥" else value <= bound
        miss = (bound - value) / bound if op == "≥" else (value - bound) / bound
        rows.append((name, value, op, bound, ok, max(miss, 0.0)))

    short = res.get("fill-mask/short", {})
    if "pipeline-bs1" in short:
        best = max((n for n in short if n in fp32), key=lambda n: short[n]["texts_per_s"], default=None)
        if best:
            add(f"fill-mask, best fp32 ({best}) / pipeline batch 1", short[best]["texts_per_s"] / short["pipeline-bs1"]["texts_per_s"], "≥", 3.5)
            add(f"fill-mask, best fp32 ({best}) fraction of fp32 roofline", short[best]["roofline_fraction"], "≥", 0.75)
        if int8 in short:
            add(f"fill-mask, {int8} / pipeline batch 1", short[int8]["texts_per_s"] / short["pipeline-bs1"]["texts_per_s"], "≥", 6)
    emb = res.get("embed/corpus", {})
    if "sentence-transformers" in emb:
        best = max((n for n in emb if n in fp32), key=lambda n: emb[n]["texts_per_s"], default=None)
        if best:
            add(f"embed, best fp32 ({best}) / sentence-transformers", emb[best]["texts_per_s"] / emb["sentence-transformers"]["texts_per_s"], "≥", 1.5)
        if int8 in emb:
            add(f"embed, {int8} / sentence-transformers", emb[int8]["texts_per_s"] / emb["sentence-transformers"]["texts_per_s"], "≥", 3)
    if int8 in lat and "pipeline-bs1" in lat:
        add(f"latency p50, {int8} / pipeline", lat[int8]["p50_ms"] / lat["pipeline-bs1"]["p50_ms"], "≤", round(1 / 3, 3))
    for b in fp32:  # every framework at least as fast as the eager reference
        if b != REFERENCE and b in short and REFERENCE in short:
            add(f"fill-mask, {b} / {REFERENCE} eager", short[b]["texts_per_s"] / short[REFERENCE]["texts_per_s"], "≥", 1.0)
    return rows


def plot(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report["results"])
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (wname, res) in zip(axes[0], report["results"].items()):
        items = sorted(((k, v) for k, v in res.items() if k != "_meta"), key=lambda kv: kv[1]["texts_per_s"])
        names = [k for k, _ in items]
        vals = [v["texts_per_s"] for _, v in items]
        err = [[v["texts_per_s"] - v["texts_per_s_min"] for _, v in items],
               [v["texts_per_s_max"] - v["texts_per_s"] for _, v in items]]
        colors = ["tab:grey" if report["systems"][k]["kind"] == "peer" else "tab:blue" for k in names]
        ax.barh(names, vals, xerr=err, color=colors)
        ax.axvline(items[0][1]["roofline_texts_per_s"], color="tab:red", ls="--", label="fp32 roofline")
        ax.set_title(wname)
        ax.set_xlabel("texts / s (grey: peers)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)
    if report["latency_bs1"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = sorted(report["latency_bs1"], key=lambda k: report["latency_bs1"][k]["p50_ms"])
        ax.boxplot([np.array(report["latency_bs1"][k]["samples"]) * 1e3 for k in names], vert=False,
                   tick_labels=names, showfliers=True)
        ax.set_xlabel("ms per single-text fill-mask call")
        ax.set_title("latency at batch size 1")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)
