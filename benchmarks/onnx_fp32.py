"""What the fused fp32 ONNX graph leaves on the table on this CPU, fill-mask against the pipeline.

On CONVERT_DIR (``convert --to safetensors,onnx``, e.g. a random roberta-base), the short masked
workload (32 texts) through encoderkit's fill-mask, with the onnx backend's encoder session varied
one setting at a time, all in one process, interleaved over --repeats rounds:

- ``shipped``: the fused graph with padding removed (QKV MatMul + MultiHeadAttention on the real
  tokens, BiasGelu, Sum + LayerNormalization), ORT_ENABLE_ALL, ONNX Runtime's default intra-op
  threads, spinning off, token budget 1024 (what ``load(dir, "onnx")`` does);
- ``padded``: the fused graph before padding removal (``convert --no-pack``: fused Attention);
- ``SkipLayerNormalization``: the padded graph as onnxscript fused it (what the converter wrote before);
- threads 1 / threads 2, spinning on;
- graph optimization ORT_ENABLE_EXTENDED / ORT_ENABLE_BASIC instead of ALL;
- ``2-D mask``: the padded graph's fused Attention fed the raw attention mask (``mask_index``, int32 [batch, seq])
  instead of the exporter's float attention_bias [batch, 1, seq, seq] (built by Where/Expand);
- ``unfused``: the dynamo graph without onnxscript's fusions (plain MatMul/Softmax/LayerNorm);
- token budget 256 / 4096, and ``batch 1`` (one text per call);
- peers: transformers' fill-mask pipeline at batch 1 (the target's denominator) and torch.

Per system: texts/s (best and median wall), texts per CPU-second (process CPU time: far less
disturbed by other jobs on a shared machine), and the fraction of the fp32 GEMM roofline (FLOPs of
the real tokens, encoderkit.bench.model_flops, over the best wall time, against the torch GEMM peak
measured in this run). The load average is printed per round.

    python -m benchmarks.onnx_fp32 CONVERT_DIR --name roberta-base-random [--repeats 3]
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


def _session(path: Path, **opts):
    """The onnx backend's own session recipe (no re-fusing of Add + LayerNormalization into
    SkipLayerNormalization, spinning off), CPU only, with a variant's options."""
    from encoderkit.backends.onnx.runtime import ort_session

    return ort_session(path, **opts)


def mask_index_graph(src: Path, dst: Path) -> None:
    """The fused graph with every Attention's attention_bias replaced by the 2-D int32 mask."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(src))
    g = m.graph
    g.node.insert(0, helper.make_node("Cast", ["attention_mask"], ["attention_mask_int32"], to=TensorProto.INT32))
    for n in g.node:
        if n.op_type == "Attention" and len(n.input) > 5 and n.input[5]:
            ins = list(n.input)
            ins[3], ins[5] = "attention_mask_int32", ""
            while ins[-1] == "":
                ins.pop()
            del n.input[:]
            n.input.extend(ins)
    from encoderkit.backends.onnx.static import _drop_dead

    _drop_dead(g)
    onnx.save(m, str(dst))


def unfused_graph(ckpt: Path, dst: Path) -> None:
    """The encoder exported as the converter does, without the fusion step."""
    import torch

    from encoderkit.storage.checkpoint import load_checkpoint
    from encoderkit.backends.onnx.export import _export, _save
    from encoderkit.backends.transformers_model import ExportEncoder, build_torch_model, encoder_of

    c = load_checkpoint(ckpt)
    spec = c.spec
    enc = encoder_of(build_torch_model(spec, c.state), spec)
    enc.set_attn_implementation("sdpa")
    b, s = torch.export.Dim("batch"), torch.export.Dim("sequence", max=spec.max_tokens_per_text)
    ids, mask = torch.full((2, 8), 5, dtype=torch.long), torch.ones(2, 8, dtype=torch.long)
    dyn = {"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}
    names, args = ["input_ids", "attention_mask"], (ids, mask)
    if spec.architecture.segment_types:
        names.append("token_type_ids")
        args = (*args, torch.zeros(2, 8, dtype=torch.long))
        dyn["token_type_ids"] = {0: b, 1: s}
    _save(_export(ExportEncoder(enc, False), args, names, dyn, ["last_hidden_state"]), dst)


def skip_layer_norm_graph(unfused: Path, dst: Path) -> None:
    """The encoder as the converter fused it before writing SkipLayerNormalization back as Sum +
    LayerNormalization: onnxscript's optimize_for_ort alone."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    from encoderkit.backends.onnx.export import _save

    model, _ = optimize_for_ort(ir.load(str(unfused)))
    _save(model, dst)


