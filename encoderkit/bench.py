"""`encoderkit bench`: every backend against the tools people use today, side by side.

All systems run in ONE process, interleaved repeat by repeat (r1: A B C, r2: A B C, ...), so
machine drift hits all alike; ratios are only ever taken between figures of the same run.
Peers: transformers' fill-mask pipeline (batch 1 and 8), sentence-transformers ``encode`` (mean
pooling), plain AutoModel + mean pooling at a fixed batch size, CTranslate2's ``Encoder`` used
directly on the directory's CTranslate2 models (fixed batches in input order, mean pooling), and
optimum's ONNX recipe (O2 and dynamic int8), run by ``benchmarks/optimum_peer.py`` in its own venv
as a subprocess that answers one request per timed call, so it is interleaved like the rest.
A peer that cannot run here is listed under "skipped" with the reason, never silently absent.
Every system's answers are compared with the torch reference of the same run (min cosine of the
embeddings; top-1 agreement and top-5 overlap of fill-mask), and a quantized backend counts for
the int8 targets only when it passes its registry accuracy gate in that run.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import resolve_model
from .io import read_manifest
from .progress import bar, say
from .registry import BACKENDS, REFERENCE, backend
from .tokenization import read_workload

PEER_BATCH = 32  # AutoModel / CTranslate2-direct / optimum + mean pooling batch size
# optimum's recipe runs in its own venv (`make optimum-venv`); the script is in the checkout.
OPTIMUM_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "optimum_peer.py"
OPTIMUM_ENV = "ENCODERKIT_OPTIMUM_PYTHON"
OPTIMUM_SYSTEMS = ("optimum-o2", "optimum-int8")
CT2_DIRECT = {"fp32": "ctranslate2-direct", "int8": "ctranslate2-direct-int8"}  # variant -> peer name


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


def _load_systems(model: Path, backends: list[str], tasks: list[str], skipped: dict[str, str],
                  optimum_python: str | None, workdir: Path, closers: list[Callable[[], None]]
                  ) -> tuple[list[System], Any]:
    import torch

    import encoderkit

    manifest = read_manifest(model)
    ckpt_dir = model / "safetensors" if manifest and manifest.get("kind") == "convert" else model
    systems: list[System] = []
    ref = None
    ct2_loaded: dict[str, Any] = {}
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
        if fmt == "ctranslate2":  # the direct peer calls the same loaded model
            ct2_loaded[backend(b).variant or "fp32"] = rt.encoder
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
        systems += ct2_direct_systems(model, tok, skipped, loaded=ct2_loaded)
        systems += optimum_systems(ckpt_dir, optimum_python, skipped, workdir, closers)
    return systems, ref


def ct2_direct_systems(model: Path, tok, skipped: dict[str, str], loaded: dict[str, Any] | None = None) -> list[System]:
    """CTranslate2 used directly, as a user who picks it instead of encoderkit writes it: an
    ``Encoder`` over the directory's CTranslate2 model, the HF tokenizer, fixed batches of
    ``PEER_BATCH`` texts in input order (no length sorting, no token budget) and mean pooling.

    ``loaded``: variant -> a ``ctranslate2.Encoder`` our ctranslate2 backend already holds; the
    peer then calls that same object (the comparison is the calling pattern, and roberta-large
    does not need a second copy in memory)."""
    import importlib.util

    from .models.ct2_layout import COMPUTE_TYPES, MODEL_DIRS

    if importlib.util.find_spec("ctranslate2") is None:
        skipped |= {name: "ctranslate2 is not installed (pip install 'encoderkit[ctranslate2]')"
                    for name in CT2_DIRECT.values()}
        return []
    import ctranslate2

    systems = []
    for variant, name in CT2_DIRECT.items():
        path = model / "ctranslate2" / MODEL_DIRS[variant]
        if not (path / "model.bin").is_file():
            flag = " --quantize int8" if variant == "int8" else ""
            skipped[name] = f"the model directory has no {path.relative_to(model)}/ (convert --to ctranslate2{flag})"
            continue
        rss, t = _rss_mb(), time.perf_counter()
        encoder = (loaded or {}).get(variant) or ctranslate2.Encoder(str(path), device="cpu",
                                                                     compute_type=COMPUTE_TYPES[variant])
        load_s = time.perf_counter() - t

        def run(xs, encoder=encoder):
            out = []
            for i in range(0, len(xs), PEER_BATCH):
                ids = tok(xs[i:i + PEER_BATCH], truncation=True)["input_ids"]
                hidden = np.asarray(encoder.forward_batch(ids).last_hidden_state)
                lengths = np.array([len(x) for x in ids])
                m = (np.arange(hidden.shape[1])[None, :] < lengths[:, None])[:, :, None]
                out.append((hidden * m).sum(1) / lengths[:, None])
            return np.concatenate(out).astype(np.float32)

        systems.append(System(name, "peer", {"embed": run}, None, load_s, _rss_mb() - rss, _dir_mb(path)))
        say(f"loaded {name} in {load_s:.1f}s")
    return systems


class OptimumPeer:
    """``benchmarks/optimum_peer.py --serve`` in optimum's own venv: one request per timed call.

    Raises:
        RuntimeError: the process died or answered an error (the message says which).
    """

    def __init__(self, python: str, ckpt_dir: Path, workdir: Path, log: Path):
        self.workdir = workdir
        self.log = log
        self._log = self.log.open("w")
        self.proc = subprocess.Popen([python, str(OPTIMUM_SCRIPT), str(ckpt_dir), "--serve", "--workdir",
                                      str(workdir / "optimum")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True)
        self.ready = self._reply()
        self._texts: dict[str, str] = {}

    def _reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self._log.flush()
            tail = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
            raise RuntimeError(f"the optimum peer exited (code {code}){': ' + tail[0][:200] if tail else ''}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the optimum peer failed: {reply['error']}")
        return reply

    def embed(self, system: str, xs: list[str]) -> np.ndarray:
        key = hashlib.sha256("\0".join(xs).encode()).hexdigest()[:16]
        if key not in self._texts:
            path = self.workdir / f"texts-{key}.json"
            path.write_text(json.dumps(list(xs)))
            self._texts[key] = str(path)
        save = self.workdir / "embeddings.npy"
        self.proc.stdin.write(json.dumps({"system": system, "texts": self._texts[key], "save": str(save)}) + "\n")
        self.proc.stdin.flush()
        self._reply()
        return np.load(save)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def optimum_systems(ckpt_dir: Path, python: str | None, skipped: dict[str, str], workdir: Path,
                    closers: list[Callable[[], None]]) -> list[System]:
    """optimum's recipe (O2 fp32, dynamic int8) as peers, when optimum's venv python is given."""
    python = python or os.environ.get(OPTIMUM_ENV)
    reason = None
    if not python:
        reason = f"no optimum venv given (make optimum-venv; --optimum-python .venv-optimum/bin/python or {OPTIMUM_ENV})"
    elif not Path(python).is_file():
        reason = f"optimum python {python} does not exist (make optimum-venv)"
    elif not OPTIMUM_SCRIPT.is_file():
        reason = f"{OPTIMUM_SCRIPT.name} is not here (it lives in the source checkout's benchmarks/)"
    if reason:
        skipped |= dict.fromkeys(OPTIMUM_SYSTEMS, reason)
        return []
    rss, t = _rss_mb(), time.perf_counter()
    try:
        peer = OptimumPeer(python, ckpt_dir, workdir, workdir.parent / "optimum-peer.log")
    except (RuntimeError, OSError, ValueError) as e:
        skipped |= dict.fromkeys(OPTIMUM_SYSTEMS, str(e))
        return []
    closers.append(peer.close)
    say(f"started optimum's recipe in {time.perf_counter() - t:.1f}s ({peer.log})")
    facts = peer.ready.get("systems", {})
    return [System(name, "peer", {"embed": lambda xs, name=name: peer.embed(name, xs)}, None,
                   float(facts.get(name, {}).get("load_s", 0.0)), _rss_mb() - rss,
                   float(facts.get(name, {}).get("size_mb", 0.0)))
            for name in OPTIMUM_SYSTEMS if name in facts]


def run_bench(model: str | Path, *, backends: list[str] | None = None, tasks: list[str], out: Path,
              repeats: int = 3, quick: bool = False, optimum_python: str | Path | None = None) -> dict[str, Any]:
    """Run the benchmark; write bench.json, bench.md and PNG plots into ``out``.

    Args:
        backends: names from ``registry.BACKENDS``; None: every installed backend ``model`` holds.
        optimum_python: the python of optimum's venv (``make optimum-venv``); None: the
            ``ENCODERKIT_OPTIMUM_PYTHON`` environment variable, else optimum's peers are skipped.
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
    out.mkdir(parents=True, exist_ok=True)
    closers: list[Callable[[], None]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-", dir=out) as work:
            return _run(path, model, backends, tasks, out, repeats, quick,
                        str(optimum_python) if optimum_python else None, Path(work), closers)
    finally:
        for close in closers:
            close()


def _run(path: Path, model, backends: list[str], tasks: list[str], out: Path, repeats: int, quick: bool,
         optimum_python: str | None, work: Path, closers: list[Callable[[], None]]) -> dict[str, Any]:
    from .errors import InputError

    skipped: dict[str, str] = {}
    systems, ref = _load_systems(path, backends, tasks, skipped, optimum_python, work, closers)
    for name, why in skipped.items():
        say(f"skipped {name}: {why}")
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
            compiles = s.name in BACKENDS and BACKENDS[s.name].compiles_per_shape
            warm = texts if compiles else texts[:2]
            t = _time(lambda s=s, warm=warm: s.runners[task](warm))
            results.setdefault(wname, {}).setdefault(s.name, {"warmup_s": t, "times": []})
        with bar(total=repeats * len(contenders), desc=wname, unit="run") as progress:
            for r in range(repeats):
                for s in contenders:
                    gc.collect()
                    got: list[Any] = []
                    results[wname][s.name]["times"].append(_time(lambda s=s: got.append(s.runners[task](texts))))
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
                "texts_per_s_min": len(texts) / max(times), "texts_per_s_max": len(texts) / min(times),
                "roofline_fraction": flops / med / (peak * 1e9),
                "roofline_texts_per_s": len(texts) / (flops / (peak * 1e9))}
        for name, acc in accuracy(task, answers.get(wname, {})).items():
            results[wname][name]["accuracy"] = acc
            results[wname][name]["gate"] = passes_gate(name, acc)
        answers.pop(wname, None)
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
              "skipped": skipped, "process_peak_rss_mb": _peak_rss_mb()}
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench.md").write_text(render_markdown(report))
    plot(report, out)
    say(f"wrote {out / 'bench.json'}, {out / 'bench.md'} and plots")
    return report


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
        r = np.asarray(answers[ref], dtype=np.float64)
        for name, emb in answers.items():
            e = np.asarray(emb, dtype=np.float64)
            cos = (e * r).sum(1) / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(r, axis=1), 1e-12)
            out[name] = {"reference": ref, "min_cosine": float(cos.min())}
        return out
    r = _masks_top_ids(answers[ref])
    for name, answer in answers.items():
        got = _masks_top_ids(answer)
        if len(got) != len(r):  # a system that dropped or added masks: no comparison, said so
            out[name] = {"reference": ref, "error": f"{len(got)} masks against {len(r)}"}
            continue
        k = min(5, min((len(x) for x in r), default=5))
        out[name] = {"reference": ref, "top1": float(np.mean([g[0] == t[0] for g, t in zip(got, r)])),
                     "top5": float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, r)]))}
    return out


