"""bf16 on this CPU, measured side by side in one process: could a bf16 backend beat int8?

Systems (all on the CPU, the same token-budget batching of encoderkit's runtimes):

- ``torch fp32``: the torch backend (transformers, SDPA attention), the reference;
- ``torch bf16``: the same model with ``model.to(torch.bfloat16)`` (bf16 weights, SDPA);
- ``torch autocast bf16``: fp32 weights, ``torch.autocast("cpu", torch.bfloat16)`` around the forward;
- ``onnx fp32``, ``onnx-int8`` (whatever ``--int8-mode`` the directory was converted with) and
  ``ctranslate2-int8``.

Speed, on SPEED_DIR (a ``convert --to safetensors,onnx,ctranslate2 --quantize int8`` directory,
e.g. a random roberta-base): embed throughput on the 256-text embed workload (texts/s: best and
median wall time over --repeats interleaved rounds, and texts per CPU-second) and one-text latency
p50/p99 (40 texts, one per call). Accuracy, on ACCURACY_DIR (the same conversion of the real
all-MiniLM-L6-v2): cosine of mean-pooled, normalised embeddings against torch fp32 on the varied
text set of benchmarks/minilm_texts.py (min, mean, texts < 0.99). Also: a torch GEMM
(512x1024x4096) fp32 vs bf16, the CPU's bf16 flags, and whether ONNX Runtime's CPU execution
provider has bf16 kernels (a one-node graph per operator, bf16 inputs: does a session load?).

    encoderkit init-random /tmp/rb --size base
    encoderkit convert /tmp/rb --to safetensors,onnx,ctranslate2 --quantize int8 --out /tmp/rb-conv
    encoderkit convert minilm --to safetensors,onnx,ctranslate2 --quantize int8 --out /tmp/minilm-conv
    python -m benchmarks.bf16 /tmp/rb-conv /tmp/minilm-conv --name roberta-base [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ORT_OPS = ("MatMul", "Gemm", "Add", "Softmax", "LayerNormalization", "com.microsoft:FusedMatMul",
           "com.microsoft:Attention", "com.microsoft:MultiHeadAttention", "com.microsoft:SkipLayerNormalization",
           "com.microsoft:BiasGelu")


def cpu_bf16_flags() -> dict[str, bool]:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {k: k in flags for k in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx512f")}


def ort_bf16_kernels() -> dict[str, str]:
    """op -> "yes" or the first line of ONNX Runtime's refusal, for a one-node graph with bf16 inputs."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h

    bf = T.BFLOAT16
    v = h.make_tensor_value_info
    x3, w, b = v("x", bf, [1, 4, 8]), v("w", bf, [8, 24]), v("b", bf, [24])
    shapes = {"MatMul": ([v("x", bf, [4, 8]), v("w", bf, [8, 4])], {}), "Gemm": ([v("x", bf, [4, 8]), v("w", bf, [8, 4])], {}),
              "Add": ([v("x", bf, [4, 8]), v("w", bf, [4, 8])], {}), "Softmax": ([v("x", bf, [4, 8])], {}),
              "LayerNormalization": ([v("x", bf, [4, 8]), v("g", bf, [8]), v("b", bf, [8])], {}),
              "FusedMatMul": ([v("x", bf, [4, 8]), v("w", bf, [8, 4])], {}),
              "Attention": ([x3, w, b], {"num_heads": 2}),
              "MultiHeadAttention": ([x3, v("k", bf, [1, 4, 8]), v("v", bf, [1, 4, 8])], {"num_heads": 2}),
              "SkipLayerNormalization": ([x3, v("s", bf, [1, 4, 8]), v("g", bf, [8]), v("b", bf, [8])], {}),
              "BiasGelu": ([v("x", bf, [4, 8]), v("b", bf, [8])], {})}
    out = {}
    for op in ORT_OPS:
        domain, _, name = op.rpartition(":")
        ins, attrs = shapes[name]
        node = h.make_node(name, [i.name for i in ins], ["y"], domain=domain or None, **attrs)
        model = h.make_model(h.make_graph([node], "g", ins, [v("y", bf, None)]),
                             opset_imports=[h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)])
        o = ort.SessionOptions()
        o.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])
            out[op] = "yes"
        except Exception as e:  # ORT's own exception types
            out[op] = "no: " + str(e).splitlines()[0].split(":", 3)[-1].strip()[:110]
    return out


def torch_gemm(threads: int) -> dict[str, float]:
    import torch

    res = {}
    for dt in (torch.float32, torch.bfloat16):
        a, b = torch.randn(512, 1024, dtype=dt), torch.randn(1024, 4096, dtype=dt)
        for _ in range(3):
            a @ b
        ts = []
        for _ in range(10):
            t = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t)
        res[str(dt).split(".")[1]] = 2 * 512 * 1024 * 4096 / min(ts) / 1e9
    return res


def torch_systems(directory: Path, threads: int | None) -> dict:
    import torch

    import encoderkit
    from encoderkit.backends.torch.runtime import TorchRuntime

    class Autocast(TorchRuntime):
        name = "torch-autocast-bf16"

        def _encode(self, *args, **kw):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return super()._encode(*args, **kw)

    th = {"threads": threads} if threads else {}
    fp32 = encoderkit.load(directory, "torch", device="cpu", **th)
    bf16 = encoderkit.load(directory, "torch", device="cpu", **th)
    bf16.model.to(torch.bfloat16)
    auto = Autocast.load(directory / "safetensors", device="cpu", **th)
    return {"torch fp32": fp32, "torch bf16": bf16, "torch autocast bf16": auto}


