"""The benchmark's report: accuracy of every system against the reference of the same run (the
figures of ``verify.metrics``), the accuracy gate (``verify.gate.passes``), ratios, the speed
targets, bench.md and the plots.
"""
from __future__ import annotations

import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.catalog import BACKENDS, REFERENCE
from ..verify.gate import passes
from ..verify.metrics import cosine, topk_agreement
from .peers import CT2_DIRECT


def _masks_top_ids(answer: list[Any]) -> list[list[int]]:
    """Per mask of every text, its top token ids, best first: encoderkit's answer (per text a list
    per mask) and the pipeline's (per text a list of dicts for one mask, of lists for several)."""
    out = []
    for per_text in answer:
        masks = per_text if per_text and isinstance(per_text[0], list) else [per_text]
        out += [[int(d["token"]) for d in preds] for preds in masks]
    return out


def accuracy(task: str, answers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each system's answers against the reference of the same run: torch where it ran (else
    sentence-transformers / the batch-1 pipeline). embed: min cosine over the texts; fill-mask:
    top-1 agreement and top-5 overlap over every mask."""
    fallback = "sentence-transformers" if task == "embed" else "pipeline-bs1"
    ref = REFERENCE if REFERENCE in answers else fallback if fallback in answers else None
    if ref is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    if task == "embed":
        for name, emb in answers.items():
            out[name] = {"reference": ref, "min_cosine": float(cosine(emb, answers[ref]).min())}
        return out
    r = _masks_top_ids(answers[ref])
    for name, answer in answers.items():
        got = _masks_top_ids(answer)
        if len(got) != len(r):  # a system that dropped or added masks: no comparison, said so
            out[name] = {"reference": ref, "error": f"{len(got)} masks against {len(r)}"}
            continue
        top1, top5 = topk_agreement(r, got, k=min(5, min((len(x) for x in r), default=5)))
        out[name] = {"reference": ref, "top1": float(np.mean(top1)), "top5": float(np.mean(top5))}
    return out


def passes_gate(name: str, acc: dict[str, Any]) -> bool | None:
    """Whether an encoderkit backend's accuracy in this run meets its catalog ``Tolerance`` (see
    ``verify.gate.passes``)."""
    return passes(name, acc)


def _accuracy_cell(x: dict[str, Any]) -> str:
    acc = x.get("accuracy")
    if not acc:
        return "–"
    gate = "" if x.get("gate") is not False else " (below its gate)"
    if "error" in acc:
        return f"not comparable ({acc['error']}){gate}"
    if "min_cosine" in acc:
        return f"min cos {acc['min_cosine']:.4f}{gate}"
    return f"top-1 {acc['top1']:.2f}, top-5 {acc['top5']:.2f}{gate}"


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


def _peaks(report: dict[str, Any]) -> str:
    got = report.get("gemm_peak_gflops_measured") or [report["gemm_peak_gflops"]]
    if len(got) <= 2:  # reports from before the peak was measured after every timed run
        return (f"fp32 GEMM peak measured in this run: {report['gemm_peak_gflops']:.0f} GFLOP/s"
                + (f" (the higher of {got[0]:.0f} before and {got[1]:.0f} after the timed runs)" if len(got) == 2 else ""))
    return (f"fp32 GEMM peak (torch) measured {len(got)} times in this run, after a warm-up and after every timed "
            f"run: {min(got):.0f}–{max(got):.0f} GFLOP/s (median {statistics.median(got):.0f}); the roofline "
            f"divides by the highest")


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    spec = report["spec"]
    lines = ["# encoderkit benchmark", "",
             f"Model: `{report['model']}` ({spec['arch']}, {spec['num_layers']} layers, hidden {spec['hidden_size']}). "
             f"Machine: {m['cpu']}, {m['cores']} cores. {_peaks(report)}. Median of {report['repeats']} interleaved repeats "
             "(min–max in brackets).", ""]
    for wname, res in report["results"].items():
        meta = res["_meta"]
        fit = (f" ({meta['truncated']} cut to the model's length, {meta['dropped']} dropped: the same "
               "texts for every system)") if meta.get("truncated") or meta.get("dropped") else ""
        refs = {x["accuracy"]["reference"] for n, x in res.items() if n != "_meta" and x.get("accuracy")}
        vs_ref = f"vs {refs.pop()}" if len(refs) == 1 else "vs reference"
        lines += [f"## {wname} — {meta['texts']} texts, mean {meta['mean_tokens']:.0f} tokens{fit}", "",
                  f"| system | texts/s | tokens/s | × peers (same run) | accuracy {vs_ref} | roofline | warm-up s "
                  "| load s | size MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        r = ratios(report, wname)
        for name, x in sorted(((n, v) for n, v in res.items() if n != "_meta"), key=lambda kv: -kv[1]["texts_per_s"]):
            sysinfo = report["systems"][name]
            vs = ", ".join(f"{v:.2f}× {p}" for p, v in r.get(name, {}).items()) or "(peer)"
            lines.append(f"| {name} | {x['texts_per_s']:.2f} [{x['texts_per_s_min']:.2f}–{x['texts_per_s_max']:.2f}] "
                         f"| {x['tokens_per_s']:.0f} | {vs} | {_accuracy_cell(x)} | {x['roofline_fraction']:.0%} "
                         f"| {x['warmup_s']:.1f} "
                         f"| {sysinfo['load_s']:.1f} "
                         f"| {sysinfo['size_mb']:.0f} |")
        lines.append("")
    if report["latency_bs1"]:
        n = min(len(x["samples"]) for x in report["latency_bs1"].values())
        lines += ["## fill-mask latency, one text per call (short sentences)", "",
                  f"{n} calls per system, interleaved text by text.", "",
                  "| system | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
        for name, x in sorted(report["latency_bs1"].items(), key=lambda kv: kv[1]["p50_ms"]):
            # p99 is absent from reports written before it was measured
            p99 = f"{x['p99_ms']:.1f}" if "p99_ms" in x else "–"
            lines.append(f"| {name} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {p99} |")
        lines.append("")
    if report.get("skipped"):
        lines += ["Peers not run here: " + "; ".join(f"{n} ({why})" for n, why in report["skipped"].items()) + ".", ""]
    targets = target_rows(report)
    if targets:
        lines += ["## Targets (ratios from this run)", "", "| target | measured | bound | met |", "|---|---|---|---|"]
        lines += [f"| {name} | {value:.4f} | {op} {bound} | {'yes' if ok else f'no (by {miss:.1%})'} |"
                  if "cosine" in name else
                  f"| {name} | {value:.2f} | {op} {bound} | {'yes' if ok else f'no (by {miss:.0%})'} |"
                  for name, value, op, bound, ok, miss in targets]
        lines.append("")
    lines.append(f"Process peak RSS: {report['process_peak_rss_mb']:.0f} MB (all systems loaded in one process).")
    return "\n".join(lines) + "\n"


def _is_int8(name: str, row: dict[str, Any]) -> bool:
    """An int8 encoderkit backend's row (a variant's row says which backend it runs)."""
    b = row.get("backend", name)
    return b in BACKENDS and BACKENDS[b].variant == "int8"


def best_int8(res: dict[str, Any], key: str = "texts_per_s", lower: bool = False) -> str | None:
    """The fastest int8 encoderkit backend of a workload's results that passed its accuracy gate
    in this run (a backend whose accuracy could not be compared counts, as it did before gates)."""
    int8 = [n for n, x in res.items() if _is_int8(n, x) and x.get("gate") is not False]
    pick = min if lower else max
    return pick(int8, key=lambda n: res[n][key], default=None)


def target_rows(report: dict[str, Any]) -> list[tuple[str, float, str, float, bool, float]]:
    """The speed targets, evaluated on this run: (name, value, op, bound, met, miss).

    The int8 targets take the fastest int8 backend that passed its accuracy gate in this run,
    named in the row; a workload where int8 backends ran and none passed gets a failing row."""
    res, lat, rows = report["results"], report["latency_bs1"], []
    fp32 = [b.name for b in BACKENDS.values() if not b.quantized]

    def add(name, value, op, bound):
        ok = value >= bound if op == "≥" else value <= bound
        miss = (bound - value) / bound if op == "≥" else (value - bound) / bound
        rows.append((name, value, op, bound, ok, max(miss, 0.0)))

    def int8_or_fail(wres: dict[str, Any], what: str, key: str = "texts_per_s", lower: bool = False) -> str | None:
        best = best_int8(wres, key, lower)
        ran = [n for n, x in wres.items() if _is_int8(n, x)]
        if best is None and ran:
            add(f"{what}: an int8 backend passes its accuracy gate ({', '.join(ran)} ran)", 0.0, "≥", 1)
        return best

    short = res.get("fill-mask/short", {})
    if "pipeline-bs1" in short:
        best = max((n for n in short if n in fp32), key=lambda n: short[n]["texts_per_s"], default=None)
        if best:
            add(f"fill-mask, best fp32 ({best}) / pipeline batch 1", short[best]["texts_per_s"] / short["pipeline-bs1"]["texts_per_s"], "≥", 3.5)
            add(f"fill-mask, best fp32 ({best}) fraction of fp32 roofline", short[best]["roofline_fraction"], "≥", 0.75)
        if "onnx" in short and best != "onnx":  # the portable fp32 (what bundles ship) held to it too
            add("fill-mask, onnx fp32 fraction of fp32 roofline", short["onnx"]["roofline_fraction"], "≥", 0.75)
        int8 = int8_or_fail(short, "fill-mask")
        if int8:
            add(f"fill-mask, best int8 ({int8}) / pipeline batch 1", short[int8]["texts_per_s"] / short["pipeline-bs1"]["texts_per_s"], "≥", 6)
    emb = res.get("embed/corpus", {})
    int8 = int8_or_fail(emb, "embed") if emb else None
    if "sentence-transformers" in emb:
        best = max((n for n in emb if n in fp32), key=lambda n: emb[n]["texts_per_s"], default=None)
        if best:
            add(f"embed, best fp32 ({best}) / sentence-transformers", emb[best]["texts_per_s"] / emb["sentence-transformers"]["texts_per_s"], "≥", 1.5)
        if int8:
            add(f"embed, best int8 ({int8}) / sentence-transformers", emb[int8]["texts_per_s"] / emb["sentence-transformers"]["texts_per_s"], "≥", 3)
    if int8:
        for peer in ("optimum-int8", CT2_DIRECT["int8"]):  # the same int8 recipe, used the peer's way
            if peer in emb:
                add(f"embed, best int8 ({int8}) / {peer}", emb[int8]["texts_per_s"] / emb[peer]["texts_per_s"], "≥", 1)
        acc = emb[int8].get("accuracy", {})
        if "min_cosine" in acc:
            add(f"embed, best int8 ({int8}) min cosine vs {acc['reference']}", acc["min_cosine"], "≥", 0.99)
    if lat and "pipeline-bs1" in lat:
        # the int8 backends that passed their gate on the short fill-mask workload, fastest p50
        passed = {n: lat[n] for n in lat if n in short and short[n].get("gate") is not False}
        int8 = best_int8(passed, "p50_ms", lower=True)
        if int8:
            add(f"latency p50, best int8 ({int8}) / pipeline", lat[int8]["p50_ms"] / lat["pipeline-bs1"]["p50_ms"], "≤", round(1 / 3, 3))
    # the portable ONNX int8 (what bundles ship) against CTranslate2's int8, on the same texts
    for wname, wres in (("fill-mask", short), ("embed", emb)):
        if "onnx-int8" in wres and "ctranslate2-int8" in wres:
            add(f"{wname}, onnx-int8 / ctranslate2-int8", wres["onnx-int8"]["texts_per_s"]
                / wres["ctranslate2-int8"]["texts_per_s"], "≥", 0.8)
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
