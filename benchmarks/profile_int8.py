"""Where ONNX Runtime's int8 encoder spends its time, next to CTranslate2's int8, on this CPU.

Four parts, all at the runtime's batch shapes (token budget 1024: [32, 32], [8, 128], [1, 16],
[2, 384]), all timed side by side in one process with interleaved repeats (the machine is shared:
only ratios taken in one run mean anything):

1. total time per shape: ORT fp32, ORT int8 as shipped (u8 weights, fused graph: QKV stays fp32
   inside the fused Attention), ORT int8 with s8 weights, CTranslate2 float32 / int8 /
   int8_float32;
2. ORT's own profiler (``SessionOptions.enable_profiling``) aggregated by op type (% of kernel
   time, and the time outside kernels), fp32 and int8;
3. single-op ONNX graphs at one layer's GEMM shapes: fp32 MatMul, DynamicQuantizeLinear alone,
   MatMulInteger u8u8 / u8s8, DynamicQuantizeMatMul u8 / s8 weights (GOP/s: what the kernels give);
4. CTranslate2 back ends by environment (each in a subprocess, with ORT int8 as the anchor timed in
   the same subprocess): default (oneDNN, AVX2), CT2_FORCE_CPU_ISA=AVX512, CT2_USE_MKL=1,
   CT2_USE_MKL=1 + CT2_USE_EXPERIMENTAL_PACKED_GEMM=1;
5. accuracy of the u8 and s8 int8 graphs on the real-MiniLM test sentences (cosine vs torch fp32).

    python -m encoderkit.cli convert minilm --to safetensors,onnx,ctranslate2 --quantize int8 --out /tmp/prof-minilm
    python -m benchmarks.profile_int8 /tmp/prof-minilm [--repeats 5] [--threads 2] \\
        [--out benchmarks/results/profile_int8.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

SHIPPED = "ORT int8 (shipped)"
SHAPES = ((32, 32), (8, 128), (1, 16), (2, 384))
CT2_ENVS = {
    "default (oneDNN, ISA AVX2)": {},
    "CT2_FORCE_CPU_ISA=AVX512": {"CT2_FORCE_CPU_ISA": "AVX512"},
    "CT2_USE_MKL=1": {"CT2_USE_MKL": "1"},
    "CT2_USE_MKL=1 + CT2_USE_EXPERIMENTAL_PACKED_GEMM=1": {"CT2_USE_MKL": "1",
                                                           "CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1"},
}


def cpu_facts() -> dict:
    flags, model = set(), "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
    keep = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
            "amx_int8", "amx_bf16"]
    return {"model": model, "cores": os.cpu_count(), "flags": {k: k in flags for k in keep}}


def batch(shape, vocab, seed=0):
    b, t = shape
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(b, t)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] (MiniLM is BERT-family)
    return ids, np.ones_like(ids)


def calls_for(shape) -> int:
    return int(min(64, max(4, -(-4096 // (shape[0] * shape[1])))))


# ----------------------------------------------------------------------------- systems
def ort_session(path: Path, threads: int, profile_prefix: str | None = None):
    """A session as the onnx backend runs it (its own recipe), at ``threads`` threads."""
    from encoderkit.backends.onnx.runtime import ort_session as backend_session

    return backend_session(path, threads=threads, profile_prefix=profile_prefix)


def ort_system(path: Path, threads: int):
    s = ort_session(path, threads)
    typed = "token_type_ids" in {i.name for i in s.get_inputs()}

    def run(ids, mask):
        feeds = {"input_ids": ids, "attention_mask": mask}
        if typed:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return s.run(None, feeds)[0]
    return run


def ct2_system(model_dir: Path, compute_type: str, threads: int):
    import ctranslate2

    enc = ctranslate2.Encoder(str(model_dir), device="cpu", compute_type=compute_type, intra_threads=threads)

    def run(ids, mask):
        lengths = mask.sum(1).astype(np.int32)
        out = enc.forward_batch(ctranslate2.StorageView.from_array(np.ascontiguousarray(ids, np.int32)),
                                ctranslate2.StorageView.from_array(lengths))
        return np.asarray(out.last_hidden_state)
    return run


def time_systems(systems: dict, vocab: int, repeats: int) -> dict:
    """{system: {shape: median seconds per call}}, interleaved: every repeat runs every system."""
    data = {s: batch(s, vocab) for s in SHAPES}
    for fn in systems.values():
        for s in SHAPES:
            fn(*data[s])  # warm-up (allocators, ORT's shape-specific kernels)
    times = {k: {s: [] for s in SHAPES} for k in systems}
    for r in range(repeats):
        for s in SHAPES:
            n = calls_for(s)
            for k, fn in systems.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    fn(*data[s])
                times[k][s].append((time.perf_counter() - t0) / n)
        print(f"  repeat {r + 1}/{repeats}", file=sys.stderr, flush=True)
    return {k: {s: statistics.median(v) for s, v in per.items()} for k, per in times.items()}


# ----------------------------------------------------------------------------- ORT profiler
def ort_profile(path: Path, threads: int, shape, vocab: int, tmp: Path) -> dict:
    """Kernel time by op type (ms per call) and the run time outside kernels, first run dropped."""
    s = ort_session(path, threads, str(tmp / f"prof_{path.stem}_{shape[0]}x{shape[1]}"))
    typed = "token_type_ids" in {i.name for i in s.get_inputs()}
    ids, mask = batch(shape, vocab)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if typed:
        feeds["token_type_ids"] = np.zeros_like(ids)
    n = calls_for(shape)
    for _ in range(n + 1):
        s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[1:]
    by_op: dict[str, float] = defaultdict(float)
    run_total = sum(r["dur"] for r in runs)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if any(r["ts"] <= e["ts"] <= r["ts"] + r["dur"] for r in runs):
            by_op[e["args"]["op_name"]] += e["dur"]
    kernels = sum(by_op.values())
    out = {op: us / len(runs) / 1000 for op, us in by_op.items()}
    out["(outside kernels)"] = max(0.0, run_total - kernels) / len(runs) / 1000
    return out


# ----------------------------------------------------------------------------- single-op graphs
def gemm_graphs(M: int, K: int, N: int, tmp: Path) -> dict[str, tuple[Path, dict]]:
    """One-node ONNX graphs at one GEMM shape, with their feeds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32) * 0.05
    w_u8 = rng.integers(0, 256, (K, N)).astype(np.uint8)
    w_s8 = rng.integers(-127, 128, (K, N)).astype(np.int8)
    a_u8 = rng.integers(0, 256, (M, K)).astype(np.uint8)
    f32, u8 = TensorProto.FLOAT, TensorProto.UINT8
    out: dict[str, tuple[Path, dict]] = {}

    def save(name, nodes, inputs, outputs, inits, feeds, domain=False):
        g = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
        opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("com.microsoft", 1)] if domain else [])
        m = helper.make_model(g, opset_imports=opsets)
        p = tmp / f"{name}_{M}x{K}x{N}.onnx"
        onnx.save(m, str(p))
        out[name] = (p, feeds)

    A = helper.make_tensor_value_info("A", f32, [M, K])
    Y = helper.make_tensor_value_info("Y", f32, [M, N])
    save("fp32 MatMul", [helper.make_node("MatMul", ["A", "W"], ["Y"])], [A], [Y], {"W": w}, {"A": a})
    save("DynamicQuantizeLinear alone", [helper.make_node("DynamicQuantizeLinear", ["A"], ["q", "s", "z"])], [A],
         [helper.make_tensor_value_info("q", u8, [M, K]), helper.make_tensor_value_info("s", f32, []),
          helper.make_tensor_value_info("z", u8, [])], {}, {"A": a})
    Aq = helper.make_tensor_value_info("Aq", u8, [M, K])
    Yi = helper.make_tensor_value_info("Y", TensorProto.INT32, [M, N])
    for tag, wq in (("u8u8", w_u8), ("u8s8", w_s8)):
        save(f"MatMulInteger {tag}", [helper.make_node("MatMulInteger", ["Aq", "W", "az", "wz"], ["Y"])], [Aq], [Yi],
             {"W": wq, "az": np.array(128, np.uint8), "wz": np.array(0, wq.dtype)}, {"Aq": a_u8})
    for tag, wq in (("u8 weights", w_u8), ("s8 weights", w_s8)):
        save(f"DynamicQuantizeMatMul {tag}",
             [helper.make_node("DynamicQuantizeMatMul", ["A", "W", "ws", "wz"], ["Y"], domain="com.microsoft")],
             [A], [Y], {"W": wq, "ws": np.full((N,), 0.01, np.float32), "wz": np.zeros((N,), wq.dtype)},
             {"A": a}, domain=True)
    return out


