"""Running the benchmark: every system in ONE process, timed interleaved repeat by repeat (r1: A
B C, r2: A B C, ...), so machine drift hits all alike; ratios are only ever taken between figures of
the same run. Workloads per task come from the task table (``Task.workloads``), fitted to the
model's own tokenizer so every system gets the same valid input.
"""
from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.catalog import BACKENDS, backend
from ..core.errors import InputError
from ..core.progress import bar, say
from ..core.texts import read_workload
from ..storage.checkpoint import resolve_model, verified_checkpoint_directory
from ..tasks import TASKS, bench_tasks
from .peers import PeerContext, load_peers
from .report import _peak_rss_mb, accuracy, machine, passes_gate, plot, render_markdown
from .systems import our_systems


def _load_systems(model: Path, backends: list[str], tasks: list[str], skipped: dict[str, str],
                  optimum_python: str | None, workdir: Path, closers: list[Callable[[], None]],
                  variants: dict[str, tuple[Path, str]] | None = None):
    """Our backends (and variants), then every peer of the benchmarked tasks (``peers.PEERS``)."""
    from transformers import AutoTokenizer

    ckpt_dir = verified_checkpoint_directory(model)  # the peers read it: its manifest checked first
    systems, ref, ct2_loaded = our_systems(model, ckpt_dir, backends, tasks, variants)
    ctx = PeerContext(model, ckpt_dir, AutoTokenizer.from_pretrained(ckpt_dir), ref.spec, workdir, skipped,
                      closers, optimum_python, ct2_loaded)
    return systems + load_peers(ctx, tasks), ref


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


def gemm_peak_gflops(n: int = 1024, k: int = 4096, repeats: int = 10, warmup_s: float = 1.0) -> float:
    """fp32 matmul peak of this machine (torch, all threads), measured now: the best of ``repeats``
    after ``warmup_s`` seconds of the same matmul. The first calls of a process ran up to 10 % below
    the rate the machine settles at here (a 5-call best measured 365-383 GFLOP/s where the settled
    rate was 413-417): a low peak would overstate every roofline fraction."""
    import torch

    a, b = torch.randn(n, k), torch.randn(k, n)
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
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


def _variant_of(s) -> dict[str, str]:
    """What a variant's rows carry so the report can hold it to its backend's gate; nothing for the rest."""
    return {"backend": s.backend} if s.backend != s.name else {}


# The short peak measured after every timed run: ~0.5 s here, under 2 minutes of a `make bench`.
SHORT_PEAK = {"warmup_s": 0.25, "repeats": 5}
LATENCY_SAMPLES = 200  # single-text calls per system in a full run (p99 from 200: the 2nd-3rd slowest)