def padded_graph(unfused: Path, dst: Path) -> None:
    """The converter's fp32 graph before padding removal (``convert --no-pack``)."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    from encoderkit.backends.onnx.export import _save, unfuse_skip_layer_norm

    model, _ = optimize_for_ort(ir.load(str(unfused)))
    unfuse_skip_layer_norm(model)
    _save(model, dst)


def layer_norm_ops(shapes=((32, 32, 384), (8, 128, 768), (1, 16, 1024)), calls: int = 50) -> list[str]:
    """CPU time of one com.microsoft SkipLayerNormalization vs Sum + LayerNormalization (1 thread)."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    def session(nodes, inputs, inits):
        m = h.make_model(h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], inits),
                         opset_imports=[h.make_opsetid("", 18), h.make_opsetid("com.microsoft", 1)])
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.log_severity_level = 1, 3
        return ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=["SkipLayerNormFusion"])

    lines = ["| [batch, seq, hidden] | SkipLayerNormalization µs | Sum + LayerNormalization µs | ratio |", "|---|---|---|---|"]
    for b, s, d in shapes:
        rng = np.random.default_rng(0)
        feeds = {"x": rng.standard_normal((b, s, d)).astype(np.float32), "s": rng.standard_normal((b, s, d)).astype(np.float32)}
        inits = [nh.from_array(rng.standard_normal(d).astype(np.float32), n) for n in ("g", "b", "bias")]
        ins = [h.make_tensor_value_info(n, T.FLOAT, [b, s, d]) for n in ("x", "s")]
        skip = session([h.make_node("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y"], domain="com.microsoft",
                                    epsilon=1e-5)], ins, inits)
        plain = session([h.make_node("Sum", ["x", "s", "bias"], ["t"]),
                         h.make_node("LayerNormalization", ["t", "g", "b"], ["y"], axis=-1, epsilon=1e-5)], ins, inits)
        res = []
        for sess in (skip, plain):
            sess.run(None, feeds)
            ts = []
            for _ in range(calls):
                c = time.process_time()
                sess.run(None, feeds)
                ts.append(time.process_time() - c)
            res.append(1e6 * statistics.median(ts))
        lines.append(f"| [{b}, {s}, {d}] | {res[0]:.0f} | {res[1]:.0f} | {res[0] / res[1]:.1f}× |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("converted", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("bench-out/onnx_fp32"))
    a = p.parse_args(argv)
    import encoderkit
    from encoderkit.bench import fit_workload, gemm_peak_gflops, model_flops
    from encoderkit.core.texts import read_workload

    work = a.work / a.name
    work.mkdir(parents=True, exist_ok=True)
    fused = a.converted / "onnx" / "encoder.onnx"
    if not (work / "unfused.onnx").exists():
        unfused_graph(a.converted / "safetensors", work / "unfused.onnx")
    if not (work / "skip_layer_norm.onnx").exists():
        skip_layer_norm_graph(work / "unfused.onnx", work / "skip_layer_norm.onnx")
    if not (work / "padded.onnx").exists():
        padded_graph(work / "unfused.onnx", work / "padded.onnx")
    if not (work / "mask_index.onnx").exists():
        mask_index_graph(work / "padded.onnx", work / "mask_index.onnx")
    ops = layer_norm_ops()

    def onnx_system(path=fused, max_tokens=1024, **opts):
        rt = encoderkit.load(a.converted, "onnx", max_tokens=max_tokens)
        rt.encoder = _session(path, **opts)
        return rt

    variants = {
        "shipped (fused, padding removed, ALL, default threads, budget 1024)": {},
        "padded (fused, --no-pack)": {"path": work / "padded.onnx"},
        "SkipLayerNormalization (onnxscript's fusion as is)": {"path": work / "skip_layer_norm.onnx"},
        "threads 1": {"threads": 1},
        "threads 2": {"threads": 2},
        "spinning on": {"spinning": True},
        "ORT_ENABLE_EXTENDED": {"level": "EXTENDED"},
        "ORT_ENABLE_BASIC": {"level": "BASIC"},
        "2-D mask (mask_index)": {"path": work / "mask_index.onnx"},
        "unfused graph": {"path": work / "unfused.onnx"},
        "token budget 256": {"max_tokens": 256},
        "token budget 4096": {"max_tokens": 4096},
    }
    systems = {k: onnx_system(**v) for k, v in variants.items()}
    ref = encoderkit.load(a.converted, "torch", device="cpu")
    tok = ref.tokenizer
    texts, _ = fit_workload(read_workload("short_masked", tok.mask_token), tok, need_mask=True)
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    hf = str(a.converted / "safetensors")
    pipe = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(hf), tokenizer=AutoTokenizer.from_pretrained(hf),
                    device="cpu")
    runs = {name: (lambda rt=rt: rt.fill_mask(texts)) for name, rt in systems.items()}
    runs["batch 1 (one text per call, shipped session)"] = lambda: [systems[next(iter(systems))].fill_mask([t]) for t in texts]
    runs["torch"] = lambda: ref.fill_mask(texts)
    runs["pipeline-bs1"] = lambda: [pipe(t) for t in texts]
    peak = gemm_peak_gflops()
    ids = tok.encode(texts, truncate=True)
    flops = model_flops(ref.spec, [len(x) for x in ids], sum(x.count(tok.mask_token_id) for x in ids)
                        if hasattr(tok, "mask_token_id") else len(texts))
    want = [r[0][0]["token"] for r in ref.fill_mask(texts, top_k=1)]
    agree = {k: float(np.mean([x[0][0]["token"] == w for x, w in zip(rt.fill_mask(texts, top_k=1), want)]))
             for k, rt in systems.items()}
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    loads = []
    for fn in runs.values():
        fn()
    for r in range(a.repeats):
        for k, fn in runs.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
        loads.append(os.getloadavg())
        print(f"repeat {r + 1}/{a.repeats}, load average {loads[-1][0]:.2f}", file=sys.stderr, flush=True)
    n = len(texts)
    pipe_best = n / min(wall["pipeline-bs1"])
    rows = {k: {"texts/s (best)": n / min(wall[k]), "texts/s (median)": n / statistics.median(wall[k]),
                "texts/CPU-s": n / statistics.median(cpu[k]), "x pipeline-bs1 (best)": n / min(wall[k]) / pipe_best,
                "roofline": flops / min(wall[k]) / (peak * 1e9)} for k in runs}
    base = rows[next(iter(systems))]
    md = [f"# fp32 ONNX on this CPU: {a.name}", "",
          f"`python -m benchmarks.onnx_fp32 {a.converted} --name {a.name} --repeats {a.repeats}`: fill-mask, short "
          f"masked workload ({n} texts, {sum(len(x) for x in ids)} tokens), {a.repeats} interleaved rounds. "
          f"torch fp32 GEMM peak measured now: {peak:.0f} GFLOP/s. Load average per round: "
          + ", ".join(f"{x[0]:.2f}" for x in loads) + " (2 cores, shared).", "",
          "| system | texts/s best | texts/s median | texts/CPU-s (× shipped) | × pipeline-bs1 | roofline | top-1 vs torch |",
          "|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        md.append(f"| {k} | {r['texts/s (best)']:.1f} | {r['texts/s (median)']:.1f} | {r['texts/CPU-s']:.1f} "
                  f"({r['texts/CPU-s'] / base['texts/CPU-s']:.2f}×) | {r['x pipeline-bs1 (best)']:.2f} | "
                  f"{r['roofline']:.0%} | {agree.get(k, float('nan')):.2f} |")
    md += ["", "ONNX Runtime's CPU SkipLayerNormalization against the Sum + LayerNormalization the converter "
               "now writes (one node graphs, 1 thread, median CPU time of 50 calls):", "", *ops]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"onnx_fp32_{a.name}.md").write_text("\n".join(md) + "\n")
    (RESULTS / f"onnx_fp32_{a.name}.json").write_text(json.dumps({"rows": rows, "peak_gflops": peak, "load": loads,
                                                                 "wall": wall, "cpu": cpu}, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