def passes_gate(name: str, acc: dict[str, Any]) -> bool | None:
    """Whether an encoderkit backend's accuracy in this run meets its registry ``Tolerance``
    (quantized backends: min top-1 / top-5 / cosine; fp32 backends are held to atol by the parity
    tests, so here they pass). None: not an encoderkit backend."""
    if name not in BACKENDS:
        return None
    if "error" in acc:
        return False
    tol = BACKENDS[name].tolerance
    if not tol.quantized:
        return True
    pairs = (("top1", tol.min_top1), ("top5", tol.min_top5), ("min_cosine", tol.min_cosine))
    return all(acc[k] >= bound for k, bound in pairs if bound is not None and k in acc)


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
        lines += ["## fill-mask latency, one text per call (short sentences)", "", "| system | p50 ms | p95 ms |",
                  "|---|---|---|"]
        for name, x in sorted(report["latency_bs1"].items(), key=lambda kv: kv[1]["p50_ms"]):
            lines.append(f"| {name} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} |")
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


def best_int8(res: dict[str, Any], key: str = "texts_per_s", lower: bool = False) -> str | None:
    """The fastest int8 encoderkit backend of a workload's results that passed its accuracy gate
    in this run (a backend whose accuracy could not be compared counts, as it did before gates)."""
    int8 = [n for n, x in res.items() if n in BACKENDS and BACKENDS[n].variant == "int8" and x.get("gate") is not False]
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
        ran = [n for n in wres if n in BACKENDS and BACKENDS[n].variant == "int8"]
        if best is None and ran:
            add(f"{what}: an int8 backend passes its accuracy gate ({', '.join(ran)} ran)", 0.0, "≥", 1)
        return best

    short = res.get("fill-mask/short", {})
    if "pipeline-bs1" in short:
        best = max((n for n in short if n in fp32), key=lambda n: short[n]["texts_per_s"], default=None)
        if best:
            add(f"fill-mask, best fp32 ({best}) / pipeline batch 1", short[best]["texts_per_s"] / short["pipeline-bs1"]["texts_per_s"], "≥", 3.5)
            add(f"fill-mask, best fp32 ({best}) fraction of fp32 roofline", short[best]["roofline_fraction"], "≥", 0.75)
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