def gemm_bench(threads: int, repeats: int, tmp: Path) -> list[dict]:
    rows = []
    for M, K, N in ((1024, 384, 1536), (1024, 1536, 384), (16, 384, 1536)):
        graphs = gemm_graphs(M, K, N, tmp)
        sess = {k: (ort_session(p, threads), feeds) for k, (p, feeds) in graphs.items()}
        n = max(3, 200 * 1024 // (M * 64))
        times = {k: [] for k in sess}
        for s, feeds in sess.values():
            s.run(None, feeds)
        for _ in range(repeats):
            for k, (s, feeds) in sess.items():
                t0 = time.perf_counter()
                for _ in range(n):
                    s.run(None, feeds)
                times[k].append((time.perf_counter() - t0) / n)
        for k, v in times.items():
            t = statistics.median(v)
            ops = 2 * M * K * N if "Quantize" not in k or "MatMul" in k else M * K
            rows.append({"shape": f"{M}x{K}x{N}", "op": k, "us": t * 1e6,
                         "gops": ops / t / 1e9 if "alone" not in k else None})
    return rows


# ----------------------------------------------------------------------------- CT2 env variants
def ct2_env_worker(directory: Path, threads: int, repeats: int) -> dict:
    """Run in a subprocess whose environment selects CTranslate2's back end: CT2 int8 vs ORT int8."""
    vocab = _vocab(directory)
    systems = {"ort int8": ort_system(directory / "onnx" / "encoder.int8.onnx", threads),
               "ct2 int8": ct2_system(directory / "ctranslate2" / "encoder.int8", "int8", threads)}
    t = time_systems(systems, vocab, repeats)
    return {f"{s[0]}x{s[1]}": {k: t[k][s] for k in t} for s in SHAPES}


def run_ct2_envs(directory: Path, threads: int, repeats: int) -> dict:
    res = {}
    for label, extra in CT2_ENVS.items():
        print(f"CTranslate2 env: {label}", file=sys.stderr, flush=True)
        env = {**os.environ, **extra, "CT2_VERBOSE": "1"}
        p = subprocess.run([sys.executable, "-m", "benchmarks.profile_int8", str(directory), "--worker",
                            "--threads", str(threads), "--repeats", str(repeats)],
                           env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if p.returncode:
            res[label] = {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        verbose = [ln.split("[info]", 1)[1].strip() for ln in p.stderr.splitlines()
                   if "[info]" in ln and ("backend" in ln or "ISA" in ln or "MKL" in ln)]
        res[label] = {"times": json.loads(p.stdout.strip().splitlines()[-1]), "ct2": sorted(set(verbose))}
    return res


def _vocab(directory: Path) -> int:
    return json.loads((directory / "onnx" / "config.json").read_text())["vocab_size"]


# ----------------------------------------------------------------------------- accuracy
def accuracy(directory: Path, graphs: dict[str, Path]) -> dict:
    """Cosine of int8 embeddings vs torch fp32 on the real-MiniLM test sentences, at two token
    budgets (the batch's make-up sets the activation range every per-tensor quantization uses)."""
    import onnxruntime as ort

    import encoderkit
    from parity_tests.test_real_minilm import PAIRS, TEXTS, _ranks

    ref = encoderkit.load(directory, "torch").embed(TEXTS, normalize=True)
    rt = encoderkit.load(directory, "onnx-int8")
    out = {}
    for name, path in graphs.items():
        o = ort.SessionOptions()
        o.log_severity_level = 3
        rt.encoder = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        for budget in (1024, 64):
            rt.max_tokens = budget
            e = rt.embed(TEXTS, normalize=True)
            cos = (e * ref).sum(1)
            out[f"{name}, max_tokens {budget}"] = {"min": float(cos.min()), "mean": float(cos.mean()),
                                                   "ranking_kept": _ranks(e) == [0] * len(PAIRS)}
    return out


# ----------------------------------------------------------------------------- report
def shape_name(s) -> str:
    return f"[{s[0]}, {s[1]}]"


def render(facts, timing, profiles, gemm, envs, acc, a, mode: str) -> str:
    L = ["# Profile: ONNX Runtime int8 vs CTranslate2 int8 (real all-MiniLM-L6-v2)", ""]
    fl = facts["flags"]
    L += [f"Machine: {facts['model']}, {facts['cores']} cores (shared with other jobs: read ratios, not "
          f"absolute times). CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in fl.items()) + ".",
          f"Threads: {a.threads} for every system. Median of {a.repeats} interleaved repeats; each repeat "
          "runs every system at a shape back to back. Token ids random (speed does not depend on them), "
          "no padding.", "",
          "Command:", "", "```",
          "python -m encoderkit.cli convert minilm --to safetensors,onnx,ctranslate2 --quantize int8 --out /tmp/prof-minilm",
          f"python -m benchmarks.profile_int8 /tmp/prof-minilm --repeats {a.repeats} --threads {a.threads}"
          + (f" --skip {a.skip}" if a.skip else ""),
          "```", "", f"The shipped int8 graph (`encoder.int8.onnx`) is `--int8-mode {mode}`; the "
          "dynamic graphs are ONNX Runtime's dynamic quantization of the fused fp32 graph. ORT sessions "
          "run as the onnx backend runs them (spinning off, SkipLayerNormFusion disabled).", ""]
    # 1. totals
    names = list(timing)
    L += ["## 1. Time per batch (ms), side by side", "",
          "| shape [batch, tokens] | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in SHAPES:
        L.append(f"| {shape_name(s)} | " + " | ".join(f"{timing[k][s] * 1e3:.2f}" for k in names) + " |")
    ref = SHIPPED
    L += ["", f"Ratio to {ref} (> 1: slower than it):", "",
          "| shape | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in SHAPES:
        L.append(f"| {shape_name(s)} | " + " | ".join(f"{timing[k][s] / timing[ref][s]:.2f}" for k in names) + " |")
    L.append("")
    # 2. profiles
    L += ["## 2. ORT profiler by op type (% of run time; ms per call in brackets)", "",
          "`(outside kernels)` is model_run time minus the sum of kernel times (executor, allocation, "
          "thread-pool hand-offs).", ""]
    for graph, per_shape in profiles.items():
        ops = sorted({op for p in per_shape.values() for op in p},
                     key=lambda op: -sum(p.get(op, 0) for p in per_shape.values()))
        L += [f"**{graph}**", "", "| op type | " + " | ".join(shape_name(s) for s in SHAPES) + " |",
              "|---|" + "---|" * len(SHAPES)]
        totals = {s: sum(per_shape[s].values()) for s in SHAPES}
        for op in ops:
            cells = []
            for s in SHAPES:
                v = per_shape[s].get(op, 0.0)
                cells.append(f"{100 * v / totals[s]:.1f}% ({v:.2f})" if v else "–")
            if all(c == "–" or c.startswith("0.0%") or c.startswith("0.1%") for c in cells):
                continue
            L.append(f"| {op} | " + " | ".join(cells) + " |")
        L.append("| **total ms/call (profiled)** | " + " | ".join(f"{totals[s]:.2f}" for s in SHAPES) + " |")
        L.append("")
    # 3. gemm
    L += ["## 3. Single-op graphs at one layer's GEMM shapes (M tokens x K x N)", "",
          "GOP/s = 2·M·K·N / time (for DynamicQuantizeMatMul that includes quantizing A).", "",
          "| M x K x N | op | µs | GOP/s |", "|---|---|---|---|"]
    for r in gemm:
        gops = "" if r["gops"] is None else f"{r['gops']:.0f}"
        L.append(f"| {r['shape']} | {r['op']} | {r['us']:.0f} | {gops} |")
    L.append("")
    # 4. ct2 envs
    L += ["## 4. CTranslate2 int8 by back end (each row its own process; ORT int8 timed in the same process)", "",
          "| CTranslate2 environment | back end (CT2_VERBOSE) | " + " | ".join(f"CT2/ORT {shape_name(s)}" for s in SHAPES) + " |",
          "|---|---|" + "---|" * len(SHAPES)]
    for label, r in envs.items():
        if "error" in r:
            L.append(f"| {label} | failed: {r['error']} |" + " |" * len(SHAPES))
            continue
        t = r["times"]
        cells = [f"{t[f'{s[0]}x{s[1]}']['ct2 int8'] / t[f'{s[0]}x{s[1]}']['ort int8']:.2f}" for s in SHAPES]
        L.append(f"| {label} | {'; '.join(r['ct2'])} | " + " | ".join(cells) + " |")
    L.append("")
    if acc:
        L += ["## 5. Accuracy of the int8 ONNX graphs on this CPU (32 real-MiniLM test sentences vs torch fp32)", "",
              "| graph, token budget | min cosine | mean cosine | paraphrase ranking kept |", "|---|---|---|---|"]
        for k, v in acc.items():
            L.append(f"| {k} | {v['min']:.4f} | {v['mean']:.4f} | {'yes' if v['ranking_kept'] else 'no'} |")
        L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("directory", type=Path, help="a convert --to onnx,ctranslate2 --quantize int8 output")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="markdown report (default: print only)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: gemm,envs,accuracy")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    d = a.directory
    if a.worker:
        print(json.dumps(ct2_env_worker(d, a.threads, a.repeats)))
        return 0
    from encoderkit.backends.onnx.export import quantize_int8

    facts = cpu_facts()
    vocab = _vocab(d)
    with tempfile.TemporaryDirectory(prefix="ek-prof-int8-") as tmp_s:
        tmp = Path(tmp_s)
        s8, u8 = tmp / "encoder.int8.s8.onnx", tmp / "encoder.int8.u8.onnx"
        quantize_int8(d / "onnx" / "encoder.onnx", s8, weights="s8")
        info = json.loads((d / "onnx" / "onnx_info.json").read_text())
        mode = "token" if "int8_token" in info else "static" if "int8_static" in info else "dynamic"
        graphs = {"ORT fp32": d / "onnx" / "encoder.onnx", SHIPPED: d / "onnx" / "encoder.int8.onnx"}
        if mode != "dynamic":  # the dynamic u8 graph beside the shipped one
            quantize_int8(d / "onnx" / "encoder.onnx", u8, weights="u8")
            graphs["ORT int8 (dynamic u8)"] = u8
        graphs["ORT int8 (dynamic s8)"] = s8
        systems = {k: ort_system(v, a.threads) for k, v in graphs.items()}
        ct2 = d / "ctranslate2"
        systems["CT2 float32"] = ct2_system(ct2 / "encoder", "float32", a.threads)
        systems["CT2 int8"] = ct2_system(ct2 / "encoder.int8", "int8", a.threads)
        systems["CT2 int8_float32"] = ct2_system(ct2 / "encoder.int8", "int8_float32", a.threads)
        print("timing systems", file=sys.stderr, flush=True)
        timing = time_systems(systems, vocab, a.repeats)
        del systems
        print("ORT profiles", file=sys.stderr, flush=True)
        profiles = {k: {s: ort_profile(v, a.threads, s, vocab, tmp) for s in SHAPES} for k, v in graphs.items()}
        skip = set(a.skip.split(","))
        print("single-op GEMM graphs", file=sys.stderr, flush=True)
        gemm = gemm_bench(a.threads, a.repeats, tmp) if "gemm" not in skip else []
        print("accuracy", file=sys.stderr, flush=True)
        acc = accuracy(d, {f"{mode} (shipped)": graphs[SHIPPED], "dynamic s8": s8}) \
            if "accuracy" not in skip else {}
    envs = run_ct2_envs(d, a.threads, max(3, a.repeats - 2)) if "envs" not in skip else {}
    text = render(facts, timing, profiles, gemm, envs, acc, a, mode)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(
            {"cpu": facts, "timing_s": {k: {shape_name(s): v for s, v in t.items()} for k, t in timing.items()},
             "profiles_ms": {k: {shape_name(s): v for s, v in t.items()} for k, t in profiles.items()},
             "gemm": gemm, "ct2_envs": envs, "accuracy": acc}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