def systems_for(directory: Path, threads: int | None) -> dict:
    import encoderkit

    th = {"threads": threads} if threads else {}
    out = torch_systems(directory, threads)
    out["onnx fp32"] = encoderkit.load(directory, "onnx", **th)
    out["onnx-int8"] = encoderkit.load(directory, "onnx-int8", **th)
    out["ctranslate2-int8"] = encoderkit.load(directory, "ctranslate2-int8", **th)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("speed_dir", type=Path)
    p.add_argument("accuracy_dir", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of every system (0: each one's default)")
    a = p.parse_args(argv)
    from encoderkit.bench import fit_workload
    from encoderkit.core.texts import read_workload

    from .minilm_texts import varied_texts

    threads = a.threads or None
    facts = {"cpu flags": cpu_bf16_flags(), "load average before": os.getloadavg()}
    import torch

    facts["torch mkldnn bf16 supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if threads:
        torch.set_num_threads(threads)
    facts["torch GEMM 512x1024x4096 GFLOP/s"] = torch_gemm(threads or 0)
    facts["onnxruntime CPU bf16 kernels"] = ort_bf16_kernels()
    print(json.dumps(facts, indent=1), flush=True)

    # accuracy on the real MiniLM, vs torch fp32
    acc_systems = systems_for(a.accuracy_dir, threads)
    tok = acc_systems["onnx fp32"].tokenizer
    texts, _ = varied_texts(tok)
    ref = acc_systems["torch fp32"].embed(texts, normalize=True)
    acc = {}
    for s, rt in acc_systems.items():
        cos = (rt.embed(texts, normalize=True) * ref).sum(1)
        acc[s] = {"min": float(cos.min()), "mean": float(cos.mean()), "below 0.99": int((cos < 0.99).sum())}
        print(f"accuracy {s:22s} {acc[s]}", flush=True)
    del acc_systems

    systems = systems_for(a.speed_dir, threads)
    tok = systems["onnx fp32"].tokenizer
    work, _ = fit_workload(read_workload("embed_corpus", tok.mask_token), tok, need_mask=False)
    single = work[:40]
    wall = {s: [] for s in systems}
    cpu = {s: [] for s in systems}
    lat = {s: [] for s in systems}
    loads = []
    for rt in systems.values():
        rt.embed(work[:64])
    for r in range(a.repeats):
        for s, rt in systems.items():
            c, t = time.process_time(), time.perf_counter()
            rt.embed(work)
            wall[s].append(time.perf_counter() - t)
            cpu[s].append(time.process_time() - c)
            for text in single:
                t = time.perf_counter()
                rt.embed([text])
                lat[s].append(time.perf_counter() - t)
        loads.append(os.getloadavg())
        print(f"repeat {r + 1}/{a.repeats}, load average {loads[-1][0]:.2f}", file=sys.stderr, flush=True)
    n = len(work)
    rows = {s: {"embed texts/s (best)": n / min(wall[s]), "embed texts/s (median)": n / statistics.median(wall[s]),
                "embed texts/CPU-s": n / statistics.median(cpu[s]),
                "latency p50 ms": 1000 * statistics.median(lat[s]),
                "latency p99 ms": 1000 * float(np.percentile(lat[s], 99))} for s in systems}
    base = rows["torch fp32"]
    md = [f"# bf16 vs fp32 vs int8 on this CPU: {a.name}", "",
          f"`python -m benchmarks.bf16 {a.speed_dir} {a.accuracy_dir} --name {a.name} --repeats {a.repeats} "
          f"--threads {a.threads}`. Load average (1 min) per repeat: {', '.join(f'{x[0]:.2f}' for x in loads)} "
          f"on 2 cores (before: {facts['load average before'][0]:.2f}); compare ratios within this run.", "",
          f"- CPU flags: {facts['cpu flags']}; torch mkldnn bf16: {facts['torch mkldnn bf16 supported']}",
          "- torch GEMM 512x1024x4096 (best of 10): " + ", ".join(f"{k} {v:.1f} GFLOP/s"
                                                             for k, v in facts["torch GEMM 512x1024x4096 GFLOP/s"].items()),
          "- ONNX Runtime CPU kernels for bf16 inputs: " + "; ".join(f"{k}: {v}" for k, v in
                                                                  facts["onnxruntime CPU bf16 kernels"].items()), "",
          f"## Speed: {a.speed_dir} (embed workload, {n} texts; ratios to torch fp32)", "",
          "| system | " + " | ".join(base) + " |", "|---" * (len(base) + 1) + "|"]
    for s, r in rows.items():
        cells = [f"{r[c]:.1f} ({(base[c] / r[c]) if c.startswith('latency') else (r[c] / base[c]):.2f}×)" for c in base]
        md.append(f"| {s} | " + " | ".join(cells) + " |")
    md += ["", f"## Accuracy: {a.accuracy_dir}, {len(texts)} varied texts, cosine vs torch fp32", "",
           "| system | min cosine | mean | texts < 0.99 |", "|---|---|---|---|"]
    md += [f"| {s} | {r['min']:.4f} | {r['mean']:.5f} | {r['below 0.99']} |" for s, r in acc.items()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bf16_{a.name}.md").write_text("\n".join(md) + "\n")
    (RESULTS / f"bf16_{a.name}.json").write_text(json.dumps({"facts": facts, "speed": rows, "accuracy": acc,
                                                            "load": loads}, indent=1, default=str) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