def run_bench(model: str | Path, *, backends: list[str] | None = None, tasks: list[str], out: Path,
              repeats: int = 3, quick: bool = False, optimum_python: str | Path | None = None,
              variants: dict[str, tuple[str | Path, str]] | None = None) -> dict[str, Any]:
    """Run the benchmark; write bench.json, bench.md and PNG plots into ``out``.

    Args:
        backends: names from ``registry.BACKENDS``; None: every installed backend ``model`` holds.
        variants: more of our systems, ``{label: (directory, backend)}``: a backend loaded from
            another conversion of the same model (e.g. ``--int8-mode static``), shown as ``label``
            and held to ``backend``'s gate.
        optimum_python: the python of optimum's venv (``make optimum-venv``); None: the
            ``ENCODERKIT_OPTIMUM_PYTHON`` environment variable, else optimum's peers are skipped.
    Raises:
        UnknownNameError / InputError: unknown backend or task, bad repeats, an ``out`` that is,
            contains or lies inside the model.
    """
    from ..backends.loading import available_backends
    from ..storage.checkpoint import local_model_path
    from ..storage.files import refuse_overlap

    for t in tasks:
        if t not in bench_tasks():
            raise InputError(f"unknown task {t!r}; choose from {', '.join(bench_tasks())}")
    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    path = resolve_model(model)
    backends = available_backends(path) if backends is None else [backend(b).name for b in backends]
    extra = {}
    for label, (where, b) in (variants or {}).items():
        if label in backends or label in BACKENDS:
            raise InputError(f"variant label {label!r} is a backend's name; give it a label of its own")
        extra[label] = (resolve_model(where), backend(b).name)
    refuse_overlap(out, [("model", local_model_path(model))])  # bench files inside a model break its manifest
    out.mkdir(parents=True, exist_ok=True)
    closers: list[Callable[[], None]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-", dir=out) as work:
            return _run(path, model, backends, tasks, out, repeats, quick,
                        str(optimum_python) if optimum_python else None, Path(work), closers, extra)
    finally:
        for close in closers:
            close()


def _run(path: Path, model, backends: list[str], tasks: list[str], out: Path, repeats: int, quick: bool,
         optimum_python: str | None, work: Path, closers: list[Callable[[], None]],
         variants: dict[str, tuple[Path, str]]) -> dict[str, Any]:
    skipped: dict[str, str] = {}
    systems, ref = _load_systems(path, backends, tasks, skipped, optimum_python, work, closers, variants)
    by_name = {s.name: s for s in systems}
    for name, why in skipped.items():
        say(f"skipped {name}: {why}")
    mask = ref.tokenizer.mask_token
    limit = 4 if quick else None
    workloads = {}
    for task in tasks:
        if TASKS[task].head and not ref.spec.has_head(TASKS[task].head):
            continue
        for wname, file in TASKS[task].workloads:
            quick_limit = {"short": 4, "long": 2}.get(wname, 16)
            workloads[f"{task}/{wname}"] = (task, read_workload(file, mask, limit=quick_limit if quick else limit))
    # The peak is measured after a full warm-up and again after every timed run; the roofline divides
    # by the highest. On a shared machine it moves fast (one `make bench` on the AMD EPYC: 86 readings,
    # 96-196 GFLOP/s, neighbours 70 % apart seconds from each other), too fast for the peak measured
    # beside a run to say what that run could reach: the highest of many readings is the machine's
    # capability, and every row is held to it. The readings stay in the report, in the order taken.
    peaks = [gemm_peak_gflops()]
    short = {"warmup_s": 0.05, "repeats": 2} if quick else SHORT_PEAK
    say(f"fp32 GEMM peak measured now: {peaks[0]:.0f} GFLOP/s")
    results: dict[str, Any] = {}
    answers: dict[str, dict[str, Any]] = {}  # workload -> system -> its answer in the first repeat
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
            compiles = s.backend in BACKENDS and BACKENDS[s.backend].compiles_per_shape
            warm = texts if compiles else texts[:2]
            t = _time(lambda s=s, warm=warm: s.runners[task](warm))
            results.setdefault(wname, {}).setdefault(s.name, {"warmup_s": t, "times": []} | _variant_of(s))
        peaks.append(gemm_peak_gflops(**short))  # the warm-ups ran since the last one
        with bar(total=repeats * len(contenders), desc=wname, unit="run") as progress:
            for r in range(repeats):
                for s in contenders:
                    gc.collect()
                    got: list[Any] = []
                    results[wname][s.name]["times"].append(_time(lambda s=s: got.append(s.runners[task](texts))))
                    peaks.append(gemm_peak_gflops(**short))
                    if r == 0:
                        answers.setdefault(wname, {})[s.name] = got[0]
                    del got
                    progress.update()
                if progress.disable:
                    say(f"{wname}: repeat {r + 1}/{repeats} done")
        for s in contenders:
            times = results[wname][s.name]["times"]
            med = statistics.median(times)
            results[wname][s.name] |= {
                "texts_per_s": len(texts) / med, "tokens_per_s": sum(lens) / med,
                "texts_per_s_min": len(texts) / max(times), "texts_per_s_max": len(texts) / min(times)}
        for name, acc in accuracy(task, answers.get(wname, {})).items():
            results[wname][name]["accuracy"] = acc
            results[wname][name]["gate"] = passes_gate(by_name[name].backend, acc)
        answers.pop(wname, None)
        results[wname]["_meta"] = {"texts": len(texts), "tokens": sum(lens), "mean_tokens": float(np.mean(lens)),
                                   "masks": n_masks, "gflop": flops / 1e9, **fitted[wname]}
    peak = max(peaks)
    say(f"fp32 GEMM peak measured after every timed run: {min(peaks):.0f}-{peak:.0f} GFLOP/s (roofline against {peak:.0f})")
    for wname, res in results.items():
        meta = res["_meta"]
        for name, row in res.items():
            if name != "_meta":
                row |= {"roofline_fraction": meta["gflop"] / statistics.median(row["times"]) / peak,
                        "roofline_texts_per_s": meta["texts"] / (meta["gflop"] / peak)}
    latency: dict[str, Any] = {}
    if "fill-mask/short" in workloads:
        texts = workloads["fill-mask/short"][1]
        singles = [s for s in systems if s.single]
        lat: dict[str, list[float]] = {s.name: [] for s in singles}
        # enough calls that p99 is not simply the slowest one (200 in a full run; quick: repeats)
        rounds = repeats if quick else max(repeats, -(-LATENCY_SAMPLES // max(1, len(texts))))
        for _ in range(rounds):
            for x in texts:  # interleaved text by text
                for s in singles:
                    lat[s.name].append(_time(lambda s=s, x=x: s.single(x)))
        for s in singles:
            xs = lat[s.name]
            latency[s.name] = {"p50_ms": float(np.percentile(xs, 50) * 1e3), "p95_ms": float(np.percentile(xs, 95) * 1e3),
                               "p99_ms": float(np.percentile(xs, 99) * 1e3), "samples": xs} | _variant_of(s)
    report = {"model": str(model), "spec": ref.spec.to_dict(), "machine": machine(), "gemm_peak_gflops": peak,
              "gemm_peak_gflops_measured": peaks,  # in order: the first after a full warm-up, then after each run
              "repeats": repeats, "results": results, "latency_bs1": latency,
              "systems": {s.name: {"kind": s.kind, "backend": s.backend, "load_s": s.load_s, "rss_mb_after_load": s.rss_mb,
                                   "size_mb": s.size_mb} for s in systems},
              "skipped": skipped, "process_peak_rss_mb": _peak_rss_mb()}
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(render_markdown(report))
    plot(report, out)
    say(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and plots")
    return report
